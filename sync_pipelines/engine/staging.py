"""Run-scoped staging of batches as Arrow IPC files, on a local folder or any fsspec filesystem.

A staged batch is written once and read once, soon after, by the next stage: the Arrow IPC file format
with lz4-compressed buffers writes and reads several times faster than Parquet (per million rows of the
benchmark's orders: 0.18 s against 0.46 s to write, 0.07 s against 0.34 s to read, in files 10 % larger).
Batches staged as Parquet by an earlier release are still read, so a run re-executed after an upgrade
resumes from them.

A staging location is a plain path (``/var/lib/sync``, ``staging``), a ``file://`` URL or the URL of a
shared store (``s3://bucket/prefix``, ``memory://name``). Local locations (plain paths and ``file://``)
come back as :class:`pathlib.Path`-compatible ``UPath`` objects and are handled with the operating
system's own calls: a batch is written to a temporary file and renamed into place, so a reader never
sees half a file. Every other location goes through its fsspec filesystem; there a batch is one object
written in a single upload (a PUT, or a multipart upload completed at the end), which is atomic on
object stores, and a failed write removes whatever it left behind.

Paths stored in manifests are ``str(path)``: a plain path for local staging, the full URL otherwise, so
:func:`staging_path` turns them back into the same location in the next step or on another machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from upath import UPath

from sync_pipelines.errors import StagingError

StagingPath: TypeAlias = str | os.PathLike[str] | UPath
"""What the staging functions accept: a path, a ``file://`` or fsspec URL, or a ``UPath``."""

_LOCAL_PROTOCOLS = ("", "file", "local")
_IPC_OPTIONS = ipc.IpcWriteOptions(compression="lz4")
_IPC_MAGIC = b"ARROW1"
BATCH_SUFFIX = ".arrow"


def batch_name(index: int) -> str:
    """The file name of a stage's batch ``index``."""
    return f"batch-{index:06d}{BATCH_SUFFIX}"


def staging_path(location: StagingPath) -> UPath:
    """The ``UPath`` of a staging location; local locations (also ``file://`` URLs) become plain local paths."""
    path = location if isinstance(location, UPath) else UPath(location)
    if path.protocol in _LOCAL_PROTOCOLS and not isinstance(path, Path):
        path = UPath(path.path)
    return path


def is_local(location: StagingPath) -> bool:
    """Whether a staging location is on the local file system (a plain path or a ``file://`` URL)."""
    return isinstance(staging_path(location), Path)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def prepare_dir(path: StagingPath) -> UPath:
    """Create (or empty) a staging folder; raises :class:`StagingError` naming it."""
    folder = staging_path(path)
    try:
        if isinstance(folder, Path):
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        else:
            fs, where = folder.fs, folder.path
            if fs.exists(where):
                fs.rm(where, recursive=True)
            fs.makedirs(where, exist_ok=True)
            probe_path = f"{where.rstrip('/')}/.write-test"
            fs.pipe_file(probe_path, b"ok")
            fs.rm_file(probe_path)
    except OSError as exc:
        raise StagingError(f"staging folder {folder} is not writable: {_reason(exc)}") from None
    return folder


def write_batch(table: pa.Table, path: StagingPath) -> None:
    """Write one batch atomically: renamed into place locally, one upload on other filesystems.

    A failed write leaves no file behind, neither the temporary one nor a partial batch.
    """
    target = staging_path(path)
    if isinstance(target, Path):
        tmp = target.with_suffix(".tmp")
        try:
            _write_file(table, str(tmp))
            os.replace(tmp, target)
        except (OSError, pa.ArrowException) as exc:
            # A partial file on a full disk would keep holding the space that is missing.
            tmp.unlink(missing_ok=True)
            raise StagingError(f"cannot write staged batch {target}: {_reason(exc)}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    fs, where = target.fs, target.path
    try:
        _write_file(table, where, fs)
    except (OSError, pa.ArrowException) as exc:
        _discard(fs, where)
        raise StagingError(f"cannot write staged batch {target}: {_reason(exc)}") from None
    except BaseException:
        _discard(fs, where)
        raise


def _write_file(table: pa.Table, where: str, filesystem: Any = None) -> None:
    """``table`` as one Arrow IPC file at ``where`` (a local path, or a path of ``filesystem``)."""
    sink = pa.OSFile(where, "wb") if filesystem is None else filesystem.open(where, "wb")
    with sink, ipc.new_file(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)


def _discard(fs: Any, where: str) -> None:
    """Remove what a failed write may have left (nothing, or a partial object)."""
    try:
        if fs.exists(where):
            fs.rm_file(where)
    except OSError:
        pass


def read_batch(path: StagingPath) -> pa.Table:
    """Read one staged batch; raises :class:`StagingError` if it is gone or unreadable."""
    source = staging_path(path)
    try:
        if isinstance(source, Path):
            with pa.OSFile(str(source), "rb") as handle:
                return _read_file(handle)
        with source.fs.open(source.path, "rb") as raw, pa.PythonFile(raw, mode="r") as handle:
            return _read_file(handle)
    except (OSError, pa.ArrowException) as exc:
        raise StagingError(f"cannot read staged batch {source}: {exc}") from None


def _read_file(handle: pa.NativeFile) -> pa.Table:
    head = handle.read(len(_IPC_MAGIC))
    handle.seek(0)
    if head == _IPC_MAGIC:
        return ipc.open_file(handle).read_all()
    # Staged as Parquet by an earlier release. ParquetFile, not read_table: the latter loads pyarrow's
    # dataset layer, ~0.2-0.4 s per process.
    with pq.ParquetFile(handle) as staged:
        return staged.read()


def remove(path: StagingPath) -> None:
    """Remove a run's staging folder once the data is loaded (nothing happens if it is gone)."""
    folder = staging_path(path)
    if isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        if folder.fs.exists(folder.path):
            folder.fs.rm(folder.path, recursive=True)
    except OSError:
        pass


def remove_sync_staging(path: StagingPath) -> None:
    """Remove a sync's staging folder of one run (``<root>/<run id>/<sync>``) once its data is loaded.

    Locally, the run's folder above it goes too once it is empty, so a finished run leaves no empty
    folder behind (object stores have no empty folders).
    """
    remove(path)
    folder = staging_path(path)
    if isinstance(folder, Path):
        with contextlib.suppress(OSError):  # not empty (another sync of the run), or already gone
            folder.parent.rmdir()
