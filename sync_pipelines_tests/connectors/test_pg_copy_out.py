"""``COPY ... TO STDOUT`` read from libpq's buffer, against the real server: the same bytes as psycopg's own
``Copy``, errors as psycopg's, and a connection fit for the transaction's end whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import pq, sql

from sync_pipelines.connectors.pg_copy_out import copy_out_chunks
from sync_pipelines_tests.support.databases import Databases, make_databases


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Databases]:
    yield from make_databases("postgresql", tmp_path)


@pytest.fixture
def raw(pg: Databases) -> Iterator[psycopg.Connection[Any]]:
    engine = pg.target()
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        yield driver
        conn.rollback()
    engine.dispose()


def _psycopg_copy(raw: psycopg.Connection[Any], query: str | sql.Composable) -> bytes:
    with raw.cursor() as cur, cur.copy(query) as copy:
        return b"".join(bytes(row) for row in copy)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.one_of(st.none(), _TEXT), max_size=60),
    per_chunk=st.one_of(st.none(), st.integers(1, 70)),
    csv=st.booleans(),
)
def test_rows_are_psycopgs_own_bytes_cut_into_chunks_of_whole_rows(
    raw: psycopg.Connection[Any], texts: list[str | None], per_chunk: int | None, csv: bool
) -> None:
    # Texts with newlines, quotes, commas, backslashes and any other character, NULLs among them: the chunks
    # joined are what psycopg's Copy reads, and each chunk holds ``per_chunk`` rows (the last one fewer).
    query = sql.SQL(
        "COPY (SELECT i, t FROM unnest({}::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i) TO STDOUT {}"
    ).format(sql.Literal(texts), sql.SQL("(FORMAT csv)" if csv else ""))
    chunks = list(copy_out_chunks(raw, query, rows_per_chunk=per_chunk))
    assert b"".join(chunks) == _psycopg_copy(raw, query)
    if not texts:
        assert chunks == []
        return
    if per_chunk is None:
        assert len(chunks) == 1
    else:
        counts = [_rows_in(raw, query, chunk) for chunk in chunks]
        assert counts[:-1] == [per_chunk] * (len(counts) - 1)
        assert 1 <= counts[-1] <= per_chunk
        assert sum(counts) == len(texts)


def _rows_in(raw: psycopg.Connection[Any], query: sql.Composable, chunk: bytes) -> int:
    """How many rows the server reads back from ``chunk`` (a row's text may hold newlines)."""
    as_text = query.as_string(raw)
    csv = "FORMAT csv" in as_text
    with raw.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS chunk_rows (i bigint, t text)")
        cur.execute("TRUNCATE chunk_rows")
        with cur.copy(f"COPY chunk_rows FROM STDIN {'(FORMAT csv)' if csv else ''}") as copy:
            copy.write(chunk)
        counted = cur.execute("SELECT count(*) FROM chunk_rows").fetchone()
    assert counted is not None
    return int(counted[0])


def test_many_rows_arrive_whole_across_the_socket_waits(raw: psycopg.Connection[Any]) -> None:
    # Enough rows that libpq's buffer runs dry many times while the server is still sending.
    query = "COPY (SELECT i, repeat('x', i % 97) FROM generate_series(1, 200000) i) TO STDOUT"
    chunks = list(copy_out_chunks(raw, query, rows_per_chunk=50_000))
    assert [c.count(b"\n") for c in chunks] == [50_000] * 4
    assert b"".join(chunks) == _psycopg_copy(raw, query)


def test_a_server_error_mid_copy_is_psycopgs_error_and_the_transaction_rolls_back(
    raw: psycopg.Connection[Any],
) -> None:
    raw.execute("CREATE TEMPORARY TABLE kept (n int)")
    raw.execute("INSERT INTO kept VALUES (1)")
    query = "COPY (SELECT 1 / (i - 30000) FROM generate_series(1, 60000) i) TO STDOUT"
    with pytest.raises(psycopg.errors.DivisionByZero):
        list(copy_out_chunks(raw, query, rows_per_chunk=1000))
    assert raw.info.transaction_status == pq.TransactionStatus.INERROR
    raw.rollback()
    assert raw.execute("SELECT 41 + 1").fetchone() == (42,)


def test_a_failing_statement_raises_before_any_row(raw: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        list(copy_out_chunks(raw, "COPY (SELECT * FROM no_such_table) TO STDOUT"))
    raw.rollback()
    with pytest.raises(psycopg.ProgrammingError, match="not a COPY TO STDOUT"):
        list(copy_out_chunks(raw, "SELECT 1"))
    raw.rollback()
    assert raw.execute("SELECT 1").fetchone() == (1,)


def test_a_reader_stopped_half_way_leaves_the_connection_usable(raw: psycopg.Connection[Any]) -> None:
    query = "COPY (SELECT i FROM generate_series(1, 500000) i) TO STDOUT"
    reader = copy_out_chunks(raw, query, rows_per_chunk=1000)
    first = next(reader)
    assert first.startswith(b"1\n2\n") and first.count(b"\n") == 1000
    reader.close()  # the caller's code failed between two chunks
    assert raw.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
    raw.rollback()
    assert raw.execute("SELECT count(*) FROM generate_series(1, 10)").fetchone() == (10,)


def test_the_copy_runs_inside_the_callers_transaction(pg: Databases) -> None:
    engine = pg.target()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        assert raw.info.transaction_status == pq.TransactionStatus.IDLE
        # The first statement of the transaction: psycopg's BEGIN comes first, so the copy sees what the
        # transaction wrote and a rollback takes everything back.
        list(copy_out_chunks(raw, "COPY (SELECT txid_current()) TO STDOUT"))
        assert raw.info.transaction_status == pq.TransactionStatus.INTRANS
        conn.execute(sa.text("CREATE TABLE copied (n int)"))
        conn.execute(sa.text("INSERT INTO copied VALUES (7)"))
        assert list(copy_out_chunks(raw, "COPY copied TO STDOUT")) == [bytearray(b"7\n")]
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('copied')")).scalar() is None
    engine.dispose()
