"""Retries: waits between retries of a step that failed with a transient connector error (exponential, with
jitter), and how a re-execution tells a run that failed on its data (its records) from one that met a fault.

A re-execution from failure normally resumes the load from the batches its parent staged: right after a
fault (an outage, a crash), those batches are still what the source holds. After a run whose records
failed, they are not what the user wants: the retry comes after a fix of the source's data, and loading the
same staged values fails the same way. Such a load step reads the source again (see
:func:`failed_for_records` and the load op).
"""

from __future__ import annotations

import random

from dagster import DagsterEventType, DagsterInstance

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


# ----------------------------------------------------------------------------- a retry after a data fix

RECORDS_FAILED_ERROR_TYPE = "records_failed"
"""``error_type`` of a load step that failed because too many of its records failed (data errors, not a fault)."""


def failed_for_records(instance: DagsterInstance, run_id: str | None, step_key: str) -> bool:
    """Whether the step ``step_key`` of run ``run_id`` failed because its records failed (see
    :data:`RECORDS_FAILED_ERROR_TYPE`); False for any other failure, or no run."""
    if run_id is None:
        return False
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None or event.step_key != step_key:
            continue
        failure = event.step_failure_data.user_failure_data if event.step_failure_data else None
        value = failure.metadata.get("error_type") if failure is not None else None
        if getattr(value, "value", value) == RECORDS_FAILED_ERROR_TYPE:
            return True
    return False
