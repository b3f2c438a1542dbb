"""SQL databases through SQLAlchemy Core: engines shared within a step, driver errors classified, reflection.

The readers and writers of SQL tables live beside this module: :mod:`~sync_pipelines.connectors.sql_source`
(streaming reads of a source table or query) and :mod:`~sync_pipelines.connectors.sql_target` (a target table
and its bookkeeping). Every identifier goes through SQLAlchemy's quoting and every value is a bound parameter;
no SQL is built by formatting config or data values into strings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine

from sync_pipelines.config.secrets import redact
from sync_pipelines.config.urls import build_url, display_url
from sync_pipelines.connectors.dialects import backend, backend_of_error
from sync_pipelines.errors import ConnectorError, PermanentConnectorError, TransientConnectorError


class _SharedEngines:
    """Engines kept for reuse while at least one :func:`shared_engines` block is open (any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.engines: dict[tuple[str, str], Engine] = {}


_SHARED = _SharedEngines()


@contextlib.contextmanager
def shared_engines() -> Iterator[None]:
    """Within the block, :func:`create_sql_engine` gives one engine (one pool) per database URL.

    A step opens the target for its ledger row, its writes and its metadata: with this, it connects
    once instead of building an engine and a connection for each. The engines are disposed when the
    outermost block ends; :func:`release_engine` leaves them alone until then.
    """
    with _SHARED.lock:
        _SHARED.depth += 1
    try:
        yield
    finally:
        with _SHARED.lock:
            _SHARED.depth -= 1
            done = list(_SHARED.engines.values()) if _SHARED.depth == 0 else []
            if done:
                _SHARED.engines.clear()
        for engine in done:
            engine.dispose()


def release_engine(engine: Engine) -> None:
    """Dispose ``engine`` unless a :func:`shared_engines` block keeps it for the rest of the step."""
    with _SHARED.lock:
        if any(e is engine for e in _SHARED.engines.values()):
            return
    engine.dispose()


def create_sql_engine(template: str, *, where: str, bulk_load: bool = False) -> tuple[Engine, str]:
    """Resolve secrets in ``template`` and create an engine; returns it with the display URL.

    ``bulk_load`` is for a target's engine (see :meth:`SqlBackend.dbapi_connect_args`); sources and
    the ledger's readers get an engine without it.

    The URL is assembled from its components (:func:`build_url`), so no value of a ``${VAR}`` can
    change its structure. Inside :func:`shared_engines`, the engine of a URL is created once and then
    reused.
    """
    shown = display_url(template)
    try:
        url: URL = build_url(template, where=where)
    except ValueError as exc:
        raise PermanentConnectorError(f"invalid SQLAlchemy URL: {exc}", endpoint=shown) from None
    db = backend(url)
    if db.default_dbapi is not None and "+" not in url.drivername:
        url = url.set(drivername=f"{url.drivername}+{db.default_dbapi}")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    connect_args = db.dbapi_connect_args(url, bulk_load=bulk_load)
    if connect_args:
        kwargs["connect_args"] = connect_args
    # One engine per URL and connection arguments: a target's engine serves its ledger too where
    # ``bulk_load`` changes nothing (every database but MariaDB/MySQL).
    cache_key = (url.render_as_string(hide_password=False), repr(sorted(connect_args.items())))
    with _SHARED.lock:
        if _SHARED.depth and cache_key in _SHARED.engines:
            return _SHARED.engines[cache_key], shown
    try:
        engine = sa.create_engine(url, **kwargs)
        db.configure_engine(engine, bulk_load=bulk_load)
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise PermanentConnectorError(redact(f"cannot create engine: {exc}"), endpoint=shown) from None
    with _SHARED.lock:
        if _SHARED.depth:
            engine = _SHARED.engines.setdefault(cache_key, engine)
    return engine, shown


def classify(error: BaseException, endpoint: str, action: str) -> ConnectorError:
    """Turn a driver error into a transient or permanent :class:`ConnectorError` without secrets."""
    original = getattr(error, "orig", None) or error
    text = redact(" ".join(str(original).split()))[:500]
    message = f"{action} failed: {text}"
    # Told by the driver's exception class and error code (never by message text, which changes with
    # driver releases and server locales), or by SQLAlchemy's own pool time-out and disconnect detection.
    transient = (
        isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError)
        or (isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated)
        or backend_of_error(original).is_transient(original)
    )
    cls = TransientConnectorError if transient else PermanentConnectorError
    return cls(message, endpoint=endpoint)


@contextlib.contextmanager
def translate_errors(endpoint: str, action: str) -> Iterator[None]:
    """Re-raise SQLAlchemy and driver errors as connector errors naming the endpoint."""
    try:
        yield
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        raise classify(exc, endpoint, action) from None


def reflect_columns(conn: Connection, name: str, schema: str | None) -> sa.Table:
    """A table's columns and their types, as reflected by the database (raises ``NoSuchTableError``).

    Reads, upserts and deletes need nothing else; a full reflection also reads constraints, indexes and
    comments, several times the queries.
    """
    columns = sa.inspect(conn).get_columns(name, schema=schema)
    return sa.Table(name, sa.MetaData(schema=schema), *[sa.Column(c["name"], c["type"]) for c in columns])


def add_missing_columns(conn: Connection, inspector: sa.Inspector, table: sa.Table) -> None:
    """Add nullable columns a bookkeeping table created by an earlier release lacks (e.g. ``entity``)."""
    present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
    preparer = conn.dialect.identifier_preparer
    for column in table.columns:
        if column.name not in present and column.nullable:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(
                sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.quote(column.name)} {kind}")
            )


def _norm_key(value: Any) -> Any:
    """Key values as compared between staged rows and target rows."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def norm_key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_norm_key(v) for v in values)
