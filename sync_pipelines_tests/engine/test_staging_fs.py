"""Staging through fsspec: local folders, ``file://`` URLs and the in-memory filesystem.

``SYNC_PIPELINES_STAGING_DIR`` may name a shared store instead of a local folder. These tests run
whole syncs with the staging root on ``memory://`` (fsspec's in-process store, which goes through the
same code path as ``s3://`` or ``gs://``) and on a ``file://`` URL, and check the staging functions
one by one on both kinds of filesystem: a failed write leaves nothing behind, an unreadable batch
raises a StagingError naming it, ``remove`` clears a run's folder. S3 itself is not tested here (no
object store runs on this machine); it uses the same calls through s3fs.

A filesystem that runs out of space in the middle of a write is a real fsspec filesystem: the
in-memory one with a byte quota (``quotamem://``), registered for these tests.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import upath.registry
import yaml
from dagster import DagsterInstance
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from upath import UPath
from upath.implementations.memory import MemoryPath

from sync_pipelines.config import SyncConfig, load_configs
from sync_pipelines.engine import RunOptions, extract, load, run_sync, transform
from sync_pipelines.engine.manifest import STAGING_DIR_ENV, default_staging_root
from sync_pipelines.engine.staging import is_local, prepare_dir, read_batch, remove, staging_path, write_batch
from sync_pipelines.errors import StagingError
from sync_pipelines.orchestration import build_definitions, job_name
from sync_pipelines.orchestration.io_manager import IO_DIR_ENV
from sync_pipelines.types import RunStatus
from sync_pipelines_tests.support import faults as fs
from sync_pipelines_tests.support.databases import Databases


class _QuotaFile(MemoryFile):
    """A file of :class:`QuotaMemoryFileSystem`: writing past the quota fails like a full disk."""

    def write(self, data: Any) -> int:
        owner = self.fs
        assert isinstance(owner, QuotaMemoryFileSystem)
        if owner.used + len(data) > owner.quota_bytes:
            # Keep what fits, as a real device does, then fail.
            room = max(0, owner.quota_bytes - owner.used)
            owner.used += room
            super().write(bytes(data)[:room])
            raise OSError(errno.ENOSPC, "No space left on device", self.path)
        owner.used += len(data)
        return super().write(data)


class QuotaMemoryFileSystem(MemoryFileSystem):
    """fsspec's in-memory filesystem with a byte quota shared by every write."""

    protocol = "quotamem"
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]
    quota_bytes = 10**9
    used = 0

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("quotamem://"))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" not in mode:
            return super()._open(path, mode, **kwargs)
        path = self._strip_protocol(path)
        file = _QuotaFile(self, path)
        file.commit()  # visible at once, like a partial object left by a failed upload
        return file


fsspec.register_implementation("quotamem", QuotaMemoryFileSystem, clobber=True)
upath.registry.register_implementation("quotamem", MemoryPath, clobber=True)


@pytest.fixture
def memory_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh ``memory://`` staging root, set as ``SYNC_PIPELINES_STAGING_DIR``."""
    root = f"memory://sync-staging-{random.getrandbits(32):08x}"
    monkeypatch.setenv(STAGING_DIR_ENV, root)
    yield root
    memory = MemoryFileSystem()
    for key in [k for k in memory.store if k.startswith(UPath(root).path)]:
        memory.store.pop(key, None)


def _memory_files(root: str) -> list[str]:
    return sorted(k for k in MemoryFileSystem.store if k.startswith(UPath(root).path + "/"))


def _table(rows: int = 50) -> pa.Table:
    return pa.table({"id": list(range(rows)), "name": [f"row {i}" for i in range(rows)]})


def test_staging_root_accepts_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STAGING_DIR_ENV, str(tmp_path / "plain"))
    assert isinstance(default_staging_root(), Path) and str(default_staging_root()) == str(tmp_path / "plain")
    monkeypatch.setenv(STAGING_DIR_ENV, (tmp_path / "nfs").as_uri())
    root = default_staging_root()
    assert isinstance(root, Path) and str(root) == str(tmp_path / "nfs")  # file:// is plain local staging
    monkeypatch.setenv(STAGING_DIR_ENV, "memory://bucket/prefix")
    root = default_staging_root()
    assert not is_local(root) and root.protocol == "memory"
    folder = RunOptions(run_id="r1").staging_dir("items_sync")
    assert str(folder) == "memory://bucket/prefix/r1/items_sync"
    # Manifests keep str(path); it comes back as the same location.
    assert staging_path(str(folder / "extract" / "batch-000001.arrow")) == folder / "extract" / "batch-000001.arrow"
    monkeypatch.delenv(STAGING_DIR_ENV)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert str(default_staging_root()) == str(tmp_path / "home" / "sync_staging")


def test_full_sync_with_staging_in_memory(sqlite_dbs: Databases, memory_root: str, tmp_path: Path) -> None:
    fs.seed_source(sqlite_dbs, 40)
    config = SyncConfig.model_validate(fs.sync_config(sqlite_dbs, batch_size=7))
    options = RunOptions(run_id="mem-1")
    extracted = extract(config, options)
    assert len(extracted.batches) == 6 and all(
        b.path.startswith(f"{memory_root}/mem-1/items_sync/extract/") for b in extracted.batches
    )
    transformed = transform(config, extracted, options)
    assert all(b.path.startswith(f"{memory_root}/mem-1/items_sync/transform/") for b in transformed.batches)
    staged = _memory_files(memory_root)
    assert len(staged) == 12 and all(name.endswith(".arrow") for name in staged), staged
    assert not (tmp_path / "staging").exists()  # nothing was written to the local staging folder
    result = load(config, transformed, options)
    assert result.status is RunStatus.COMPLETED and result.counts.created == 40
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))
    assert _memory_files(memory_root) == []  # the load removed the run's staging folder

    # An incremental run after changes, all three stages in one call.
    fs.change_source(sqlite_dbs, random.Random(5), 1, updates=9, inserts=4)
    again = run_sync(config, RunOptions(run_id="mem-2"))
    assert again.status is RunStatus.COMPLETED and again.counts.created == 4 and again.counts.updated == 9
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))
    fs.assert_no_duplicates(sqlite_dbs)
    fs.assert_watermark_committed(sqlite_dbs)
    assert _memory_files(memory_root) == []


def test_full_sync_with_a_file_url(sqlite_dbs: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "nfs" / "sync"
    monkeypatch.setenv(STAGING_DIR_ENV, shared.as_uri())
    fs.seed_source(sqlite_dbs, 12)
    config = SyncConfig.model_validate(fs.sync_config(sqlite_dbs, batch_size=5))
    options = RunOptions(run_id="url-1")
    extracted = extract(config, options)
    assert [Path(b.path).parent for b in extracted.batches] == [shared / "url-1" / "items_sync" / "extract"] * 3
    assert all(Path(b.path).is_file() for b in extracted.batches)
    result = load(config, transform(config, extracted, options), options)
    assert result.status is RunStatus.COMPLETED and result.counts.created == 12
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))
    assert not (shared / "url-1" / "items_sync").exists()


@pytest.mark.slow
def test_dagster_job_with_staging_and_step_outputs_in_memory(
    sqlite_dbs: Databases, memory_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync's Dagster job keeps batches and step outputs on the shared store, none on local disk."""
    io_root = f"{memory_root}-io"
    monkeypatch.setenv(IO_DIR_ENV, io_root)
    fs.seed_source(sqlite_dbs, 25)
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "items_sync.yaml").write_text(yaml.safe_dump(fs.sync_config(sqlite_dbs, batch_size=6)), encoding="utf-8")
    job = build_definitions(load_configs(folder)).resolve_job_def(job_name("items_sync"))
    result = job.execute_in_process(instance=DagsterInstance.get(), raise_on_error=False)
    assert result.success
    assert fs.checksum(fs.target_rows(sqlite_dbs)) == fs.checksum(fs.source_rows(sqlite_dbs))
    outputs = _memory_files(io_root)
    assert outputs and all("items_sync" in name for name in outputs), outputs  # the manifests between the steps
    assert _memory_files(memory_root) == []  # batches staged, loaded, then removed
    assert not (tmp_path / "staging").exists()
    local_outputs = [p for p in (tmp_path / "dagster_home").rglob("*") if "items_sync" in p.name or p.name == "result"]
    assert local_outputs == []  # the instance's storage folder holds its own databases only
    for key in outputs:
        MemoryFileSystem.store.pop(key, None)


def test_staging_in_memory_failure_leaves_target_untouched(sqlite_dbs: Databases, memory_root: str) -> None:
    """A staged batch that vanished from the shared store between steps stops the load before it writes."""
    fs.seed_source(sqlite_dbs, 20)
    config = SyncConfig.model_validate(fs.sync_config(sqlite_dbs, batch_size=5))
    options = RunOptions(run_id="lost")
    transformed = transform(config, extract(config, options), options)
    gone = transformed.batches[2].path
    MemoryFileSystem().rm_file(UPath(gone).path)
    with pytest.raises(StagingError) as caught:
        load(config, transformed, options)
    assert f"cannot read staged batch {gone}" in str(caught.value)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_write_read_and_remove(where: str, tmp_path: Path, memory_root: str) -> None:
    root = str(tmp_path / "stage") if where == "local" else memory_root
    folder = prepare_dir(f"{root}/run/sync/extract")
    assert is_local(folder) is (where == "local")
    write_batch(_table(), folder / "batch-000001.arrow")
    assert read_batch(str(folder / "batch-000001.arrow")).equals(_table())
    # prepare_dir empties a folder that already holds files (a retried step starts clean).
    again = prepare_dir(folder)
    assert not again.fs.exists(f"{again.path}/batch-000001.arrow")
    write_batch(_table(3), again / "batch-000001.arrow")
    remove(f"{root}/run")
    assert not staging_path(f"{root}/run").exists()
    remove(f"{root}/run")  # removing twice is fine
    if where == "local":
        assert list((tmp_path / "stage").iterdir()) == []
    else:
        assert _memory_files(memory_root) == []


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_batch_is_staged_as_an_arrow_file_and_one_staged_as_parquet_is_still_read(
    where: str, tmp_path: Path, memory_root: str
) -> None:
    root = str(tmp_path / "stage") if where == "local" else memory_root
    folder = prepare_dir(f"{root}/run/sync/extract")
    write_batch(_table(), folder / "batch-000001.arrow")
    assert (folder / "batch-000001.arrow").read_bytes()[:6] == b"ARROW1"
    # A run re-executed after an upgrade finds the batches an earlier release staged as Parquet.
    earlier = folder / "batch-000002.parquet"
    with earlier.open("wb") as handle:
        pq.write_table(_table(7), handle, compression="lz4")
    assert read_batch(str(earlier)).equals(_table(7))
    assert read_batch(str(folder / "batch-000001.arrow")).equals(_table())


@pytest.mark.parametrize("where", ["local", "memory"])
def test_unwritable_batch_leaves_no_file(where: str, tmp_path: Path, memory_root: str) -> None:
    root = str(tmp_path / "stage") if where == "local" else memory_root
    folder = prepare_dir(f"{root}/run/sync/transform")
    write_batch(_table(), folder / "batch-000001.arrow")
    # An IPC file holds one dictionary per column: a second one fails the writer after the file was opened.
    bad = pa.table(
        {"status": pa.chunked_array([pa.array(["new"]).dictionary_encode(), pa.array(["paid"]).dictionary_encode()])}
    )
    target = folder / "batch-000002.arrow"
    with pytest.raises(StagingError) as caught:
        write_batch(bad, target)
    assert f"cannot write staged batch {target}" in str(caught.value)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batch-000001.arrow"], names


def test_full_object_store_leaves_no_partial_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(QuotaMemoryFileSystem, "quota_bytes", 3000)
    monkeypatch.setattr(QuotaMemoryFileSystem, "used", 0)
    monkeypatch.setattr(QuotaMemoryFileSystem, "store", {})
    monkeypatch.setattr(QuotaMemoryFileSystem, "pseudo_dirs", [""])
    folder = prepare_dir("quotamem://bucket/run/sync/extract")
    write_batch(_table(10), folder / "batch-000001.arrow")
    target = folder / "batch-000002.arrow"
    with pytest.raises(StagingError) as caught:
        write_batch(_table(2000), target)
    assert str(caught.value).startswith(f"cannot write staged batch {target}: ")
    assert "No space left on device" in str(caught.value)
    assert sorted(QuotaMemoryFileSystem.store) == ["/bucket/run/sync/extract/batch-000001.arrow"]
    assert read_batch(folder / "batch-000001.arrow").equals(_table(10))


@pytest.mark.parametrize("where", ["local", "memory"])
def test_unreadable_batch_names_the_path(where: str, tmp_path: Path, memory_root: str) -> None:
    root = str(tmp_path / "stage") if where == "local" else memory_root
    folder = prepare_dir(f"{root}/run/sync/extract")
    truncated = folder / "batch-000001.arrow"
    write_batch(_table(), truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(StagingError) as caught:
        read_batch(str(truncated))
    assert str(caught.value).startswith(f"cannot read staged batch {truncated}: ")
    missing = f"{folder}/batch-000009.arrow"
    with pytest.raises(StagingError) as caught:
        read_batch(missing)
    assert str(caught.value).startswith(f"cannot read staged batch {missing}: ")


def test_staging_root_below_a_file_on_memory_is_refused(memory_root: str) -> None:
    """A staging folder whose parent is a file cannot be prepared on the in-memory store either."""
    MemoryFileSystem().pipe_file(f"{UPath(memory_root).path}/blocker", b"a file")
    with pytest.raises(StagingError) as caught:
        prepare_dir(f"{memory_root}/blocker/run")
    assert f"staging folder {memory_root}/blocker/run is not writable" in str(caught.value)
