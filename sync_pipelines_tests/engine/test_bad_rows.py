"""Bad-input corpus, part 2: bad rows on SQLite, PostgreSQL and MariaDB.

NULL and duplicate keys, values overflowing the target type, impossible dates, text where a number
belongs, very long and non-ASCII strings: each bad record fails alone with its key and field in the
error, the valid records of the same run land, and the run is partial. Schema drift (a lost or
retyped column) is covered by ``test_drift``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.bookkeeping import SEEN_PREFIX
from sync_pipelines.engine import RunOptions, run_sync
from sync_pipelines.errors import PermanentConnectorError
from sync_pipelines.types import RecordAction, RunStatus
from sync_pipelines_tests.support.databases import Databases

LONG = "长" * 20_000 + "x" * 20_000

# (id, name, amount, born): the expected error of each bad row, keyed by its id.
ROWS: list[tuple[Any, ...]] = [
    (1, "valid one", "1.50", "2024-01-02"),
    (2, "bad date", "2.00", "2024-02-30"),
    (3, "month 13", "2.00", "2024-13-01"),
    (None, "null key", "1", "2024-01-01"),
    (4, "dup first", "1", "2024-01-01"),
    (4, "dup second", "1", "2024-01-01"),
    (5, "overflow", "123456789.12", "2024-01-01"),
    (6, LONG, "1", "2024-01-01"),
    (7, "中文名称 ünïcödé 😀", "1", "2024-01-03"),
    (8, "not a number", "abc", "2024-01-01"),
    (9, "negative overflow", "-99999.999", "2024-01-01"),
    (10, "valid ten", "9999.99", "1970-01-01"),
    (11, "empty date", "1", ""),
    (12, "garbage date", "1", "yesterday"),
]
EXPECTED_FAILED = {
    2: "born: cannot convert '2024-02-30' to date",
    3: "born: cannot convert '2024-13-01' to date",
    None: "key id is null",
    4: "duplicate key within the run",
    5: "amount: cannot convert '123456789.12' to decimal(6,2)",
    8: "amount: cannot convert 'abc' to decimal(6,2)",
    9: "amount: cannot convert '-99999.999' to decimal(6,2)",
    11: "born: cannot convert '' to date",
    12: "born: cannot convert 'yesterday' to date",
}


def make_rows(dbs: Databases) -> None:
    engine = dbs.source()
    metadata = sa.MetaData()
    table = sa.Table(
        "rows_in",
        metadata,
        sa.Column("id", sa.Integer),
        sa.Column("name", sa.Text().with_variant(sa.dialects.mysql.MEDIUMTEXT(), "mysql", "mariadb")),
        sa.Column("amount", sa.String(40)),
        sa.Column("born", sa.String(40)),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(("id", "name", "amount", "born"), r, strict=True)) for r in ROWS])
    engine.dispose()


def rows_config(dbs: Databases) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "rows",
            "source": {"kind": "sql", "url": dbs.source_url, "table": "rows_in"},
            "target": {"kind": "sql", "url": dbs.target_url, "table": "wh_rows", "key": ["id"]},
            "mapping": {
                "id": {"source": "id", "type": "integer"},
                "name": {"type": "string"},
                "amount": {"type": "decimal(6,2)"},
                "born": {"type": "date"},
            },
            "max_failure_ratio": 0.9,
            "batch_size": 4,
        }
    )


@pytest.mark.slow
def test_bad_rows_fail_alone_with_their_key_and_field(dbs: Databases) -> None:
    make_rows(dbs)
    result = run_sync(rows_config(dbs), RunOptions(run_id="bad-rows", sample_size=100))
    assert result.status is RunStatus.PARTIAL
    assert (result.counts.processed, result.counts.failed) == (len(ROWS), len(EXPECTED_FAILED))
    failed = {s.key["id"]: s.error for s in result.samples if s.action is RecordAction.FAILED}
    assert set(failed) == set(EXPECTED_FAILED)
    for key, message in EXPECTED_FAILED.items():
        assert message in (failed[key] or ""), (key, failed[key])

    engine = dbs.target()
    with engine.connect() as conn:
        landed = {
            r[0]: (r[1], Decimal(str(r[2])), str(r[3])[:10])
            for r in conn.execute(sa.text("SELECT id, name, amount, born FROM wh_rows"))
        }
        recorded = conn.execute(sa.text("SELECT COUNT(*) FROM _sync_records WHERE action = 'failed'")).scalar()
        # Failed records keep one outcome row each (with their error); created ones are kept as record sets.
    engine.dispose()
    assert set(landed) == {1, 4, 6, 7, 10}
    assert landed[1] == ("valid one", Decimal("1.50"), "2024-01-02")
    assert landed[4][0] in ("dup first", "dup second")  # one of the duplicates lands, the other is reported
    assert landed[6][0] == LONG  # very long text is stored whole, not cut
    assert landed[7][0] == "中文名称 ünïcödé 😀"
    assert landed[10] == ("valid ten", Decimal("9999.99"), "1970-01-01")
    assert recorded == len(EXPECTED_FAILED)  # every failure is in the bookkeeping with its error


def test_non_utf8_text_in_sqlite_fails_the_run_naming_column_and_writes_nothing(sqlite_dbs: Databases) -> None:
    """SQLite stores any bytes as TEXT; the driver cannot decode them, so the read fails before any write."""
    make_rows(sqlite_dbs)
    engine = sqlite_dbs.source()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO rows_in VALUES (20, CAST(X'ff41' AS TEXT), '1', '2024-01-01')"))
    engine.dispose()
    try:
        run_sync(rows_config(sqlite_dbs), RunOptions(run_id="latin1"))
    except PermanentConnectorError as exc:
        message = str(exc)
    else:
        raise AssertionError("the run did not fail")
    assert "source.db" in message and "Could not decode to UTF-8 column 'name'" in message
    engine = sqlite_dbs.target()
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("wh_rows")
    engine.dispose()


@pytest.mark.slow
def test_a_full_sync_with_deletes_keeps_going_past_repeated_keys(dbs: Databases) -> None:
    """A key read twice in a full sync with ``delete_missing`` (a duplicate, or a bad row and a good one) is one
    seen key: the duplicate fails alone, and the deletes at the end remove only what the source lost. A seen-keys
    table of an earlier release (the key its primary key, which refused the second copy) is replaced."""
    make_rows(dbs)
    data = rows_config(dbs).model_dump(exclude_unset=True)
    cfg = SyncConfig.model_validate({**data, "mode": "full", "delete_missing": True, "max_delete_ratio": 0.5})
    engine = dbs.target()
    earlier = sa.Table(f"{SEEN_PREFIX}rows", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True))
    earlier.create(engine)
    engine.dispose()

    first = run_sync(cfg, RunOptions(run_id="deletes-1", sample_size=100))

    assert first.status is RunStatus.PARTIAL
    assert (first.counts.failed, first.counts.deleted) == (len(EXPECTED_FAILED), 0)
    source = dbs.source()
    with source.begin() as conn:
        conn.execute(sa.text("DELETE FROM rows_in WHERE id = 10"))
    source.dispose()
    dry = run_sync(cfg, RunOptions(run_id="deletes-dry", dry_run=True))  # its own temporary seen keys
    assert (dry.counts.failed, dry.counts.deleted) == (len(EXPECTED_FAILED), 1)

    second = run_sync(cfg, RunOptions(run_id="deletes-2", sample_size=100))

    assert second.status is RunStatus.PARTIAL
    assert (second.counts.failed, second.counts.deleted) == (len(EXPECTED_FAILED), 1)
    engine = dbs.target()
    with engine.connect() as conn:
        landed = {r[0] for r in conn.execute(sa.text("SELECT id FROM wh_rows"))}
        primary = sa.inspect(conn).get_pk_constraint(f"{SEEN_PREFIX}rows").get("constrained_columns")
    engine.dispose()
    assert landed == {1, 4, 6, 7}
    assert not primary
