"""One backend per SQL database: PostgreSQL, MariaDB/MySQL and SQLite.

``backend(x)`` answers for an engine, a connection, a URL or a backend name; every per-database
decision of the connectors (bulk path, keys per query, upsert, lease, error classification,
identifier rules) is asked of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from sqlalchemy.engine import URL, Connection, Engine

from sync_pipelines.connectors.dialects.base import SqlBackend
from sync_pipelines.connectors.dialects.mysql import MySqlBackend
from sync_pipelines.connectors.dialects.postgresql import PostgresBackend
from sync_pipelines.connectors.dialects.sqlite import SqliteBackend

_GENERIC = SqlBackend()
BACKENDS: tuple[SqlBackend, ...] = (PostgresBackend(), MySqlBackend(), SqliteBackend())
_BY_NAME = {name: b for b in BACKENDS for name in b.backend_names}


def backend(of: Engine | Connection | URL | str) -> SqlBackend:
    """The backend of an engine, a connection, a URL or a SQLAlchemy backend name.

    A database without a backend of its own gets the generic one: plain SQLAlchemy, no lease, no
    bulk path, and an upsert that says which databases have one.
    """
    if isinstance(of, str):
        name = of
    elif isinstance(of, URL):
        name = of.get_backend_name()
    else:
        name = of.dialect.name
    return _BY_NAME.get(name, _GENERIC)


def backend_of_error(error: BaseException) -> SqlBackend:
    """The backend whose driver raised ``error`` (a DBAPI exception), told by the exception's module."""
    module = type(error).__module__.split(".")[0]
    return next((b for b in BACKENDS if module in b.driver_modules), _GENERIC)


@contextlib.contextmanager
def sync_lease(
    engine: Engine,
    sync: str,
    timeout_s: float = 60.0,
    *,
    slots: int = 0,
    on_wait: Callable[[str], None] | None = None,
    behind_shared_s: float | None = None,
) -> Iterator[None]:
    """Hold the lease of ``sync`` on the target behind ``engine``, so two runs never write it at once.

    Waits up to ``timeout_s`` for it; an exclusive holder whose only wait is for shared holders to leave
    (partition runs loading) waits up to ``behind_shared_s`` instead, when given. ``slots=0`` (plain runs,
    conflict resolution) takes it alone; ``slots=n`` shares it with at most ``n - 1`` other shared holders
    (partition runs of disjoint windows), on databases that take several writers (see
    :meth:`SqlBackend.lease`). Driver errors propagate as they are: callers wrap the lease in their
    ``translate_errors``. PostgreSQL uses session advisory locks, MariaDB/MySQL ``GET_LOCK``, SQLite an
    exclusive ``flock`` on a file beside the database; each is released by the server or the OS when the
    holder dies.

    Raises:
        ConcurrentRunError: another run still holds the lease after ``timeout_s``.
    """
    now = time.monotonic()
    behind = None if behind_shared_s is None else now + behind_shared_s
    with backend(engine).lease(engine, sync, now + timeout_s, slots=slots, on_wait=on_wait, behind_shared=behind):
        yield


def known() -> list[str]:
    """The backend names with a backend of their own."""
    return sorted(_BY_NAME)


__all__ = [
    "BACKENDS",
    "MySqlBackend",
    "PostgresBackend",
    "SqlBackend",
    "SqliteBackend",
    "backend",
    "backend_of_error",
    "known",
    "sync_lease",
]
