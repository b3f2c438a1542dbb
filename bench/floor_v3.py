"""The write floor of bookkeeping format v3: what a full sync into an empty target must write, and nothing else.

Per batch of ``batch_size`` records, in one transaction as the engine commits a batch:

- the target rows, by binary ``COPY`` (the caller's ``write_target``, as the bench's ``copy`` figure does);
- one baseline per record in ``_sync_base_<sync>``: the key, the 64-bit source hash, a NULL target hash
  (equal to the source hash) and 2 bytes per non-key field, by binary ``COPY``, sorted by key
  (``version`` takes its default, 3);
- one ``_sync_record_sets`` row for the batch's created records: their keys as zstd Parquet.

Reading the source into Arrow and hashing its rows are timed apart (``read_source`` and ``hash_<rows>``), in the
same run: the floor figure counts the writes only, and is split into its parts (``floor_target_rows``,
``floor_baselines`` with their encoding, ``floor_record_sets`` with theirs, ``floor_commit``). Nothing
is compared or read back.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from sync_pipelines.connectors.rowhash import FieldHashes, column_of

SYNC = "ceiling"
KEY = ["id"]
TYPES = {
    "id": "integer",
    "customer_id": "integer",
    "sku": "string",
    "qty": "integer",
    "unit_price": "decimal(12,2)",
    "status": "string",
    "note": "string",
    "created_at": "datetime",
    "updated_at": "datetime",
}
ARROW_TYPES = {
    "id": pa.int64(),
    "customer_id": pa.int64(),
    "sku": pa.string(),
    "qty": pa.int64(),
    "unit_price": pa.decimal128(12, 2),
    "status": pa.string(),
    "note": pa.string(),
    "created_at": pa.timestamp("us"),
    "updated_at": pa.timestamp("us"),
}
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = b"\xff\xff"

WriteTarget = Callable[[psycopg.Cursor[Any], int, int], None]
"""Writes the source rows whose key lies in ``[low, high]`` into the target by binary COPY."""


def create_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    """(Re)create the v3 baselines of the bench's sync and ``_sync_record_sets``, with their indexes."""
    conn.execute(f"DROP TABLE IF EXISTS {schema}._sync_base_{SYNC}, {schema}._sync_record_sets")
    conn.execute(
        f"CREATE TABLE {schema}._sync_base_{SYNC} (id bigint PRIMARY KEY, source_hash bigint NOT NULL, "
        "target_hash bigint NULL, fields bytea NOT NULL, version smallint NOT NULL DEFAULT 3)"
    )
    conn.execute(
        f"CREATE TABLE {schema}._sync_record_sets (id bigserial PRIMARY KEY, run_id varchar(64) NOT NULL, "
        "sync varchar(128) NOT NULL, batch integer NOT NULL, entity varchar(128) NOT NULL, "
        "action varchar(16) NOT NULL, count integer NOT NULL, keys bytea NOT NULL, recorded_at timestamp NOT NULL)"
    )
    conn.execute(
        f"CREATE INDEX ix__sync_record_sets_run_action_entity_batch ON {schema}._sync_record_sets "
        "(run_id, action, entity, batch)"
    )


def baseline_copy(keys: np.ndarray, hashes: np.ndarray, fields: np.ndarray) -> bytes:
    """Binary COPY data for ``(id, source_hash, fields)``, rows sorted by key, built column-wise."""
    order = np.argsort(keys, kind="stable")
    width = fields.shape[1]
    row = np.dtype(
        [
            ("count", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("hash_len", ">i4"),
            ("hash", ">i8"),
            ("fields_len", ">i4"),
            ("fields", f"V{width}"),
        ]
    )
    out = np.empty(len(keys), dtype=row)
    out["count"], out["id_len"], out["hash_len"], out["fields_len"] = 3, 8, 8, width
    out["id"] = keys[order]
    out["hash"] = hashes[order].view(np.int64)
    out["fields"] = np.ascontiguousarray(fields[order]).view(np.dtype((np.void, width))).ravel()
    return _HEADER + out.tobytes() + _TRAILER


def keys_blob(batch: pa.Table) -> bytes:
    """The batch's key column as zstd-compressed Parquet."""
    buffer = io.BytesIO()
    pq.write_table(batch.select(KEY), buffer, compression="zstd")
    return buffer.getvalue()


def row_hashes(batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The engine's format-3 row hash of every row (``connectors/rowhash.py``) and its 2-byte field digests
    (a ``rows x 2*fields`` uint8 array)."""
    fields = [c for c in TYPES if c not in KEY]
    hashed = FieldHashes({f: column_of(batch.column(f), TYPES[f]) for f in fields}, TYPES, batch.num_rows)
    return hashed.rows.view(np.uint64), hashed.digests().view(np.uint8)


def _hash_figure(batches: list[pa.Table]) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """Seconds to hash every batch's rows with the engine's row hash, and the hashes."""
    started = time.perf_counter()
    hashed = [row_hashes(batch) for batch in batches]
    return time.perf_counter() - started, hashed


def copy_bookkeeping(
    spec: dict[str, Any], read_source: Callable[[], pa.Table], write_target: WriteTarget
) -> dict[str, Any]:
    """Time the v3 floor over the whole source; ``figures`` holds ``read_source`` and ``hash`` from the same run."""
    schema, batch_size = spec["target_schema"], spec.get("batch_size", 50_000)
    started = time.perf_counter()
    table = read_source()
    read_s = time.perf_counter() - started
    ids = table.column("id").to_numpy()
    if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        table = table.sort_by("id")
    batches = [table.slice(start, batch_size) for start in range(0, table.num_rows, batch_size)]
    hash_s, hashed = _hash_figure(batches)
    with psycopg.connect(spec["target_dsn"], autocommit=True) as conn:
        create_tables(conn, schema)
    run_id = uuid.uuid4().hex
    parts = dict.fromkeys(("floor_target_rows", "floor_baselines", "floor_record_sets", "floor_commit"), 0.0)
    started = time.perf_counter()
    with psycopg.connect(spec["target_dsn"]) as conn, conn.cursor() as cur:
        for number, (batch, (hashes, fields)) in enumerate(zip(batches, hashed, strict=True)):
            keys = batch.column("id").to_numpy()
            with conn.transaction():
                mark = time.perf_counter()
                write_target(cur, int(keys[0]), int(keys[-1]))
                mark = _add(parts, "floor_target_rows", mark)
                with cur.copy(
                    f"COPY {schema}._sync_base_{SYNC} (id, source_hash, fields) FROM STDIN (FORMAT BINARY)"
                ) as sink:
                    sink.write(baseline_copy(keys, hashes, fields))
                mark = _add(parts, "floor_baselines", mark)
                cur.execute(
                    f"INSERT INTO {schema}._sync_record_sets (run_id, sync, batch, entity, action, count, keys, "
                    "recorded_at) VALUES (%s, %s, %s, 'orders', 'created', %s, %s, now())",
                    (run_id, SYNC, number, batch.num_rows, keys_blob(batch)),
                )
                mark = _add(parts, "floor_record_sets", mark)
            _add(parts, "floor_commit", mark)
    floor_s = time.perf_counter() - started
    with psycopg.connect(spec["target_dsn"]) as conn:
        written = conn.execute(
            f"SELECT (SELECT count(*) FROM {schema}.orders), (SELECT count(*) FROM {schema}._sync_base_{SYNC}), "
            f"(SELECT coalesce(sum(count), 0) FROM {schema}._sync_record_sets)"
        ).fetchone()
    if written != (table.num_rows,) * 3:
        raise RuntimeError(f"v3 floor wrote {written} rows (target, baselines, created) for {table.num_rows} records")
    hash_label = f"hash_{rows_label(table.num_rows)}"
    figures = {"read_source": read_s, hash_label: hash_s, **parts}
    return {"wall_s": floor_s, "figures": figures}


def _add(parts: dict[str, float], name: str, since: float) -> float:
    """Add the seconds since ``since`` to ``parts[name]``; returns now."""
    now = time.perf_counter()
    parts[name] += now - since
    return now


def rows_label(rows: int) -> str:
    """``1m`` for a million rows, ``100k`` for a hundred thousand (else the count itself)."""
    for unit, suffix in ((1_000_000, "m"), (1_000, "k")):
        if rows % unit == 0:
            return f"{rows // unit}{suffix}"
    return str(rows)
