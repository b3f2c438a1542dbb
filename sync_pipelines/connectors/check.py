"""Connection test of a sync's endpoints: can this sync run at all, and why not.

For the source: secrets resolve, the server answers, the table (or query) and every mapped column
exist, their types can be cast to the declared ones, and one row can be read. For the target: the
server answers, the table exists (or may be created), the mapped columns exist with types that can
store the declared ones, the key columns form a primary key or unique index (an upsert needs one),
and the account can write: test writes inside a transaction that is rolled back.

Every message has credentials removed: passwords of the URLs and resolved ``${VAR}`` values.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sync_pipelines.config.elasticsearch import CmdbTarget, ElasticsearchHostsSource, ElasticsearchSource
from sync_pipelines.config.models import SqlSource, SqlTarget, SyncConfig
from sync_pipelines.config.secrets import redact
from sync_pipelines.config.urls import display_url, parse_url_template
from sync_pipelines.connectors.cmdb import CmdbWriter
from sync_pipelines.connectors.compat import (
    can_store,
    family_of_declared,
    family_of_sql,
    type_mismatches,
)
from sync_pipelines.connectors.es_client import display_endpoint, es_client, translate_es_errors
from sync_pipelines.connectors.es_documents import ElasticsearchDocumentReader, flatten_mapping
from sync_pipelines.connectors.sql import translate_errors
from sync_pipelines.connectors.sql_source import open_sql_source
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.errors import CheckFailed, SyncError


class EndpointRole(StrEnum):
    """Which side of a sync an endpoint is."""

    SOURCE = "source"
    TARGET = "target"


class EndpointStatus(StrEnum):
    """The verdict on one endpoint."""

    OK = "OK"
    FAILED = "FAILED"


@dataclass
class EndpointCheck:
    """The outcome of checking one endpoint of one sync."""

    sync: str
    role: EndpointRole
    endpoint: str
    ok: bool = True
    latency_ms: float = 0.0
    error: str | None = None
    passed: list[str] = field(default_factory=list)
    """What was verified, in order (shown with an OK result)."""

    @property
    def status(self) -> EndpointStatus:
        """OK or FAILED."""
        return EndpointStatus.OK if self.ok else EndpointStatus.FAILED

    def summary(self) -> str:
        """One line: ``OK`` or ``FAILED``, the latency, and the error."""
        text = f"{self.sync} {self.role.value:<6} {self.status.value:<6} {self.latency_ms:7.0f} ms  {self.endpoint}"
        return f"{text}\n    {self.error}" if self.error else text


@dataclass
class CheckContext:
    """What the source check learned that the target check reuses (the source's column types)."""

    source_types: dict[str, pa.DataType] | None = None


def _probe_name() -> str:
    return f"_sync_check_{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- SQL source


def check_sql_source(config: SyncConfig, result: EndpointCheck, context: CheckContext) -> None:
    assert isinstance(config.source, SqlSource)
    reader = open_sql_source(config)
    try:
        with translate_errors(reader.endpoint, "connecting"), reader.engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar()
        result.passed.append("connected")
        types = reader.arrow_schema()
        what = f"table {config.source.table!r}" if config.source.table else "query"
        result.passed.append(f"{what} has the mapped columns")
        context.source_types = types
        mismatches = type_mismatches(config, types)
        if mismatches:
            raise CheckFailed("; ".join(str(m) for m in mismatches))
        result.passed.append("column types can be cast")
        with translate_errors(reader.endpoint, "reading one row"), reader.engine.connect() as conn:
            query, _ = reader.select_rows(conn, None, incremental=False)
            conn.execute(query.limit(1)).all()
        result.passed.append("read one row")
    finally:
        reader.engine.dispose()


# --------------------------------------------------------------------------- SQL target


def _target_columns(config: SyncConfig, source_types: dict[str, pa.DataType] | None) -> list[str]:
    """The target columns a run writes: the mapping's, or (without a mapping) the source's."""
    return list(config.mapping) if config.mapping else list(source_types or {})


def _unique_sets(inspector: Any, table: str, schema: str | None) -> list[set[str]]:
    """Column sets of the primary key, unique constraints and unique indexes of ``table``."""
    sets: list[set[str]] = []
    primary = inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []
    if primary:
        sets.append(set(primary))
    for constraint in inspector.get_unique_constraints(table, schema=schema):
        sets.append(set(constraint.get("column_names") or []))
    for index in inspector.get_indexes(table, schema=schema):
        if index.get("unique"):
            sets.append({c for c in index.get("column_names") or [] if c})
    return sets


def _check_columns(config: SyncConfig, table: sa.Table, context: CheckContext) -> list[str]:
    """Problems with the target's columns: missing ones, and types that cannot store the declared types."""
    problems = []
    missing = [c for c in _target_columns(config, context.source_types) if c not in table.c]
    if missing:
        problems.append(f"target table {config.target.table!r} has no column(s) {', '.join(missing)}")
    # Only types the mapping declares are compared: a source's own type may be stored as text
    # (SQLite dates), which its target column converts on write.
    for column, spec in config.mapping.items():
        type_text = spec.type
        if type_text is None or column not in table.c:
            continue
        family = family_of_sql(table.c[column].type)
        if not can_store(family_of_declared(type_text), family):
            problems.append(
                f"target column {column!r} is {family.value} ({table.c[column].type}), "
                f"which cannot store {type_text} (mapping.{column}.type)"
            )
    return problems


def _test_write_existing(writer: SqlTargetWriter, conn: Connection, table: sa.Table) -> None:
    """Statements that need INSERT and UPDATE rights on the target table but change no row."""
    keys = [table.c[k] for k in writer.target.key]
    conn.execute(sa.insert(table).from_select([k.name for k in keys], sa.select(*keys).where(sa.false())))
    conn.execute(sa.update(table).where(sa.false()).values({keys[0].name: keys[0]}))
    if sa.inspect(conn).has_table(writer.state_table.name, schema=writer.target.db_schema):
        conn.execute(sa.insert(writer.state_table).values(sync=_probe_name(), version=0, last_batch=-1))


def _test_create(conn: Connection, schema: str | None) -> None:
    """Create, fill and drop a probe table: the run will need to create the target and bookkeeping tables.

    The drop is committed with the rest: some databases commit DDL on their own (MariaDB, SQLite's
    driver), so a rollback alone could leave the probe behind.
    """
    probe = sa.Table(_probe_name(), sa.MetaData(schema=schema), sa.Column("id", sa.Integer))
    probe.create(conn)
    try:
        conn.execute(sa.insert(probe).values(id=1))
    finally:
        probe.drop(conn, checkfirst=True)
        conn.commit()


def check_sql_target(config: SyncConfig, result: EndpointCheck, context: CheckContext) -> None:
    assert isinstance(config.target, SqlTarget)
    target = config.target
    writer = SqlTargetWriter(config)
    try:
        with translate_errors(writer.endpoint, "checking the target"), writer.engine.connect() as conn:
            result.passed.append("connected")
            inspector = sa.inspect(conn)
            exists = inspector.has_table(target.table, schema=target.db_schema)
            if not exists and not target.create:
                raise CheckFailed(f"target table {target.table!r} does not exist and target.create is false")
            try:
                if exists:
                    table = sa.Table(target.table, sa.MetaData(schema=target.db_schema), autoload_with=conn)
                    result.passed.append(f"table {target.table!r} exists")
                    problems = _check_columns(config, table, context)
                    if problems:
                        raise CheckFailed("; ".join(problems))
                    result.passed.append("mapped columns exist with fitting types")
                    if set(target.key) not in _unique_sets(inspector, target.table, target.db_schema):
                        raise CheckFailed(
                            f"target key ({', '.join(target.key)}) is not the primary key or a unique index of "
                            f"table {target.table!r}; an upsert needs one (add a unique index on these columns)"
                        )
                    result.passed.append("key is unique")
                    _test_write_existing(writer, conn, table)
                else:
                    result.passed.append(f"table {target.table!r} will be created (key as primary key)")
                    _test_create(conn, target.db_schema)
                result.passed.append("test write rolled back")
            finally:
                conn.rollback()
    finally:
        writer.engine.dispose()


# --------------------------------------------------------------------------- Elasticsearch sources

_KEYWORD = {"keyword", "constant_keyword", "ip"}
_NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
_DATE = {"date", "date_nanos"}


def _es_fields(client: Any, endpoint: str, index: str) -> dict[str, str]:
    """Type of every mapped leaf field of ``index`` (dotted paths); fails when the pattern matches no index."""
    with translate_es_errors(endpoint, f"reading the mapping of {index}"):
        response = client.indices.get_mapping(index=index)
    if not response.body:
        raise CheckFailed(f"index pattern {index!r} matches no index")
    types: dict[str, str] = {}
    for name in sorted(response.body):
        flatten_mapping(response.body[name].get("mappings", {}).get("properties", {}), "", types)
    return types


def _es_connect(client: Any, endpoint: str, index: str, result: EndpointCheck) -> None:
    with translate_es_errors(endpoint, "connecting"):
        client.info()
    result.passed.append("connected")


def _es_read_one(client: Any, endpoint: str, index: str, result: EndpointCheck) -> None:
    with translate_es_errors(endpoint, f"reading one document of {index}"):
        client.search(index=index, size=1)
    result.passed.append("read one document")


def check_es_documents(config: SyncConfig, result: EndpointCheck, context: CheckContext) -> None:
    assert isinstance(config.source, ElasticsearchSource)
    reader = ElasticsearchDocumentReader(config)
    try:
        _es_connect(reader.client, reader.endpoint, config.source.index, result)
        _es_fields(reader.client, reader.endpoint, config.source.index)
        types = reader.arrow_schema()  # names any mapped field the index lacks
        result.passed.append(f"index {config.source.index} has the mapped fields")
        context.source_types = types
        mismatches = type_mismatches(config, types)
        if mismatches:
            raise CheckFailed("; ".join(str(m) for m in mismatches))
        result.passed.append("field types can be cast")
        _es_read_one(reader.client, reader.endpoint, config.source.index, result)
    finally:
        reader.client.close()


def check_es_hosts(config: SyncConfig, result: EndpointCheck, context: CheckContext) -> None:
    source = config.source
    assert isinstance(source, ElasticsearchHostsSource)
    endpoint = display_endpoint(source.endpoint)
    client = es_client(source, where=f"{config.name}: source")
    try:
        _es_connect(client, endpoint, source.index, result)
        types = _es_fields(client, endpoint, source.index)
        f = source.fields
        wanted = {
            f.host: _KEYWORD,  # terms aggregations and term filters need keyword fields
            f.group: _KEYWORD,
            f.timestamp: _DATE,
            f.cpu: _NUMERIC,
            f.memory: _NUMERIC,
            f.disk: _NUMERIC,
        }
        problems = []
        for name, allowed in wanted.items():
            kind = types.get(name)
            if kind is None:
                problems.append(f"field {name!r} is not mapped in {source.index}")
            elif kind not in allowed:
                problems.append(f"field {name!r} is {kind}, expected one of {', '.join(sorted(allowed))}")
        if problems:
            raise CheckFailed("; ".join(problems))
        result.passed.append(f"index {source.index} maps the host, group, time and metric fields")
        _es_read_one(client, endpoint, source.index, result)
    finally:
        client.close()


# --------------------------------------------------------------------------- CMDB target


def check_cmdb_target(config: SyncConfig, result: EndpointCheck, context: CheckContext) -> None:
    target = config.target
    assert isinstance(target, CmdbTarget)
    writer = CmdbWriter(config)
    try:
        with translate_errors(writer.endpoint, "checking the CMDB"), writer.engine.connect() as conn:
            result.passed.append("connected")
            inspector = sa.inspect(conn)
            tables = (writer.hosts, writer.resources)
            missing = [t.name for t in tables if not inspector.has_table(t.name, schema=target.db_schema)]
            if missing and not target.create:
                raise CheckFailed(f"table(s) {', '.join(missing)} do not exist and target.create is false")
            try:
                for table in tables:
                    if table.name in missing:
                        continue
                    present = {c["name"] for c in inspector.get_columns(table.name, schema=target.db_schema)}
                    lacking = [c.name for c in table.columns if c.name not in present]
                    if lacking:
                        raise CheckFailed(f"table {table.name!r} has no column(s) {', '.join(lacking)}")
                    first = next(iter(table.columns))
                    conn.execute(sa.update(table).where(sa.false()).values({first.name: first}))
                if missing:
                    result.passed.append(f"table(s) {', '.join(missing)} will be created")
                    _test_create(conn, target.db_schema)
                else:
                    result.passed.append("hosts_pool and server_resources exist with their columns")
                result.passed.append("test write rolled back")
            finally:
                conn.rollback()
    finally:
        writer.engine.dispose()


EndpointCheckFunction = Callable[[SyncConfig, EndpointCheck, CheckContext], None]
"""Checks one endpoint, appending to ``passed`` what it verified; raises on the first failure."""


def _passwords(config: SyncConfig) -> list[str]:
    found = []
    for url in (getattr(config.source, "url", None), getattr(config.target, "url", None)):
        if not url:
            continue
        try:
            parsed = parse_url_template(url)
        except ValueError:
            continue
        if parsed.password and not parsed.references:
            found.append(parsed.password)
    return found


def _scrub(config: SyncConfig, text: str) -> str:
    text = redact(" ".join(text.split()))
    for password in _passwords(config):
        text = text.replace(password, "***")
    return text


def check_endpoint(
    config: SyncConfig, role: EndpointRole, check: EndpointCheckFunction, context: CheckContext
) -> EndpointCheck:
    """Run ``check`` on one endpoint of ``config``; never raises for the endpoint's failure.

    The kind of the sync names the check (:func:`sync_pipelines.kinds.check_sync` runs both endpoints).
    """
    endpoint_config = config.source if role is EndpointRole.SOURCE else config.target
    url = getattr(endpoint_config, "url", "")
    es_endpoint = getattr(endpoint_config, "endpoint", "")
    shown = display_url(url) if url else display_endpoint(es_endpoint) if es_endpoint else endpoint_config.kind
    result = EndpointCheck(config.name, role, shown)
    started = time.perf_counter()
    try:
        check(config, result, context)
    except (SyncError, sa_exc.SQLAlchemyError, OSError) as exc:
        result.ok = False
        result.error = _scrub(config, str(exc).removeprefix(f"{result.endpoint}: "))
    except Exception as exc:  # a check must report every endpoint, whatever fails in one
        result.ok = False
        result.error = _scrub(config, f"unexpected {type(exc).__name__}: {exc}")
    result.latency_ms = (time.perf_counter() - started) * 1000
    return result


__all__ = [
    "CheckContext",
    "EndpointCheck",
    "EndpointCheckFunction",
    "EndpointRole",
    "EndpointStatus",
    "check_cmdb_target",
    "check_endpoint",
    "check_es_documents",
    "check_es_hosts",
    "check_sql_source",
    "check_sql_target",
]
