"""Stopping a step cleanly when its run is terminated.

Dagster delivers a termination to the op as :class:`dagster.DagsterExecutionInterruptedError`, raised
wherever the op's code happens to be, which ``except Exception`` does not catch. To stop at a batch
boundary instead of mid-batch, the engine call runs in a worker thread while the op's thread waits
for it; when the interrupt arrives, the op sets ``RunOptions.stop_requested``, waits until the engine
has committed (or rolled back) the batch in progress and stopped, and then lets the interrupt end
the step. The target then holds only whole batches, and the watermark names the last of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dagster import DagsterExecutionInterruptedError, OpExecutionContext

from sync_pipelines.engine.manifest import RunOptions

T = TypeVar("T")

POLL_S = 0.2


def run_interruptible(context: OpExecutionContext, options: RunOptions, call: Callable[[], T]) -> T:
    """Run ``call`` (an engine stage using ``options``) so that a run termination stops it at a batch boundary.

    Raises:
        DagsterExecutionInterruptedError: the run was terminated; the engine stopped after its last
            committed batch.
    """
    outcome: dict[str, Any] = {}
    # Completion is signalled by an event, not read from Thread.is_alive(): an interrupt raised
    # inside Thread.join() can leave the thread looking finished while it still runs.
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed over to the op's thread below
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name=f"sync-{options.run_id[:8]}", daemon=True)
    worker.start()
    try:
        while not done.wait(POLL_S):
            pass
    except DagsterExecutionInterruptedError:
        options.stop_requested.set()
        context.log.warning("run terminated: stopping at the next batch boundary (the batch in progress completes)")
        _wait_ignoring_interrupts(done)
        context.log.warning("stopped; every batch committed so far is kept, with its watermark")
        raise
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def _wait_ignoring_interrupts(done: threading.Event) -> None:
    """Wait for the worker even if more interrupts arrive (a second click on Terminate)."""
    while not done.is_set():
        try:
            done.wait(POLL_S)
        except DagsterExecutionInterruptedError:
            continue
