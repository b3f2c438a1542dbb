"""Run one sync in a child process with phase markers, so a test can kill it at a chosen point.

Usage: ``python -m sync_pipelines_tests.support.fault_runner CONFIG_JSON RUN_ID``. The child wraps a few
engine functions (test code only; production modules carry no hooks) and prints ``AT <phase> <n>``
when it reaches the n-th occurrence of a phase:

- ``extract``: a batch was just staged by the extract stage;
- ``transform``: a batch was just staged by the transform stage;
- ``load-txn``: rows and outcomes of a batch are written, its transaction not yet committed;
- ``between``: the previous batch is committed and the next one not started;
- ``load-plan``: a batch is written by either load path (row by row or set-based on PostgreSQL),
  its transaction not yet committed.

With ``SYNC_FAULT_PAUSE_AT=<phase>:<n>`` it prints ``PAUSED`` there and sleeps, waiting for SIGKILL, or,
with ``SYNC_FAULT_RESUME_FILE=<path>``, until that file exists (the test breaks something meanwhile).
``SYNC_FAULT_SLOW_S=<seconds>`` sleeps that long at every marker (to make two runs overlap), and
``SYNC_FAULT_FSIZE=<bytes>`` caps the size of any file the child writes (``RLIMIT_FSIZE``, SIGXFSZ
ignored), so a staged file that outgrows it fails with a real ``EFBIG`` from the kernel.
The last line of a run that finishes is ``RESULT <json>``; of one that fails, ``ERROR <message>``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import sys
import time
from collections import Counter
from typing import Any

from sync_pipelines.config import SyncConfig
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import SyncError

extract_module = importlib.import_module("sync_pipelines.engine.extract")
transform_module = importlib.import_module("sync_pipelines.engine.transform")
load_module = importlib.import_module("sync_pipelines.engine.load")
driver_module = importlib.import_module("sync_pipelines.engine.driver")

PAUSE_ENV = "SYNC_FAULT_PAUSE_AT"
RESUME_ENV = "SYNC_FAULT_RESUME_FILE"
SLOW_ENV = "SYNC_FAULT_SLOW_S"
FSIZE_ENV = "SYNC_FAULT_FSIZE"
_seen: Counter[str] = Counter()


def _reached(phase: str) -> None:
    """Print the phase marker and pause there if the test asked for it."""
    number = _seen[phase]
    _seen[phase] += 1
    print(f"AT {phase} {number}", flush=True)
    time.sleep(float(os.environ.get(SLOW_ENV, "0")))
    if os.environ.get(PAUSE_ENV) == f"{phase}:{number}":
        print("PAUSED", flush=True)
        resume = os.environ.get(RESUME_ENV)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (resume and os.path.exists(resume)):
            time.sleep(0.05)


def _install() -> None:
    original_extract_write = extract_module.write_batch
    original_transform_write = transform_module.write_batch
    original_read = driver_module.read_batch
    original_write_plan = load_module.BatchLoader.write_plan

    def extract_write(table: Any, path: Any) -> None:
        original_extract_write(table, path)
        _reached("extract")

    def transform_write(table: Any, path: Any) -> None:
        original_transform_write(table, path)
        _reached("transform")

    def load_read(path: Any) -> Any:
        if _seen["load-txn"] or _seen["load-plan"]:
            _reached("between")
        return original_read(path)

    def write_plan(self: Any, conn: Any, plan: Any, batch: int) -> None:
        # Inside the batch's transaction, once everything of the batch is written: a kill here rolls it back.
        original_write_plan(self, conn, plan, batch)
        _reached("load-txn")
        _reached("load-plan")

    extract_module.write_batch = extract_write  # type: ignore[assignment]
    transform_module.write_batch = transform_write  # type: ignore[assignment]
    driver_module.read_batch = load_read  # type: ignore[assignment]
    load_module.BatchLoader.write_plan = write_plan  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    """Run the sync described by the JSON file ``argv[0]`` as run ``argv[1]``."""
    with open(argv[0], encoding="utf-8") as handle:
        config = SyncConfig.model_validate(json.load(handle))
    _install()
    if os.environ.get(FSIZE_ENV):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(os.environ[FSIZE_ENV])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        result = run_sync(config, RunOptions(run_id=argv[1]))
    except SyncError as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    print("RESULT " + json.dumps({"status": result.status.value, "counts": result.counts.as_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
