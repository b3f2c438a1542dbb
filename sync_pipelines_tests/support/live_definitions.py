"""The code location of the live tests: the project's definitions, with faults the tests switch on.

Only the live deployment's code server imports this module: importing it patches the SQL
connectors of the whole process. Without ``$SYNC_LIVE_CONTROL`` the patches do nothing.

``$SYNC_LIVE_CONTROL`` names a JSON file read on every batch: ``delay`` maps a sync to seconds of
sleep before each batch is written (a long run to terminate), ``hold`` to true keeps a sync's next
batch from being written until it is set back, and ``fail`` maps a sync to how many more source
reads fail with a transient error (a source that comes back).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync_pipelines.config import load_configs
from sync_pipelines.connectors.sql_source import SourceBatch, SqlSourceReader
from sync_pipelines.engine.load import BatchLoader
from sync_pipelines.errors import TransientConnectorError
from sync_pipelines.orchestration import build_definitions
from sync_pipelines_tests.support.live import CONTROL_ENV, replace_file

_write_plan = BatchLoader.write_plan
_read = SqlSourceReader.read


def _control() -> dict[str, Any]:
    if not os.environ.get(CONTROL_ENV):
        return {"delay": {}, "fail": {}}
    return dict(json.loads(Path(os.environ[CONTROL_ENV]).read_text(encoding="utf-8")))


def _slow_write(self: BatchLoader, conn: Any, plan: Any, batch: int) -> None:
    while _control().get("hold", {}).get(self.config.name):
        time.sleep(0.2)
    time.sleep(float(_control()["delay"].get(self.config.name, 0)))
    _write_plan(self, conn, plan, batch)


def _flaky_read(self: SqlSourceReader, *args: Any, **kwargs: Any) -> Iterator[SourceBatch]:
    control = _control()
    left = int(control["fail"].get(self.config.name, 0))
    if left > 0:
        control["fail"][self.config.name] = left - 1
        replace_file(Path(os.environ[CONTROL_ENV]), json.dumps(control))
        raise TransientConnectorError("reading the source failed: connection refused", endpoint=self.endpoint)
    yield from _read(self, *args, **kwargs)


BatchLoader.write_plan = _slow_write  # type: ignore[method-assign]
SqlSourceReader.read = _flaky_read  # type: ignore[method-assign]

defs = build_definitions(load_configs())
