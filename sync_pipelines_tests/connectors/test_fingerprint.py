"""The per-sync row normaliser gives exactly what :func:`normalise_row` gives, value by value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sync_pipelines.connectors.fingerprint import normalise_row, row_normaliser, values_hash

TYPES = {
    "price": "decimal(12,2)",
    "flag": "boolean",
    "qty": "integer",
    "ratio": "float",
    "at": "datetime",
    "day": "date",
    "note": "string",
}

ROWS = [
    {
        "price": Decimal("1.5"),
        "flag": 1,
        "qty": "7",
        "ratio": 0.1,
        "at": dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
        "day": dt.datetime(2024, 2, 3, 4, 5),
        "note": "x",
    },
    {"price": "not a number", "flag": "Yes", "qty": "seven", "ratio": "n/a", "at": "bad", "day": "2024-02-03T00:00"},
    {"price": None, "flag": None, "qty": None, "ratio": None, "at": None, "day": None, "note": b"\x01\x02"},
    {"price": 3, "flag": False, "qty": 2.0, "ratio": Decimal("2.5"), "at": "2024-01-01T10:00:00+02:00", "note": 5},
]


def test_row_normaliser_matches_normalise_row() -> None:
    fields = list(TYPES)
    fast = row_normaliser(TYPES, fields)
    for row in ROWS:
        expected = normalise_row(row, TYPES, fields)
        assert fast(row) == expected
        assert values_hash(fast(row)) == values_hash(expected)
    assert fast(ROWS[1])["price"] == "not a number"
    assert fast(ROWS[0])["price"] == "1.50"
    assert fast(ROWS[3])["at"] == "2024-01-01T08:00:00.000000"
