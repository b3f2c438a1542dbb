"""``COPY ... TO STDOUT`` read row by row from libpq's buffer, with psycopg's low-level ``pq`` calls.

The server sends one message per row. psycopg's ``Copy.read`` takes each through a generator and its wait
loop (0.8 s of client CPU per million rows); taking the rows straight from ``PGconn.get_copy_data`` while
libpq holds complete ones, and waiting on the socket only when it holds none, costs 0.3 s. On two cores
the server's output and the client's loop run side by side, so the saving is wall time wherever the
client was the slower of the two (narrow rows: the baselines; a source read whose batches are parsed
between reads).

The statement runs on the psycopg connection under the caller's SQLAlchemy connection, inside its
transaction. Errors are psycopg's own (the server's error as its SQLSTATE class, a lost connection as
:class:`psycopg.OperationalError`), so callers wrap them as before. If the reader stops before the end
(an exception in the caller's code, an interrupt), the copy is cancelled and drained, leaving the
connection ready for the transaction's rollback.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors, pq, sql

_COPY_OUT = pq.ExecStatus.COPY_OUT
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR


def copy_out_chunks(
    raw: psycopg.Connection[Any], query: str | sql.Composable, *, rows_per_chunk: int | None = None
) -> Iterator[bytearray]:
    """What ``query`` (a ``COPY ... TO STDOUT``) sends, in buffers of ``rows_per_chunk`` rows (the last one
    shorter; all rows in one buffer when None). Nothing is yielded for a copy of no rows."""
    text = query if isinstance(query, str) else query.as_string(raw)
    pgconn = raw.pgconn
    waiting = select.poll()
    waiting.register(pgconn.socket, select.POLLIN)

    def wait() -> None:
        waiting.poll()
        pgconn.consume_input()

    if not raw.autocommit and raw.info.transaction_status == pq.TransactionStatus.IDLE:
        # psycopg opens the transaction (with the connection's isolation level), as for any of its statements.
        raw.execute("SELECT 1")
    encoding = raw.info.encoding
    pgconn.send_query(text.encode(encoding))
    started = _result(pgconn, wait)
    if started is None or started.status != _COPY_OUT:
        _finish(pgconn, wait, started, encoding)
        raise psycopg.ProgrammingError(f"not a COPY TO STDOUT: {text[:200]}")
    limit = rows_per_chunk or -1
    data, count = bytearray(), 0
    get = pgconn.get_copy_data
    done = False
    try:
        while True:
            size, row = get(1)
            if size > 0:
                # One buffer grown row by row: keeping libpq's rows alive holds their buffers, and one bytes
                # object per row costs more than the append.
                data += row
                count += 1
                if count == limit:
                    yield data
                    data, count = bytearray(), 0
            elif size == 0:
                wait()  # no complete row in libpq's buffer yet
            elif size == -1:
                break
            else:
                raise psycopg.OperationalError(pgconn.get_error_message() or "COPY TO STDOUT failed")
        done = True
    finally:
        if not done:
            _abandon(raw)
    _finish(pgconn, wait, None, encoding)
    if count:
        yield data


def _result(pgconn: pq.abc.PGconn, wait: Any) -> pq.abc.PGresult | None:
    """The next result, waiting for the whole of it."""
    while pgconn.is_busy():
        wait()
    return pgconn.get_result()


def _finish(pgconn: pq.abc.PGconn, wait: Any, first: pq.abc.PGresult | None, encoding: str) -> None:
    """Take the statement's remaining results; raise the first error among ``first`` and them."""
    failed = first if first is not None and first.status == _FATAL_ERROR else None
    while (result := _result(pgconn, wait)) is not None:
        if failed is None and result.status == _FATAL_ERROR:
            failed = result
    if failed is not None:
        raise errors.error_from_result(failed, encoding=encoding)


def _abandon(raw: psycopg.Connection[Any]) -> None:
    """Cancel a copy left half read and drain what the server still sends (libpq's blocking calls: the server
    stops at once); a connection that fails here is left for the pool to discard."""
    pgconn = raw.pgconn
    with contextlib.suppress(psycopg.Error, OSError):  # the caller's own exception is the one that matters
        raw.cancel_safe()
        while pgconn.get_copy_data(0)[0] > 0:
            pass
        while pgconn.get_result() is not None:
            pass
