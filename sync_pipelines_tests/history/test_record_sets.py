"""Record sets (``_sync_record_sets``): their key blobs, and every reader listing their records one by one.

A run is seeded with what the load path writes: sets of created records (two batches of orders, and
a set of departments) beside one-by-one rows (updated with changes, failed, deleted after the last
batch), on SQLite, PostgreSQL and MariaDB. The history view, ``show``, both exports and the ledger's
closing counts must list or count every record exactly once, in the documented order.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors import bookkeeping
from sync_pipelines.connectors.record_sets import (
    RECORD_SETS_TABLE,
    decode_keys,
    encode_keys,
    iter_set_records,
    record_keys,
    record_set_row,
    record_sets_table,
)
from sync_pipelines.connectors.sql import norm_key
from sync_pipelines.connectors.sql_target import SqlTargetWriter
from sync_pipelines.connectors.values import display
from sync_pipelines.history import RunEntry, Trigger, open_ledger
from sync_pipelines.history.export import RECORDS_SHEET, export_csv, export_xlsx
from sync_pipelines.history.records import RecordFilter, RecordStatus, RunRecords
from sync_pipelines.types import RecordAction, RecordOutcome, RunStatus
from sync_pipelines.web import create_app
from sync_pipelines_tests.factories import invoke, orders_config, write_config
from sync_pipelines_tests.support.databases import Databases
from sync_pipelines_tests.support.live import free_port

RUN = "run-with-sets-0001"
T0 = dt.datetime(2026, 12, 1, 2, 0, 0)
CREATED, UPDATED, FAILED, DELETED = (
    RecordAction.CREATED,
    RecordAction.UPDATED,
    RecordAction.FAILED,
    RecordAction.DELETED,
)

Listed = tuple[str, str, str, int]
"""(key as shown, entity, action, batch) of one listed record."""


def _order_keys(ids: list[int]) -> pa.Table:
    return pa.table({"order_id": pa.array(ids, pa.int64())})


def _listed(ids: list[int], action: RecordAction, batch: int, entity: str = "orders") -> list[Listed]:
    return [(f"order_id={i}", entity, action.value, batch) for i in ids]


EXPECTED: list[Listed] = [
    *_listed(list(range(1, 8)), CREATED, 0),
    *_listed([101], UPDATED, 0),
    *_listed([102], FAILED, 0),
    *_listed(list(range(8, 15)), CREATED, 1),
    *_listed([201, 202], CREATED, 1, "departments"),
    *_listed([103], UPDATED, 1),
    *_listed([104, 105], DELETED, -1),
]
"""Every record of :data:`RUN` in the listing order: batch by batch (-1 last), a batch's sets, then its rows by id."""


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    conn.execute(sa.insert(table), rows)


def _seed(dbs: Databases, root: Path) -> tuple[SyncConfig, Path]:
    """The bookkeeping tables (as a run prepares them) and :data:`RUN`'s records; the run is left ``running``."""
    cfg = orders_config(dbs, history={"entity": "orders"})
    folder = root / "syncs"
    write_config(folder, cfg)
    writer = SqlTargetWriter(cfg)
    try:
        writer.prepare({"order_id": pa.int64(), "status": pa.string()})
    finally:
        writer.engine.dispose()
    sets, records = record_sets_table(sa.MetaData()), bookkeeping.records_table(sa.MetaData())
    name = cfg.name

    def rows(batch: int, *outcomes: RecordOutcome) -> list[dict[str, Any]]:
        return bookkeeping.outcome_rows(name, "orders", RUN, batch, outcomes)

    engine = dbs.target()
    try:
        with engine.begin() as conn:  # batch 0: a set of created orders, one update, one failure
            _insert(conn, sets, [record_set_row(name, "orders", RUN, 0, CREATED, _order_keys(list(range(1, 8))), T0)])
            _insert(
                conn,
                records,
                rows(
                    0,
                    RecordOutcome({"order_id": 101}, UPDATED, {"status": ["open", "paid"]}),
                    RecordOutcome({"order_id": 102}, FAILED, error="qty: cannot convert 'x' to integer"),
                ),
            )
        with engine.begin() as conn:  # batch 1: created orders and departments, one update
            created = [
                record_set_row(name, "orders", RUN, 1, CREATED, _order_keys(list(range(8, 15))), T0),
                record_set_row(name, "departments", RUN, 1, CREATED, _order_keys([201, 202]), T0),
            ]
            _insert(conn, sets, created)
            _insert(conn, records, rows(1, RecordOutcome({"order_id": 103}, UPDATED, {"qty": [1, 2]})))
        with engine.begin() as conn:  # after the last batch: the deletes of a full sync
            _insert(conn, records, rows(-1, *(RecordOutcome({"order_id": i}, DELETED) for i in (104, 105))))
    finally:
        engine.dispose()
    with open_ledger(cfg) as ledger:
        ledger.open_run(RunEntry(RUN, name, Trigger.MANUAL, "full", started_at=T0, records_run_id=RUN))
    return cfg, folder


@pytest.fixture
def seeded(dbs: Databases, tmp_path: Path) -> tuple[SyncConfig, Path]:
    return _seed(dbs, tmp_path)


def _shown(row: dict[str, Any]) -> Listed:
    return json_key(row["record_key"]), row["entity"], row["action"], int(row["batch"])


def json_key(record_key: str) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in json.loads(record_key).items())


# --------------------------------------------------------------------------- the key blobs


def _typed_keys() -> pa.Table:
    return pa.table(
        {
            "region": pa.array(["eu", "北京", "zürich 🚀", 'quote " and \\ back'], pa.string()),
            "id": pa.array([1, -2, 2**62, 0], pa.int64()),
            "day": pa.array([dt.date(2024, 2, 29), dt.date(1970, 1, 1), dt.date(2999, 12, 31), dt.date(2024, 1, 1)]),
            "at": pa.array(
                [
                    dt.datetime(2024, 3, 1, 8, 0, 0),
                    dt.datetime(2024, 3, 1, 8, 0, 0, 123456),
                    dt.datetime(1999, 12, 31, 23, 59, 59),
                    dt.datetime(2024, 3, 1),
                ],
                pa.timestamp("us"),
            ),
            "amount": pa.array([Decimal("1.50"), Decimal("-0.01"), Decimal("1234567890.00"), Decimal("0.00")]),
        }
    ).cast(
        pa.schema(
            [
                ("region", pa.string()),
                ("id", pa.int64()),
                ("day", pa.date32()),
                ("at", pa.timestamp("us")),
                ("amount", pa.decimal128(12, 2)),
            ]
        )
    )


def test_keys_round_trip_through_the_blob_with_their_order_and_types() -> None:
    keys = _typed_keys()
    blob = encode_keys(keys)
    back = decode_keys(blob)

    assert blob[:4] == b"PAR1"
    assert back.column_names == ["region", "id", "day", "at", "amount"]
    assert back.schema.equals(keys.schema)
    assert back.to_pylist() == keys.to_pylist()
    zoned = pa.table({"at": pa.array([dt.datetime(2024, 1, 1, 12)], pa.timestamp("us", tz="Asia/Shanghai"))})
    assert decode_keys(encode_keys(zoned)).equals(zoned)


def test_a_set_holds_only_outcomes_without_field_changes() -> None:
    keys = _order_keys([1, 2, 3])
    row = record_set_row("s", "orders", "r", 4, RecordAction.UNCHANGED, keys, T0)

    assert (row["count"], row["action"], row["batch"]) == (3, "unchanged", 4)
    assert [r["record_key"] for r in iter_set_records(row, 1, 3)] == ['{"order_id":2}', '{"order_id":3}']
    for action in (UPDATED, FAILED, DELETED, RecordAction.CONFLICT):
        with pytest.raises(ValueError, match="one by one"):
            record_set_row("s", "orders", "r", 0, action, keys, T0)
    with pytest.raises(ValueError, match="at least one record"):
        record_set_row("s", "orders", "r", 0, CREATED, keys.slice(0, 0), T0)


def _per_record_keys(keys: pa.Table) -> list[str]:
    """The ``record_key`` texts the per-record path writes: engine.load's key dicts through ``outcome_rows``."""
    names = keys.column_names
    outcomes = [
        RecordOutcome({k: display(v) for k, v in zip(names, norm_key([row[k] for k in names]), strict=True)}, CREATED)
        for row in keys.to_pylist()
    ]
    return [r["record_key"] for r in bookkeeping.outcome_rows("s", "e", "r", 0, outcomes)]


@pytest.mark.parametrize("column", ["region", "id", "day", "at", "amount", None])
def test_a_set_record_key_is_the_text_the_per_record_path_writes(column: str | None) -> None:
    keys = _typed_keys() if column is None else _typed_keys().select([column])  # None: the composite key
    # 20:00 in Shanghai: rendered in naive UTC, as the per-record path compares and writes keys.
    shanghai = dt.timezone(dt.timedelta(hours=8))
    at = dt.datetime(2024, 1, 1, 20, tzinfo=shanghai)
    zoned = pa.table({"at": pa.array([at], pa.timestamp("us", tz="Asia/Shanghai"))})

    assert list(record_keys(decode_keys(encode_keys(keys)))) == _per_record_keys(keys)
    assert list(record_keys(zoned)) == _per_record_keys(zoned) == ['{"at":"2024-01-01T12:00:00"}']


def test_set_record_keys_read_back_from_each_database_match_the_per_record_path(dbs: Databases) -> None:
    table = record_sets_table(sa.MetaData())
    keys = _typed_keys()
    engine = dbs.target()
    try:
        table.create(engine)
        with engine.begin() as conn:
            _insert(conn, table, [record_set_row("s", "e", "r", 0, CREATED, keys, T0)])
        with engine.connect() as conn:
            stored = conn.execute(sa.select(table)).mappings().one()
    finally:
        engine.dispose()

    assert [r["record_key"] for r in iter_set_records(stored)] == _per_record_keys(keys)
    assert stored["count"] == 4


# --------------------------------------------------------------------------- the readers


def test_run_records_count_page_and_filter_sets_with_rows(seeded: tuple[SyncConfig, Path]) -> None:
    cfg, _ = seeded
    with open_ledger(cfg) as ledger:
        entry = ledger.get(RUN)
        assert entry is not None
        records = RunRecords(ledger, entry)
        pages = [records.page(RecordFilter(), page=n, page_size=5) for n in range(1, 6)]
        created = records.page(RecordFilter(action=(CREATED,)), page=2, page_size=5)
        failed = records.page(RecordFilter(status=RecordStatus.FAILED))
        success = records.count(RecordFilter(status=RecordStatus.SUCCESS))
        departments = records.page(RecordFilter(entity="departments"))
        statuses = {s.entity: s for s in records.entity_statuses("orders")}
        streamed = [_shown(r) for r in records.iter_rows(RecordFilter(), chunk=1)]

    listed = [(r.key, r.entity, r.action.value, r.batch) for p in pages for r in p.rows]
    assert listed == EXPECTED
    assert [(p.total, p.pages, len(p.rows)) for p in pages] == [(21, 5, 5)] * 4 + [(21, 5, 1)]
    # Page 2 crosses from the first set into batch 0's rows, page 3 into the next batch's set.
    assert [r.key for r in pages[1].rows] == ["order_id=6", "order_id=7", "order_id=101", "order_id=102", "order_id=8"]
    assert (pages[1].rows[0].id, pages[1].rows[2].id is not None) == (None, True)
    [change] = pages[1].rows[2].changes
    assert (change.field, change.before, change.after) == ("status", "open", "paid")
    assert [r.key for r in created.rows] == [f"order_id={i}" for i in (6, 7, 8, 9, 10)] and created.total == 16
    assert [(r.key, r.status, r.error) for r in failed.rows] == [
        ("order_id=102", RecordStatus.FAILED, "qty: cannot convert 'x' to integer")
    ]
    assert success == 20
    assert [(r.key, r.entity) for r in departments.rows] == [
        ("order_id=201", "departments"),
        ("order_id=202", "departments"),
    ]
    orders, depts = statuses["orders"], statuses["departments"]
    assert (orders.success, orders.total, orders.updated, orders.by_action[CREATED]) == (18, 19, 2, 14)
    assert (depts.success, depts.total) == (2, 2)
    assert streamed == EXPECTED


def test_closing_a_run_counts_the_records_of_its_sets(seeded: tuple[SyncConfig, Path]) -> None:
    cfg, _ = seeded
    with open_ledger(cfg) as ledger:
        closed = ledger.close_run(RUN, RunStatus.FAILED, error="process died")
        entry = ledger.get(RUN)

    assert closed and entry is not None
    assert {k: entry.counts[k] for k in ("created", "updated", "deleted", "failed")} == {
        "created": 16,
        "updated": 2,
        "deleted": 2,
        "failed": 1,
    }


def _page_keys(html: str) -> list[str]:
    return re.findall(r'<td class="mono key">(.*?)</td>', html)


def _entity_rows(html: str) -> dict[str, str]:
    """Entity -> "success / total" of the run page's status per entity."""
    table = html.split('<table class="entities">', 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r'<td><a [^>]*>(.*?)</a></td>\s*<td class="num"><strong>(.*?)</strong>', table))


def test_the_history_view_lists_every_record_of_sets_and_rows(seeded: tuple[SyncConfig, Path]) -> None:
    _, folder = seeded
    with open_ledger(seeded[0]) as ledger:
        ledger.close_run(RUN, RunStatus.FAILED, error="stopped")
    with TestClient(create_app(folder, f"http://127.0.0.1:{free_port()}")) as client:
        pages = [client.get(f"/runs/{RUN}?page_size=5&page={n}") for n in range(1, 6)]
        created = client.get(f"/runs/{RUN}?action=created&page_size=5&page=2")
        failed = client.get(f"/runs/{RUN}?status=failed")
        departments = client.get(f"/runs/{RUN}?entity=departments")
        download = client.get(f"/runs/{RUN}/records.csv?action=created")
        late = client.get(f"/runs/{RUN}?page_size=5&page=3")  # counts kept for the finished run

    assert all(p.status_code == 200 for p in pages)
    assert [k for p in pages for k in _page_keys(p.text)] == [key for key, *_ in EXPECTED]
    entities = _entity_rows(pages[0].text)
    assert entities == {"departments": "2 / 2", "orders": "18 / 19"}
    assert _page_keys(created.text) == [f"order_id={i}" for i in (6, 7, 8, 9, 10)]
    assert _page_keys(failed.text) == ["order_id=102"] and "cannot convert" in failed.text
    assert _page_keys(departments.text) == ["order_id=201", "order_id=202"]
    assert _page_keys(late.text) == _page_keys(pages[2].text)
    lines = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert [(r["key"], r["entity"], r["action"], int(r["batch"])) for r in lines] == [
        e for e in EXPECTED if e[2] == "created"
    ]


def test_show_lists_the_records_of_sets_and_rows(seeded: tuple[SyncConfig, Path]) -> None:
    _, folder = seeded
    shown = invoke("show", RUN, "--limit", "50", config_dir=folder)
    created = invoke("show", RUN, "--action", "created", "--limit", "15", config_dir=folder)

    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.stdout.splitlines() if line.startswith("order_id=")]
    assert [(cells[0], cells[1], cells[2]) for cells in lines] == [(k, e, a) for k, e, a, _ in EXPECTED]
    [updated] = [cells for cells in lines if cells[0] == "order_id=101"]
    assert 'status: "open" -> "paid"' in " ".join(updated)
    listed = [line.split()[0] for line in created.stdout.splitlines() if line.startswith("order_id=")]
    assert listed == [f"order_id={i}" for i in range(1, 15)] + ["order_id=201"]
    assert "more records than --limit 15" in created.stdout


def test_both_exports_list_every_record_once(seeded: tuple[SyncConfig, Path], tmp_path: Path) -> None:
    cfg, _ = seeded
    with open_ledger(cfg) as ledger:
        entry = ledger.get(RUN)
        assert entry is not None
        n_csv = export_csv(tmp_path / "run.csv", ledger, entry)
        n_xlsx = export_xlsx(tmp_path / "run.xlsx", ledger, entry)
        n_deleted = export_csv(tmp_path / "deleted.csv", ledger, entry, RecordFilter(action=(DELETED,)))

    with (tmp_path / "run.csv").open(encoding="utf-8-sig", newline="") as handle:
        from_csv = [(r["key"], r["entity"], r["action"], int(r["batch"])) for r in csv.DictReader(handle)]
    sheet = openpyxl.load_workbook(tmp_path / "run.xlsx", read_only=True)[RECORDS_SHEET]
    header, *cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    at = {name: header.index(name) for name in ("key", "entity", "action", "batch", "changes")}
    from_xlsx = [(r[at["key"]], r[at["entity"]], r[at["action"]], int(r[at["batch"]])) for r in cells]

    assert (n_csv, n_xlsx, n_deleted) == (21, 21, 2)
    assert from_csv == EXPECTED and from_xlsx == EXPECTED
    [updated] = [r for r in cells if r[at["key"]] == "order_id=103"]
    assert updated[at["changes"]] == "qty: 1 -> 2"


def test_a_page_decodes_only_the_sets_it_shows(dbs: Databases, tmp_path: Path) -> None:
    """20 sets of 50 records: every blob but the one page 13 shows is unreadable, and the page still reads."""
    cfg = orders_config(dbs)
    sets = record_sets_table(sa.MetaData())
    engine = dbs.target()
    try:
        sets.create(engine)
        rows = [
            record_set_row(cfg.name, "orders", RUN, b, CREATED, _order_keys(list(range(b * 50, b * 50 + 50))), T0)
            for b in range(20)
        ]
        for b, row in enumerate(rows):
            if b != 6:  # page 13 of 25-record pages holds records 300..324: set 6
                row["keys"] = b"not a parquet file"
        with engine.begin() as conn:
            _insert(conn, sets, rows)
    finally:
        engine.dispose()
    with open_ledger(cfg) as ledger:
        ledger.finish_run(RunEntry(RUN, cfg.name, Trigger.MANUAL, "full", status=RunStatus.COMPLETED, started_at=T0))
        entry = ledger.get(RUN)
        assert entry is not None
        records = RunRecords(ledger, entry)
        page = records.page(RecordFilter(), page=13, page_size=25)
        with pytest.raises(pa.ArrowInvalid, match=r"(?i)parquet"):
            records.page(RecordFilter(), page=12, page_size=25)

    assert (page.total, page.pages) == (1000, 40)
    assert [r.key for r in page.rows] == [f"order_id={i}" for i in range(300, 325)]
    assert {(r.batch, r.action) for r in page.rows} == {(6, CREATED)}
    assert RECORD_SETS_TABLE == "_sync_record_sets"
