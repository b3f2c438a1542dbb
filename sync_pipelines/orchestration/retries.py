"""Waits between retries of a step that failed with a transient connector error: exponential, with jitter."""

from __future__ import annotations

import random

from sync_pipelines.config.operations import Retry


def retry_wait(policy: Retry, retry_number: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``retry_number + 1``.

    The wait doubles with every retry (``delay_s``, ``2 * delay_s``, ...) up to ``max_delay_s``, then
    a random factor in ``[0.5, 1.5)`` spreads the retries of syncs that failed together (an outage
    of a shared database) so they do not all come back in the same second.
    """
    base = min(policy.max_delay_s, policy.delay_s * (2 ** max(0, retry_number)))
    jitter = (rng or random).uniform(0.5, 1.5)
    return round(base * jitter, 3)
