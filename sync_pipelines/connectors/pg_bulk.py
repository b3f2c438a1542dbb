"""Set-based planning and writing of a batch on PostgreSQL: the staged rows, their hashes and their fate in SQL.

The per-record path (:mod:`sync_pipelines.engine.conflicts`) normalises every value in Python,
JSON-encodes and hashes it, and reads every written row back to learn the target's side of its
baseline. On a PostgreSQL target whose columns store exactly the declared types, the same texts and
hashes can be computed by the server, byte for byte:

- the batch is copied (CSV, straight from Arrow) into a temporary table typed like the target, so
  each staged value is what the target will store;
- one statement computes, per row, the key hash, the normalised values as JSON (the text that
  :func:`~sync_pipelines.connectors.fingerprint.values_hash` hashes), their 64-bit hash (the first
  8 bytes of their SHA-256, as :func:`~sync_pipelines.connectors.fingerprint.text_hash`), and whether the
  target row and its baseline exist and still match both sides;
- records absent from the target are inserted, baselined and given their outcome by
  ``INSERT ... SELECT`` statements; records whose target row and source values both match their
  baseline are unchanged and need nothing; a target row equal to the staged one but without a
  baseline (written before baselines existed) is unchanged and gets its baseline; a record whose
  source changed while its target row still hashes to the baseline's target side is an ordinary
  update, written the same way (its field-level changes are still computed from the two rows).
  Only the others (edited on the target, conflicts, rows that differ without a baseline) go
  through the per-record path.

A target column whose type could round or reformat a value (``real``, ``timestamptz``, ``char(n)``,
a decimal of another scale...), a target table with triggers, or a declared type outside the ones
below keeps the whole sync on the per-record path. Texts the two sides would render differently
can only make a record look changed (it then takes the per-record path), never make a changed
record look unchanged: both renderings are faithful to the value.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from sync_pipelines.config.models import decimal_parts
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.dialects import backend
from sync_pipelines.connectors.pg_copy import _driver_errors, _identifier

ORD = "__ord"
"""The staged column holding each row's position in its batch."""

# Always qualified with pg_temp, so that no statement here can reach a permanent table of the same name.
_STAGE = sql.Identifier("pg_temp", "_sync_bulk_stage")
_BATCH = sql.Identifier("pg_temp", "_sync_bulk_batch")
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)


def _json_of(type_name: str, value: sql.Composable) -> sql.Composable | None:
    """SQL rendering ``value`` (of a target column) as the JSON of its normalised form, or None if unsupported."""
    if type_name == "integer":
        rendered = sql.SQL("({})::text").format(value)
    elif type_name == "string":
        rendered = sql.SQL("to_json(({})::text)::text").format(value)
    elif type_name == "boolean":
        rendered = sql.SQL("CASE WHEN {0} THEN 'true' WHEN NOT {0} THEN 'false' END").format(value)
    elif type_name == "datetime":
        rendered = sql.SQL("'\"' || to_char({}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '\"'").format(value)
    elif type_name == "date":
        rendered = sql.SQL("'\"' || to_char({}, 'YYYY-MM-DD') || '\"'").format(value)
    elif decimal_parts(type_name) is not None:
        rendered = sql.SQL("'\"' || ({})::text || '\"'").format(value)
    else:
        return None
    return sql.SQL("coalesce({}, 'null')").format(rendered)


def _exact(type_name: str, column_type: sa.types.TypeEngine[Any]) -> bool:
    """Whether a target column of ``column_type`` stores every value of declared type ``type_name`` unchanged."""
    if type_name == "integer":
        return isinstance(column_type, sa.Integer)
    if type_name == "string":
        # Plain text and varchar only, with the default (deterministic) collation: citext, enums, char(n) or a
        # case-insensitive collation compare or store values differently from the text that was sent.
        return type(column_type) in (sa.TEXT, sa.VARCHAR, sa.Text, sa.String) and not getattr(
            column_type, "collation", None
        )
    if type_name == "boolean":
        return isinstance(column_type, sa.Boolean)
    if type_name == "datetime":
        return (
            isinstance(column_type, sa.DateTime)
            and not column_type.timezone
            and getattr(column_type, "precision", None) in (None, 6)
        )
    if type_name == "date":
        return isinstance(column_type, sa.Date) and not isinstance(column_type, sa.DateTime)
    parts = decimal_parts(type_name)
    if parts is not None:
        # Up to 6 decimals Python's str(Decimal) never switches to exponent notation, so both sides agree.
        return (
            isinstance(column_type, sa.Numeric)
            and not isinstance(column_type, sa.Float)
            and column_type.scale == parts[1]
            and parts[1] <= 6
        )
    return False


def _json_object(names: Sequence[str], parts: Sequence[sql.Composable]) -> sql.Composable:
    """``{"name":value,...}`` in the given order (names are JSON-encoded here, values rendered by SQL)."""
    import json

    pieces: list[sql.Composable] = []
    for i, (name, part) in enumerate(zip(names, parts, strict=True)):
        prefix = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
        pieces += [sql.Literal(prefix), part]
    if not pieces:
        return sql.Literal("{}")
    return sql.SQL("({} || '}}')").format(sql.SQL(" || ").join(pieces))


def _hash64(text: sql.Composable) -> sql.Composable:
    """:func:`~sync_pipelines.connectors.fingerprint.text_hash` in SQL: the first 8 bytes of the SHA-256, as bigint."""
    return sql.SQL(
        "('x' || encode(substring(sha256(convert_to({}, 'UTF8')) FROM 1 FOR 8), 'hex'))::bit(64)::bigint"
    ).format(text)


@dataclass
class BulkSpec:
    """How one sync's batches are staged and judged on a PostgreSQL target (see the module docstring)."""

    table: sa.Table
    sync: str
    columns: list[str]
    key: list[str]
    fields: list[str]
    types: dict[str, str]

    def _col(self, alias: str, name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))

    def _row(self, alias: str) -> sql.Composable:
        """``ROW(alias.field, ...)`` of the non-key columns (``ROW(1)`` when there are none)."""
        if not self.fields:
            return sql.SQL("ROW(1)")
        return sql.SQL("ROW({})").format(sql.SQL(", ").join(self._col(alias, f) for f in self.fields))

    def values_json(self, alias: str) -> sql.Composable:
        """The JSON text :func:`~sync_pipelines.connectors.fingerprint.values_hash` hashes, of row ``alias``."""
        names = sorted(self.fields)
        parts = [_json_of(self.types[f], self._col(alias, f)) for f in names]
        return _json_object(names, [p for p in parts if p is not None])

    def key_json(self, alias: str) -> sql.Composable:
        """The JSON text :func:`~sync_pipelines.connectors.fingerprint.key_hash` hashes."""
        parts = [_json_of(self.types[k], self._col(alias, k)) for k in self.key]
        return sql.SQL("('[' || {} || ']')").format(sql.SQL(" || ',' || ").join(p for p in parts if p is not None))

    def record_key_json(self, alias: str) -> sql.Composable:
        """The record key of an outcome as JSON, in key order."""
        parts = [_json_of(self.types[k], self._col(alias, k)) for k in self.key]
        return _json_object(list(self.key), [p for p in parts if p is not None])

    def stage(self, conn: Connection, rows: pa.Table, *, with_baselines: bool) -> BulkBatch:
        """Copy ``rows`` (the batch's valid rows plus :data:`ORD`) to the server and classify them."""
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        target = _identifier(self.table)
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        # Lookups by key, one index probe per staged row (LATERAL ... OFFSET 0 keeps the planner from hashing the
        # whole target or baseline table, whose statistics may be stale): the cost follows the batch, not the table.
        key_match = sql.SQL(" AND ").join(sql.SQL("tt.{0} = s.{0}").format(sql.Identifier(k)) for k in self.key)
        baseline_join: sql.Composable
        same: sql.Composable
        no_baseline: sql.Composable
        update: sql.Composable
        if with_baselines:
            baselines = _identifier(sa.Table(bookkeeping.BASELINES_TABLE, sa.MetaData(), schema=self.table.schema))
            baseline_join = sql.SQL(
                "LEFT JOIN LATERAL (SELECT bb.key_hash, bb.source_hash, bb.target_hash FROM {} bb "
                "WHERE bb.sync = {} AND bb.key_hash = s.__key_hash OFFSET 0) b ON true"
            ).format(baselines, sql.Literal(self.sync))
            # Target row equal to the staged row (value by value, in the target's own types) and both sides
            # equal to the baseline: the record is unchanged, without rendering the target row.
            same = sql.SQL(
                "(b.key_hash IS NOT NULL AND b.source_hash = s.__source_hash AND b.target_hash = b.source_hash "
                "AND {} IS NOT DISTINCT FROM {})"
            ).format(self._row("t"), self._row("s"))
            no_baseline = sql.SQL("b.key_hash IS NULL")
            # Source changed since the baseline, target not (its row, rendered like the per-record path renders
            # it, still hashes to the baseline's target side): an ordinary update, written set-based. Only rows
            # whose source changed get their target row rendered.
            update = sql.SQL(
                "(b.key_hash IS NOT NULL AND b.source_hash <> s.__source_hash AND NOT {same} "
                "AND b.target_hash = {target_hash})"
            ).format(same=same, target_hash=_hash64(self.values_json("t")))
        else:
            baseline_join, same, no_baseline, update = sql.SQL(""), sql.SQL("false"), sql.SQL("true"), sql.SQL("false")
        # A target row without a baseline that equals the staged row: unchanged, and its baseline is written.
        adopt = sql.SQL("({} AND {} IS NOT DISTINCT FROM {})").format(no_baseline, self._row("t"), self._row("s"))
        buffer = io.BytesIO()
        pa_csv.write_csv(rows.select([*self.columns, ORD]), buffer, _CSV_OPTIONS)
        with _driver_errors(f"staging a batch for {self.table.fullname}"), raw.cursor() as cur:
            # JIT compiling these statements (their cost estimate passes jit_above_cost) takes longer than running them.
            cur.execute("SET LOCAL jit = off")
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(_STAGE, _BATCH))
            cur.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {}, 0::int AS {} FROM {} WITH NO DATA"
                ).format(_STAGE, cols, sql.Identifier(ORD), target)
            )
            copy_sql = sql.SQL("COPY {} ({}, {}) FROM STDIN (FORMAT csv)").format(_STAGE, cols, sql.Identifier(ORD))
            with cur.copy(copy_sql) as copy:
                copy.write(buffer.getbuffer())
            cur.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE {batch} ON COMMIT DROP AS "
                    "SELECT s.*, t.{key0} IS NOT NULL AS __present, (t.{key0} IS NOT NULL AND {same}) AS __same, "
                    "(t.{key0} IS NOT NULL AND {adopt}) AS __adopt, "
                    "(t.{key0} IS NOT NULL AND {update}) AS __update, NOT ({no_baseline}) AS __based "
                    "FROM (SELECT v.*, {shash} AS __source_hash FROM ("
                    "SELECT x.*, {values} AS __values, {khash} AS __key_hash, "
                    "{okey} AS __outcome_key FROM {stage} x OFFSET 0) v OFFSET 0) s "
                    "LEFT JOIN LATERAL (SELECT tt.* FROM {target} tt WHERE {match} OFFSET 0) t ON true {baseline_join}"
                ).format(
                    batch=_BATCH,
                    key0=sql.Identifier(self.key[0]),
                    same=same,
                    adopt=adopt,
                    update=update,
                    no_baseline=no_baseline,
                    values=self.values_json("x"),
                    khash=_hash64(self.key_json("x")),
                    okey=self.record_key_json("x"),
                    stage=_STAGE,
                    shash=_hash64(sql.SQL("v.__values")),
                    target=target,
                    match=key_match,
                    baseline_join=baseline_join,
                )
            )
            cur.execute(
                sql.SQL("SELECT {}, __present, __update FROM {} WHERE NOT (__same OR __adopt)").format(
                    sql.Identifier(ORD), _BATCH
                )
            )
            found = cur.fetchall()
            cur.execute(
                sql.SQL("SELECT count(*) FILTER (WHERE __same), count(*) FILTER (WHERE __adopt) FROM {}").format(_BATCH)
            )
            row = cur.fetchone()
        same_count, adopted = (int(row[0]), int(row[1])) if row else (0, 0)
        created = np.fromiter((o for o, present, _ in found if not present), dtype=np.int64)
        updated = np.fromiter((o for o, present, update in found if present and update), dtype=np.int64)
        judge = np.fromiter((o for o, present, update in found if present and not update), dtype=np.int64)
        return BulkBatch(self, np.sort(created), np.sort(judge), same_count + adopted, adopted, np.sort(updated))


@dataclass
class BulkBatch:
    """One staged batch: positions of the records to create, of those to judge one by one, and the unchanged count."""

    spec: BulkSpec
    created: np.ndarray[Any, np.dtype[np.int64]]
    judge: np.ndarray[Any, np.dtype[np.int64]]
    unchanged: int
    adopted: int
    """Unchanged records that had no baseline yet: theirs is written like that of a new record."""
    updated: np.ndarray[Any, np.dtype[np.int64]]
    """Positions of records to update (source changed, target as at the baseline); their outcomes, with
    field-level changes, are the caller's to record."""

    def apply(
        self,
        conn: Connection,
        *,
        run_id: str,
        batch: int,
        entity: str,
        now: Any,
        keep_unchanged: bool,
    ) -> None:
        """Insert the new records, their baselines and outcomes (and unchanged outcomes if kept), set-based."""
        spec = self.spec
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        target = _identifier(spec.table)
        schema = spec.table.schema
        baselines = _identifier(sa.Table(bookkeeping.BASELINES_TABLE, sa.MetaData(), schema=schema))
        conflicts = _identifier(sa.Table(bookkeeping.CONFLICTS_TABLE, sa.MetaData(), schema=schema))
        records = _identifier(sa.Table(bookkeeping.RECORDS_TABLE, sa.MetaData(), schema=schema))
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        non_key = [c for c in spec.columns if c not in spec.key]
        action: sql.Composable = (
            sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key)
            )
            if non_key
            else sql.SQL("DO NOTHING")
        )
        keys = sql.SQL(", ").join(map(sql.Identifier, spec.key))
        with _driver_errors(f"writing a batch to {spec.table.fullname}"), raw.cursor() as cur:
            if len(self.created) or len(self.updated):
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} ({}) SELECT {} FROM {} WHERE NOT __present OR __update ON CONFLICT ({}) {}"
                    ).format(target, cols, cols, _BATCH, keys, action)
                )
            if len(self.created) or self.adopted or len(self.updated):
                # Records without a baseline get one by a plain insert (no arbiter check per row: the lease keeps
                # other writers of this sync's baselines away); those with one have it replaced.
                insert = sql.SQL(
                    "INSERT INTO {} (sync, key_hash, source_hash, target_hash, target_values, "
                    "run_id, updated_at) SELECT %s, __key_hash, __source_hash, __source_hash, "
                    "__values, %s, %s FROM {} WHERE (NOT __present OR __adopt OR __update) AND "
                ).format(baselines, _BATCH)
                # In key-hash order, so that the primary key's index is filled page by page, not at random.
                cur.execute(insert + sql.SQL("NOT __based ORDER BY __key_hash"), (spec.sync, run_id, now))
                cur.execute(
                    insert
                    + sql.SQL(
                        "__based ON CONFLICT (sync, key_hash) DO UPDATE SET "
                        "source_hash = EXCLUDED.source_hash, "
                        "target_hash = EXCLUDED.target_hash, target_values = EXCLUDED.target_values, "
                        "run_id = EXCLUDED.run_id, updated_at = EXCLUDED.updated_at"
                    ),
                    (spec.sync, run_id, now),
                )
                # An open conflict of a record whose sides now agree (its target row deleted, or equal again).
                cur.execute(
                    sql.SQL(
                        "UPDATE {} SET status = 'resolved', resolved_by = %s, resolved_at = %s, updated_at = %s "
                        "WHERE sync = %s AND status = 'open' AND key_hash IN "
                        "(SELECT __key_hash FROM {} WHERE NOT __present OR __adopt OR __update)"
                    ).format(conflicts, _BATCH),
                    (f"run {run_id} (source and target agree)", now, now, spec.sync),
                )
            if len(self.created) or (keep_unchanged and self.unchanged):
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (run_id, sync, batch, record_key, entity, action, recorded_at) "
                        "SELECT %s, %s, %s, __outcome_key, %s, "
                        "CASE WHEN __present THEN 'unchanged' ELSE 'created' END, %s FROM {} "
                        "WHERE NOT __present OR (%s AND (__same OR __adopt)) ORDER BY {}"
                    ).format(records, _BATCH, sql.Identifier(ORD)),
                    (run_id, spec.sync, batch, entity, now, keep_unchanged),
                )


def bulk_spec(
    conn: Connection,
    table: sa.Table | None,
    sync: str,
    types: dict[str, str],
    columns: Sequence[str],
    key: Sequence[str],
) -> BulkSpec | None:
    """The set-based plan of a sync's batches, or None when its target needs the per-record path."""
    if table is None or not key or not backend(conn).can_copy(conn):
        return None
    if any(c not in table.c for c in columns) or any(k not in columns for k in key):
        return None
    for name in columns:
        declared = types.get(name, "string")
        if _json_of(declared, sql.SQL("")) is None or not _exact(declared, table.c[name].type):
            return None
        if name in key and declared not in ("integer", "string"):
            return None
    if conn.dialect.server_version_info is not None and conn.dialect.server_version_info < (11,):
        return None  # no sha256() before PostgreSQL 11
    triggers = conn.execute(
        sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal"),
        {"t": _regclass(table)},
    ).scalar_one()
    encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
    if triggers or str(encoding).upper() != "UTF8":
        return None
    fields = [c for c in columns if c not in key]
    return BulkSpec(table, sync, list(columns), list(key), fields, dict(types))


def _regclass(table: sa.Table) -> str:
    quote = postgresql.dialect().identifier_preparer.quote
    return f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)


def with_positions(table: pa.Table, mask: pa.ChunkedArray | pa.Array) -> pa.Table:
    """The rows of ``table`` selected by ``mask``, with their positions in ``table`` as :data:`ORD`."""
    positions = pa.array(np.arange(table.num_rows, dtype=np.int32))
    return table.append_column(ORD, positions).filter(mask)


__all__ = ["ORD", "BulkBatch", "BulkSpec", "bulk_spec", "with_positions"]
