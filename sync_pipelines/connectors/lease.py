"""The per-sync lease: two runs of one sync never write its target at the same time.

PostgreSQL uses a session advisory lock, MariaDB/MySQL ``GET_LOCK``, SQLite an exclusive ``flock``
on a file beside the database; each is released by the server or the OS when the holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from sync_pipelines.errors import ConcurrentRunError

_POLL_S = 0.25


@contextlib.contextmanager
def sync_lease(engine: Engine, sync: str, timeout_s: float = 60.0) -> Iterator[None]:
    """Hold the lease of ``sync`` on the target behind ``engine``; wait up to ``timeout_s`` for it.

    Driver errors propagate as they are: callers wrap the lease in their ``translate_errors``.

    Raises:
        ConcurrentRunError: another run still holds the lease after ``timeout_s``.
    """
    name = f"sync_pipelines:{sync}"
    deadline = time.monotonic() + timeout_s
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with _file_lease(engine, sync, deadline):
            yield
        return
    with engine.connect() as conn:
        if dialect == "postgresql":
            lock_id = int.from_bytes(hashlib.blake2b(name.encode()).digest()[:8], "big", signed=True)
            while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(lock_id))).scalar():
                _wait_or_fail(sync, deadline)
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(lock_id)))
                    conn.commit()
        elif dialect in ("mysql", "mariadb"):
            while conn.execute(sa.select(sa.func.get_lock(name[:64], 1))).scalar() != 1:
                _wait_or_fail(sync, deadline)
            try:
                yield
            finally:
                with contextlib.suppress(sa_exc.SQLAlchemyError):
                    conn.execute(sa.select(sa.func.release_lock(name[:64])))
        else:
            yield


@contextlib.contextmanager
def _file_lease(engine: Engine, sync: str, deadline: float) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(Path(f"{database}.{sync}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                _wait_or_fail(sync, deadline)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _wait_or_fail(sync: str, deadline: float) -> None:
    if time.monotonic() > deadline:
        raise ConcurrentRunError(f"sync {sync}: another run is loading it; wait for it to finish")
    time.sleep(_POLL_S)
