"""The one classifier (engine/classify.py) against the per-record verdicts it replaced (``Reconciler.judge``).

Each generated case is one record in a three-way state: a baseline (the values both sides last agreed
on), the source now and the target now, each side changed or not field by field, with NULLs and a
target that stores some fields with less precision than the source sends (a lossy column). The
per-record judge sees the case through format-2 baselines (SHA-256 of JSON, with the target's values);
the classifier through format-3 baselines (row hashes and 2-byte field digests). Both must reach the
same verdict, write the same records, and name the same changed fields.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_pipelines.config import SyncConfig
from sync_pipelines.connectors.fingerprint import normalise_row, values_hash
from sync_pipelines.connectors.rowhash import FieldHashes, column_of, digests_to_binary, row_hashes
from sync_pipelines.connectors.values import arrow_type, display, same
from sync_pipelines.engine import classify as classify_module
from sync_pipelines.engine.classify import Rules, baseline_schema, classify
from sync_pipelines.engine.transform import ERROR_COLUMN, KEY_COLUMN
from sync_pipelines.types import ConflictPolicy, RecordAction
from sync_pipelines_tests.factories import sql_sync

TYPES = {
    "id": "integer",
    "qty": "integer",
    "note": "string",
    "price": "decimal(12,2)",
    "at": "datetime",
    "day": "date",
    "ok": "boolean",
    "ratio": "float",
}
FIELDS = [f for f in TYPES if f != "id"]
LOSSY = {"at"}
"""Fields the target stores with less precision (whole seconds) than the source sends."""

VALUES = {
    "qty": st.one_of(st.none(), st.integers(-5, 5)),
    "note": st.one_of(st.none(), st.sampled_from(["", "a", "b", 'q"uote', "é中", "line\nbreak"])),
    "price": st.one_of(st.none(), st.sampled_from([Decimal("0.00"), Decimal("1.50"), Decimal("-2.25")])),
    "at": st.one_of(
        st.none(),
        st.sampled_from([dt.datetime(2024, 1, 1, 8), dt.datetime(2024, 1, 1, 8, 0, 0, 250), dt.datetime(2025, 2, 2)]),
    ),
    "day": st.one_of(st.none(), st.sampled_from([dt.date(2024, 1, 1), dt.date(2024, 2, 29)])),
    "ok": st.one_of(st.none(), st.booleans()),
    "ratio": st.one_of(st.none(), st.sampled_from([0.0, 1.5, -3.25, 1e20])),
}


def lossy(row: dict[str, Any], lossy_fields: set[str]) -> dict[str, Any]:
    """What the target stores of ``row``."""
    out = dict(row)
    for name in lossy_fields:
        if out.get(name) is not None:
            out[name] = out[name].replace(microsecond=0)
    return out


def config(policy: ConflictPolicy, bidirectional: bool, deletes: bool = False) -> SyncConfig:
    data = sql_sync("classified", "sqlite:///src.db", "sqlite:///dst.db", on_conflict=policy.value)
    if bidirectional:
        data["direction"] = "bidirectional"
        data["delete_missing"] = deletes
    data["mapping"] = {name: {"type": kind} for name, kind in TYPES.items()}
    return SyncConfig.model_validate(data)


def _reference_verdict(
    cfg: SyncConfig, row: dict[str, Any], before: dict[str, Any], base: tuple[int, int, dict[str, Any]] | None
) -> tuple[str, bool, set[str]]:
    """The per-record judge of the previous release (``Reconciler.judge``), kept here as the oracle.

    ``base`` is a format-2 baseline: SHA-256 hashes of each side's normalised values, and the target's values.
    """
    bidirectional = cfg.direction.value == "bidirectional"
    source, target = normalise_row(row, TYPES, FIELDS), normalise_row(before, TYPES, FIELDS)
    differing = [f for f in FIELDS if source[f] != target[f]]
    if base is None:
        changed = {c for c in FIELDS if not same(before[c], row[c])}
        return ("updated" if changed else "unchanged"), bool(changed), changed
    source_hash, target_hash, values = base
    source_changed = values_hash(source) != source_hash
    target_changed = values_hash(target) != target_hash
    if not target_changed and not source_changed:
        return "unchanged", False, set()
    if not target_changed:
        return "updated", True, set(differing)
    if not source_changed:
        edited = {f for f in FIELDS if target[f] != values.get(f)}
        return ("source_updated" if bidirectional else "target_modified"), False, edited
    if not differing:
        return "unchanged", False, set()
    policy = cfg.on_conflict
    if policy is ConflictPolicy.MANUAL:
        return "conflict", False, set(differing)
    if policy is ConflictPolicy.TARGET_WINS:
        return "target_won", False, set(differing)
    return "source_won", True, set(differing)


def old_verdict(
    cfg: SyncConfig,
    row: dict[str, Any],
    before: dict[str, Any] | None,
    base: dict[str, Any] | None,
    lossy_fields: set[str],
) -> tuple[str, bool, set[str]]:
    """(action, written, changed fields) as the previous release's per-record path decided them."""
    propagate = cfg.direction.value == "bidirectional" and cfg.delete_missing
    if before is None:
        return ("source_deleted", False, set()) if propagate and base is not None else ("created", True, set())
    old_base = None
    if base is not None:
        stored = normalise_row(lossy(base, lossy_fields), TYPES, FIELDS)
        old_base = (values_hash(normalise_row(base, TYPES, FIELDS)), values_hash(stored), stored)
    return _reference_verdict(cfg, row, before, old_base)


def table_of(rows: list[dict[str, Any]], names: list[str]) -> pa.Table:
    return pa.table({n: pa.array([r[n] for r in rows], arrow_type(TYPES[n])) for n in names})


def new_verdict(
    cfg: SyncConfig,
    row: dict[str, Any],
    before: dict[str, Any] | None,
    base: dict[str, Any] | None,
    lossy_fields: set[str],
) -> tuple[str, bool, set[str], Any]:
    rules = Rules(
        key=("id",),
        fields=tuple(FIELDS),
        types=TYPES,
        policy=cfg.on_conflict,
        bidirectional=cfg.direction.value == "bidirectional",
        propagate_deletes=cfg.direction.value == "bidirectional" and cfg.delete_missing,
    )
    batch = table_of([row], list(TYPES))
    batch = batch.append_column(ERROR_COLUMN, pa.nulls(1, pa.string()))
    batch = batch.append_column(KEY_COLUMN, pa.array([json.dumps({"id": row["id"]})]))
    current = table_of([before] if before is not None else [], list(TYPES))
    baselines = baseline_schema({"id": pa.int64()}).empty_table()
    if base is not None:
        source = FieldHashes({f: column_of(table_of([base], FIELDS).column(f), TYPES[f]) for f in FIELDS}, TYPES, 1)
        stored = lossy(base, lossy_fields)
        target = FieldHashes({f: column_of(table_of([stored], FIELDS).column(f), TYPES[f]) for f in FIELDS}, TYPES, 1)
        same_sides = bool(source.rows[0] == target.rows[0])
        baselines = pa.table(
            {
                "id": pa.array([row["id"]], pa.int64()),
                "source_hash": pa.array(source.rows, pa.int64()),
                "target_hash": pa.array([None if same_sides else int(target.rows[0])], pa.int64()),
                "fields": digests_to_binary(source.digests()),
                "target_fields": pa.array([None], pa.binary()) if same_sides else digests_to_binary(target.digests()),
                "version": pa.array([3], pa.int16()),
            },
            schema=baseline_schema({"id": pa.int64()}),
        )
    plan = classify(rules, batch, current, baselines, sample_size=5)
    written = plan.inserts.num_rows + plan.updates.num_rows == 1
    if plan.reverse_deletes:
        return "source_deleted", written, set(), plan
    if RecordAction.CREATED in plan.sets:
        return "created", written, set(), plan
    if plan.outcomes.num_rows == 0:
        return "unchanged", written, set(), plan
    outcome = plan.outcomes.to_pylist()[0]
    changes = json.loads(outcome["changes"]) if outcome["changes"] else {}
    return outcome["action"], written, set(changes), plan


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None, set[str]]:
    base = {"id": 1, **{f: draw(VALUES[f]) for f in FIELDS}}
    lossy_fields = draw(st.sampled_from([set(), LOSSY]))
    source = dict(base)
    target = lossy(base, lossy_fields)
    for f in FIELDS:
        if draw(st.booleans()):
            source[f] = draw(VALUES[f])
        if draw(st.integers(0, 3)) == 0:
            target[f] = draw(VALUES[f])
    target = lossy(target, lossy_fields)
    has_target = draw(st.integers(0, 5)) > 0
    has_base = draw(st.integers(0, 4)) > 0
    return source, (target if has_target else None), (base if has_base else None), lossy_fields


_BASE = {
    "id": 1,
    "qty": 1,
    "note": "a",
    "price": Decimal("1.50"),
    "at": dt.datetime(2024, 1, 1, 8, 0, 0, 250),
    "day": None,
    "ok": True,
    "ratio": 1.5,
}


@pytest.mark.parametrize(
    ("policy", "bidirectional", "deletes"),
    [
        (ConflictPolicy.MANUAL, False, False),
        (ConflictPolicy.SOURCE_WINS, False, False),
        (ConflictPolicy.TARGET_WINS, False, False),
        (ConflictPolicy.MANUAL, True, False),
        (ConflictPolicy.TARGET_WINS, True, True),
    ],
)
@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The source changed to the value the target stores (whole seconds): an update with no field that differs.
@example(case=({**_BASE, "at": dt.datetime(2024, 1, 1, 8)}, lossy(_BASE, LOSSY), _BASE, LOSSY))
@given(case=cases())
def test_same_verdicts_as_the_per_record_judge(
    policy: ConflictPolicy, bidirectional: bool, deletes: bool, case: Any
) -> None:
    source, target, base, lossy_fields = case
    cfg = config(policy, bidirectional, deletes)
    old = old_verdict(cfg, source, target, base, lossy_fields)
    action, written, changed, plan = new_verdict(cfg, source, target, base, lossy_fields)
    # The fields a target-only edit changed are judged on 2-byte digests of the baseline, not its values.
    assert (action, written, changed) == old
    if action == RecordAction.CONFLICT.value:
        assert len(plan.conflicts) == 1
        assert set(plan.conflicts[0].changed_fields) == old[2]


def test_a_batch_is_classified_at_once_with_counts_sets_outcomes_and_baselines() -> None:
    cfg = config(ConflictPolicy.MANUAL, False)
    rules = Rules(key=("id",), fields=tuple(FIELDS), types=TYPES, policy=cfg.on_conflict)
    at = dt.datetime(2024, 1, 1, 8)
    rows = [
        {"id": i, "qty": i, "note": f"n{i}", "price": Decimal("1.00"), "at": at, "day": None, "ok": True, "ratio": 1.0}
        for i in range(1, 7)
    ]
    batch = table_of(rows, list(TYPES))
    errors = [None] * 5 + ["qty: not a number"]
    batch = batch.append_column(ERROR_COLUMN, pa.array(errors, pa.string()))
    batch = batch.append_column(KEY_COLUMN, pa.array([json.dumps({"id": r["id"]}) for r in rows]))
    # Record 1 missing from the target, 2 unchanged, 3 updated by the source, 4 edited on the target, 5 both.
    agreed = [dict(r) for r in rows[1:5]]
    hashes = FieldHashes({f: column_of(table_of(agreed, FIELDS).column(f), TYPES[f]) for f in FIELDS}, TYPES, 4)
    baselines = pa.table(
        {
            "id": pa.array([2, 3, 4, 5], pa.int64()),
            "source_hash": pa.array(hashes.rows, pa.int64()),
            "target_hash": pa.nulls(4, pa.int64()),
            "fields": digests_to_binary(hashes.digests()),
            "target_fields": pa.nulls(4, pa.binary()),
            "version": pa.array([3] * 4, pa.int16()),
        },
        schema=baseline_schema({"id": pa.int64()}),
    )
    current_rows = [dict(r) for r in rows[1:5]]
    current_rows[2]["note"] = "edited"  # record 4
    current_rows[3]["note"] = "edited"  # record 5
    batch_rows = batch.to_pylist()
    batch_rows[2]["qty"] = 30  # record 3: source changed
    batch_rows[4]["qty"] = 50  # record 5: source changed too
    batch = pa.Table.from_pylist(batch_rows, schema=batch.schema)
    plan = classify(rules, batch, table_of(current_rows, list(TYPES)), baselines, sample_size=10)
    counts = plan.counts.as_dict()
    assert (counts["processed"], counts["created"], counts["unchanged"], counts["updated"]) == (6, 1, 1, 1)
    assert (counts["target_modified"], counts["conflicted"], counts["failed"]) == (1, 1, 1)
    assert plan.inserts.column("id").to_pylist() == [1]
    assert plan.updates.column("id").to_pylist() == [3]
    assert plan.sets[RecordAction.CREATED].column("id").to_pylist() == [1]
    outcomes = {r["record_key"]: r for r in plan.outcomes.to_pylist()}
    assert outcomes['{"id":3}']["changes"] == '{"qty":[3,30]}'
    assert json.loads(outcomes['{"id":4}']["changes"]) == {"note": ["n4", "edited"]}
    assert outcomes['{"id":6}']["error"] == "qty: not a number"
    assert [c.changed_fields for c in plan.conflicts] == [["qty", "note"]]
    assert plan.conflicts[0].baseline_values["qty"] == 5 and plan.conflicts[0].baseline_values["note"] == "n5"
    # New baselines for the created and the updated record; the written ones assume what was sent is stored.
    assert sorted(plan.baselines.column("id").to_pylist()) == [1, 3]
    assert plan.written_baselines.tolist() == [True, True]
    assert plan.seen.column("id").to_pylist() == [1, 2, 3, 4, 5, 6]
    created_hash = row_hashes(table_of([batch_rows[0]], FIELDS), TYPES, FIELDS)[0]
    assert (
        plan.baselines.filter(pa.compute.equal(plan.baselines.column("id"), 1)).column("source_hash")[0].as_py()
        == created_hash
    )


def test_record_keys_and_changes_render_as_the_per_record_path_wrote_them() -> None:
    from sync_pipelines.connectors.values import dumps

    cfg = config(ConflictPolicy.MANUAL, False)
    rules = Rules(key=("id",), fields=tuple(FIELDS), types=TYPES, policy=cfg.on_conflict)
    old = {
        "id": 7,
        "qty": 1,
        "note": 'say "hi"',
        "price": Decimal("1.50"),
        "at": dt.datetime(2024, 1, 1, 8, 0, 0, 5),
        "day": dt.date(2024, 1, 2),
        "ok": False,
        "ratio": 2.0,
    }
    new = {
        **old,
        "qty": None,
        "note": "tab\there",
        "price": Decimal("-0.05"),
        "at": dt.datetime(2024, 1, 1, 9),
        "day": None,
        "ok": True,
        "ratio": 1e20,
    }
    batch = table_of([new], list(TYPES)).append_column(ERROR_COLUMN, pa.nulls(1, pa.string()))
    batch = batch.append_column(KEY_COLUMN, pa.array(['{"id":7}']))
    plan = classify(rules, batch, table_of([old], list(TYPES)), baseline_schema({"id": pa.int64()}).empty_table())
    row = plan.outcomes.to_pylist()[0]
    expected = {f: [display(old[f]), display(new[f])] for f in FIELDS}
    assert row["record_key"] == dumps({"id": 7})
    assert row["changes"] == dumps(expected)


@settings(max_examples=300, deadline=None)
@given(
    left=st.lists(st.integers(-5, 30), unique=True, max_size=12),
    right=st.lists(st.integers(-5, 30), unique=True, max_size=12),
    same=st.booleans(),
    kind=st.sampled_from([pa.int64(), pa.int32(), pa.string()]),
)
def test_rows_are_aligned_by_key_whether_or_not_both_sides_hold_the_same_keys_in_order(
    left: list[int], right: list[int], same: bool, kind: pa.DataType
) -> None:
    """Each left row gets its right row (or -1) alike from the positional shortcut (the same keys in the same
    order), the sorted lookup of integer keys and the join of other keys."""
    if same:
        right = list(left)

    def keyed(values: list[int], index: str) -> pa.Table:
        keys = pa.array([str(v) if pa.types.is_string(kind) else v for v in values], kind)
        return pa.table({"id": keys, index: pa.array(range(len(values)), pa.int64())})

    where = {k: i for i, k in enumerate(right)}
    got = classify_module._align(keyed(left, "__i"), keyed(right, "__c"), ("id",), "__i", "__c")
    assert got.tolist() == [where.get(k, -1) for k in left]
