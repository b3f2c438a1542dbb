"""Run-scoped staging of Parquet batches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sync_pipelines.errors import StagingError


def prepare_dir(path: Path) -> Path:
    """Create (or empty) a staging folder; raises :class:`StagingError` naming it."""
    try:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StagingError(f"staging folder {path} is not writable: {exc.strerror or exc}") from None
    return path


def write_batch(table: pa.Table, path: Path) -> None:
    """Write one batch atomically (a temporary file renamed into place)."""
    tmp = path.with_suffix(".tmp")
    try:
        pq.write_table(table, tmp, compression="lz4")
        os.replace(tmp, path)
    except OSError as exc:
        # A partial file on a full disk would keep holding the space that is missing.
        tmp.unlink(missing_ok=True)
        raise StagingError(f"cannot write staged batch {path}: {exc.strerror or exc}") from None


def read_batch(path: str | Path) -> pa.Table:
    """Read one staged batch; raises :class:`StagingError` if it is gone or unreadable."""
    try:
        # ParquetFile, not read_table: the latter loads pyarrow's dataset layer, ~0.2-0.4 s per process here.
        with pq.ParquetFile(path) as staged:
            return staged.read()
    except (OSError, pa.ArrowInvalid) as exc:
        raise StagingError(f"cannot read staged batch {path}: {exc}") from None


def remove(path: Path) -> None:
    """Remove a run's staging folder once the data is loaded."""
    shutil.rmtree(path, ignore_errors=True)
