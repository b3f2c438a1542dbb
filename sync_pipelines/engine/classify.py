"""The one classifier: what a batch does to its target, decided over whole Arrow columns.

:func:`classify` is a pure function. It takes a batch of transformed rows, the current target rows of
its keys and their baselines (all as Arrow tables, read in bulk by the target's backend) and returns
the :class:`Plan`: rows to insert and to update, per-record outcomes with field-level changes, record
sets (created, and unchanged when kept), conflicts under the sync's policy, and new baselines. It makes
no database call, and no Python loop runs over created, unchanged or updated records; only failed
records, conflicts and bidirectional write-backs (rare, and each needing its own row of history) are
built one by one.

The verdicts, for a record present on both sides with a baseline (each side compared with its own
part of the baseline; hashes from :mod:`~sync_pipelines.connectors.rowhash`):

- neither side changed: ``unchanged``;
- the source changed, the target did not: ``updated`` (written);
- the target changed, the source did not: ``target_modified`` (left alone), or, bidirectional,
  ``source_updated`` (the target row is written back to the source);
- both changed to the same values: ``unchanged``, and the baseline follows;
- both changed to different values: the sync's ``on_conflict`` policy (``conflict``,
  ``source_won`` or ``target_won``).

A record without a baseline is compared value by value: equal is ``unchanged`` (and gets its
baseline), different is ``updated``. A record missing from the target is ``created``, except in a
bidirectional sync that propagates deletes, where a baseline says it was deleted from the target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.connectors import render
from sync_pipelines.connectors.baselines import BASELINE_FIELDS, baseline_schema
from sync_pipelines.connectors.conflict_store import NewConflict
from sync_pipelines.connectors.fingerprint import key_hash, normalise_row, values_hash
from sync_pipelines.connectors.rowhash import (
    HASH_VERSION,
    Column,
    FieldHashes,
    binary_to_digests,
    column_of,
    digests_to_binary,
)
from sync_pipelines.connectors.values import display
from sync_pipelines.engine.transform import ERROR_COLUMN, KEY_COLUMN
from sync_pipelines.types import ConflictPolicy, Counts, RecordAction, RecordOutcome

_POLICY_ACTION = {
    ConflictPolicy.MANUAL: RecordAction.CONFLICT,
    ConflictPolicy.SOURCE_WINS: RecordAction.SOURCE_WON,
    ConflictPolicy.TARGET_WINS: RecordAction.TARGET_WON,
}

OUTCOME_SCHEMA = pa.schema(
    [("record_key", pa.string()), ("action", pa.string()), ("changes", pa.string()), ("error", pa.string())]
)
"""Per-record outcomes of a plan, as the writer stores them in ``_sync_records``."""


@dataclass(frozen=True)
class Rules:
    """How one sync judges its records."""

    key: tuple[str, ...]
    fields: tuple[str, ...]
    """The written non-key columns."""
    types: dict[str, str]
    """Declared type of every written column."""
    policy: ConflictPolicy = ConflictPolicy.MANUAL
    bidirectional: bool = False
    propagate_deletes: bool = False
    keep_unchanged: bool = False
    """Give unchanged records an outcome (a record set) too."""

    @property
    def columns(self) -> list[str]:
        return [*self.key, *self.fields]

    @property
    def sorted_fields(self) -> list[str]:
        return sorted(self.fields)


@dataclass
class Plan:
    """What one batch does: rows to write, outcomes, conflicts and new baselines (see :func:`classify`)."""

    counts: Counts
    inserts: pa.Table
    """Rows of records missing from the target, to insert."""
    updates: pa.Table
    """Rows of records present on the target, to overwrite (updated, source_won)."""
    sets: dict[RecordAction, pa.Table]
    """Keys of records whose outcome carries nothing but its action (created; unchanged when kept)."""
    outcomes: pa.Table
    """Per-record outcomes (:data:`OUTCOME_SCHEMA`), in batch order."""
    baselines: pa.Table
    """New baselines (:func:`baseline_schema`); those of written rows assume the target stores what was sent."""
    written_baselines: np.ndarray[Any, np.dtype[np.bool_]]
    """Which rows of :attr:`baselines` describe written rows (their target side may need reading back)."""
    replaced: np.ndarray[Any, np.dtype[np.bool_]]
    """Which rows of :attr:`baselines` replace a baseline the record had (the others are new)."""
    agreed: pa.Table
    """Keys of the records whose two sides now agree (open conflicts on them are closed)."""
    seen: pa.Table
    """Keys read from the source (failed rows with a valid key included)."""
    conflicts: list[NewConflict] = field(default_factory=list)
    reverse_rows: list[dict[str, Any]] = field(default_factory=list)
    """Bidirectional: target rows to write back to the source."""
    reverse_deletes: list[dict[str, Any]] = field(default_factory=list)
    """Bidirectional: record keys deleted from the target, to delete from the source (at the end of the run)."""
    samples: list[RecordOutcome] = field(default_factory=list)


def _columns(table: pa.Table, names: list[str], types: dict[str, str]) -> dict[str, Column]:
    return {n: column_of(table.column(n), types.get(n, "string")) for n in names}


def _key_table(columns: dict[str, Column], key: tuple[str, ...], extra: str, n: int) -> pa.Table:
    arrays = [columns[k].typed for k in key]
    return pa.Table.from_arrays([*arrays, pa.array(np.arange(n, dtype=np.int64))], names=[*key, extra])


def _align(
    left: pa.Table, right: pa.Table, key: tuple[str, ...], left_index: str, right_index: str
) -> np.ndarray[Any, Any]:
    """For each row of ``left`` (in ``left_index`` order), the index of its key's row in ``right``, or -1."""
    n = left.num_rows
    out = np.full(n, -1, dtype=np.int64)
    if n == 0 or right.num_rows == 0:
        return out
    left_at = np.asarray(left.column(left_index).to_numpy())
    right_at = np.asarray(right.column(right_index).to_numpy())
    if right.num_rows == n and all(left.column(k).equals(right.column(k)) for k in key):
        # The same keys in the same order (a full read of a target written in key order): no join to run.
        out[left_at] = right_at
        return out
    if _one_integer_key(left, right, key):
        # A single integer key (unique on the right: a primary key) is looked up in the sorted right keys.
        wanted = np.asarray(left.column(key[0]).to_numpy())
        have = np.asarray(right.column(key[0]).to_numpy())
        order = np.argsort(have, kind="stable")
        ordered = have[order]
        at = np.minimum(np.searchsorted(ordered, wanted), len(have) - 1)
        found = ordered[at] == wanted
        out[left_at[found]] = right_at[order[at[found]]]
        return out
    joined = left.join(right, keys=list(key), join_type="inner")
    li = np.asarray(joined.column(left_index).to_numpy())
    ri = np.asarray(joined.column(right_index).to_numpy())
    out[li] = ri
    return out


def _one_integer_key(left: pa.Table, right: pa.Table, key: tuple[str, ...]) -> bool:
    if len(key) != 1:
        return False
    kind = left.schema.field(key[0]).type
    return (
        pa.types.is_integer(kind)
        and right.schema.field(key[0]).type == kind
        and left.column(key[0]).null_count == 0
        and right.column(key[0]).null_count == 0
    )


def _where(table: pa.Table, mask: np.ndarray[Any, Any]) -> pa.Table:
    """The rows of ``table`` where ``mask``: the table itself when every row is (no copy), none without filtering."""
    if mask.all():
        return table
    if not mask.any():
        return table.slice(0, 0)
    return table.filter(pa.array(mask))


def _take(column: Column, where: np.ndarray[Any, Any]) -> Column:
    return column.take(pa.array(where, pa.int64()))


def classify(rules: Rules, batch: pa.Table, current: pa.Table, baselines: pa.Table, *, sample_size: int = 0) -> Plan:
    """Judge every record of ``batch`` (see the module docstring).

    Args:
        rules: the sync's key, fields, types and policies.
        batch: transformed rows: the written columns in their declared types, :data:`ERROR_COLUMN` and
            :data:`KEY_COLUMN`.
        current: target rows of the batch's keys (any order; columns in the types the backend read, normalised
            here to the declared ones).
        baselines: baselines of the batch's keys (:func:`baseline_schema`), any order.
        sample_size: how many outcomes of each action to keep as samples.
    """
    key, fields, types = rules.key, rules.sorted_fields, rules.types
    counts = Counts(processed=batch.num_rows)
    ok_mask = pc.is_null(batch.column(ERROR_COLUMN))
    failed = batch.filter(pc.invert(ok_mask))
    good = batch.filter(ok_mask)
    n = good.num_rows
    counts.add(RecordAction.FAILED, failed.num_rows)
    failed_outcomes = [
        RecordOutcome(json.loads(raw), RecordAction.FAILED, error=err)
        for err, raw in zip(failed.column(ERROR_COLUMN).to_pylist(), failed.column(KEY_COLUMN).to_pylist(), strict=True)
    ]

    src = _columns(good, rules.columns, types)
    tgt_all = _columns(current, rules.columns, types)
    base_keys = _columns(baselines, list(key), types)
    src_keys = _key_table(src, key, "__i", n)
    at_target = _align(src_keys, _key_table(tgt_all, key, "__c", current.num_rows), key, "__i", "__c")
    at_base = _align(src_keys, _key_table(base_keys, key, "__b", baselines.num_rows), key, "__i", "__b")
    present, based = at_target >= 0, at_base >= 0

    source_hashes = FieldHashes({f: src[f] for f in fields}, types, n)
    if not current.num_rows:
        tgt = {c: Column(pa.nulls(n, col.typed.type)) for c, col in src.items()}
    elif current.num_rows == n and bool((at_target == np.arange(n)).all()):
        tgt = tgt_all  # row i of the target is row i of the batch (a full read of a target written in key order)
    else:
        where = np.where(present, at_target, 0)
        tgt = {c: _take(col, where) for c, col in tgt_all.items()}
    target_hashes = FieldHashes.reusing({f: tgt[f] for f in fields}, types, source_hashes, src)
    s_rows, t_rows = source_hashes.rows, target_hashes.rows
    differs = source_hashes.matrix != target_hashes.matrix  # fields x rows
    any_diff = differs.any(axis=0) if len(fields) else np.zeros(n, dtype=bool)

    # Each side against its own part of the baseline.
    b_idx = np.where(based, at_base, 0)
    if baselines.num_rows:
        b_source = np.asarray(baselines.column("source_hash").to_numpy(zero_copy_only=False))[b_idx]
        b_target_raw = baselines.column("target_hash")
        b_target = np.asarray(pc.fill_null(b_target_raw, 0).to_numpy(zero_copy_only=False))[b_idx]
        b_target = np.where(np.asarray(b_target_raw.is_valid())[b_idx], b_target, b_source)
        b_version = np.asarray(pc.fill_null(baselines.column("version"), HASH_VERSION).to_numpy(zero_copy_only=False))
        b_version = b_version[b_idx]
        b_fields, b_fields_ok = binary_to_digests(baselines.column("fields"), len(fields))
        b_tfields, b_tfields_ok = binary_to_digests(baselines.column("target_fields"), len(fields))
        b_tfields = np.where(b_tfields_ok[:, None], b_tfields, b_fields)[b_idx]
        b_tfields_known = (b_tfields_ok | b_fields_ok)[b_idx]
    else:
        b_source = b_target = np.zeros(n, dtype=np.int64)
        b_version = np.full(n, HASH_VERSION)
        b_tfields, b_tfields_known = np.zeros((n, len(fields)), np.uint16), np.zeros(n, bool)
    source_changed = s_rows != b_source
    target_changed = t_rows != b_target
    legacy = np.flatnonzero(based & present & (b_version != HASH_VERSION))
    if len(legacy):
        # Baselines kept from format 2 (their sides differed, so they could not be converted): SHA-256 of JSON.
        source_changed[legacy], target_changed[legacy] = _legacy_changes(rules, good, tgt, legacy, b_source, b_target)

    judged = present & based
    both = judged & source_changed & target_changed
    actions = np.full(n, "", dtype=object)
    created = ~present
    if rules.bidirectional and rules.propagate_deletes:
        created = ~present & ~based
        reverse_deleted = ~present & based
    else:
        reverse_deleted = np.zeros(n, dtype=bool)
    actions[created] = RecordAction.CREATED
    unbased_same = present & ~based & ~any_diff
    unbased_diff = present & ~based & any_diff
    actions[unbased_same] = RecordAction.UNCHANGED
    actions[unbased_diff] = RecordAction.UPDATED
    actions[judged & ~source_changed & ~target_changed] = RecordAction.UNCHANGED
    plain_update = judged & source_changed & ~target_changed
    actions[plain_update] = RecordAction.UPDATED
    edited = judged & ~source_changed & target_changed
    actions[edited] = RecordAction.SOURCE_UPDATED if rules.bidirectional else RecordAction.TARGET_MODIFIED
    settled = both & ~any_diff
    actions[settled] = RecordAction.UNCHANGED
    clash = both & any_diff
    policy = rules.policy
    reverse_won = clash & (policy is ConflictPolicy.TARGET_WINS and rules.bidirectional)
    actions[clash] = _POLICY_ACTION[policy]

    # Which rows are written, and which get a new baseline (and from which side).
    write = created | unbased_diff | plain_update | (clash & (policy is ConflictPolicy.SOURCE_WINS))
    from_target = (edited & rules.bidirectional) | reverse_won
    baseline_new = (created | unbased_same | unbased_diff | plain_update | settled | (edited & rules.bidirectional)) | (
        clash & (policy is not ConflictPolicy.MANUAL)
    )
    # The target side of a new baseline: the values written (the source's), or the target's as they stand.
    target_side_kept = baseline_new & ~write

    for action in set(actions[actions != ""].tolist()):
        counts.add(RecordAction(action), int((actions == action).sum()))

    columns = rules.columns
    inserts = _where(good.select(columns), write & created)
    updates = _where(good.select(columns), write & ~created)

    sets: dict[RecordAction, pa.Table] = {}
    key_columns = good.select(list(key))
    if created.any():
        sets[RecordAction.CREATED] = _where(key_columns, created)
    unchanged = actions == RecordAction.UNCHANGED
    if rules.keep_unchanged and unchanged.any():
        sets[RecordAction.UNCHANGED] = _where(key_columns, unchanged)

    # Per-record outcomes: updated, and every action that is neither a set nor unchanged.
    listed = ~created & ~unchanged & ~reverse_deleted & (actions != "")
    rows = np.flatnonzero(listed)
    outcomes = _outcomes(rules, src, tgt, differs, actions, rows, edited, b_tfields, b_tfields_known, target_hashes)

    conflicts: list[NewConflict] = []
    manual = np.flatnonzero(clash) if policy is ConflictPolicy.MANUAL else np.zeros(0, dtype=np.int64)
    if len(manual):
        conflicts = _conflicts(rules, good, tgt, manual, differs, source_hashes, target_hashes, b_idx, baselines)

    reverse_rows: list[dict[str, Any]] = []
    reverse_src = np.flatnonzero(from_target)
    if len(reverse_src):
        reverse_rows = _rows(tgt, columns, reverse_src)
    reverse_deletes = _rows(src, list(key), np.flatnonzero(reverse_deleted), display_values=True)

    new_baselines, written_flags = _baselines(
        rules, src, source_hashes, target_hashes, baseline_new, write, target_side_kept, from_target
    )
    replaced = based[baseline_new]
    all_outcomes = _with_failed(failed_outcomes, outcomes)
    samples = _samples(rules, sets, all_outcomes, sample_size)
    agreed = _where(good.select(list(key)), baseline_new)
    return Plan(
        counts=counts,
        inserts=inserts,
        updates=updates,
        sets=sets,
        outcomes=all_outcomes,
        baselines=new_baselines,
        written_baselines=written_flags,
        replaced=replaced,
        agreed=agreed,
        seen=batch_keys(batch, key),
        conflicts=conflicts,
        reverse_rows=reverse_rows,
        reverse_deletes=reverse_deletes,
        samples=samples,
    )


def _legacy_changes(
    rules: Rules,
    good: pa.Table,
    tgt: dict[str, Column],
    rows: np.ndarray[Any, Any],
    b_source: np.ndarray[Any, Any],
    b_target: np.ndarray[Any, Any],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    fields = list(rules.fields)
    take = pa.array(rows, pa.int64())
    source_rows = good.select(fields).take(take).to_pylist()
    target_cols = {f: tgt[f].take(take) for f in fields}
    target_rows = [
        {
            f: (c.text[i].as_py() if c.text is not None and c.text[i].is_valid else c.typed[i].as_py())
            for f, c in target_cols.items()
        }
        for i in range(len(rows))
    ]
    s = np.array([values_hash(normalise_row(r, rules.types, fields)) for r in source_rows], dtype=np.int64)
    t = np.array([values_hash(normalise_row(r, rules.types, fields)) for r in target_rows], dtype=np.int64)
    return s != b_source[rows], t != b_target[rows]


def _outcomes(
    rules: Rules,
    src: dict[str, Column],
    tgt: dict[str, Column],
    differs: np.ndarray[Any, Any],
    actions: np.ndarray[Any, Any],
    rows: np.ndarray[Any, Any],
    edited: np.ndarray[Any, Any],
    b_tfields: np.ndarray[Any, Any],
    b_tfields_known: np.ndarray[Any, Any],
    target_hashes: FieldHashes,
) -> pa.Table:
    """Outcome rows of the records at ``rows`` (in batch order) with their field-level changes.

    Changes are ``[target, source]`` of the fields where the two differ; for a record edited on the target
    only, ``[before, target]`` of the fields the target changed since the baseline (the source's value stands
    for the value before: the source did not change).
    """
    fields = rules.sorted_fields
    ordered = list(rules.fields)  # the written order, as changes always listed them
    order = [fields.index(f) for f in ordered]
    if not len(rows):
        return OUTCOME_SCHEMA.empty_table()
    take = pa.array(rows, pa.int64())
    keys = render.record_keys(list(rules.key), [src[k].take(take) for k in rules.key], len(rows))
    flags = differs[:, rows][order] if len(fields) else np.zeros((0, len(rows)), dtype=bool)
    was_edited = edited[rows]
    if was_edited.any() and len(fields):
        digests = (target_hashes.matrix[:, rows] & np.uint64(0xFFFF)).astype(np.uint16).T
        edited_fields = (digests != b_tfields[rows]).T[order]
        known = b_tfields_known[rows]
        use = was_edited & known & edited_fields.any(axis=0)
        flags = np.where(use[None, :], edited_fields, flags)
    before = [tgt[f].take(take) for f in ordered]
    after = [src[f].take(take) for f in ordered]
    # An edited record shows [before, target]: the source's value, then the target's.
    if was_edited.any():
        mask = pa.array(was_edited)
        before, after = (
            [_choose(mask, a, b) for a, b in zip(after, before, strict=True)],
            [_choose(mask, b, a) for a, b in zip(after, before, strict=True)],
        )
    text = render.changes(ordered, before, after, flags)
    return pa.table(
        {
            "record_key": keys,
            "action": pa.array(actions[rows].astype(str), pa.string()),
            "changes": text,
            "error": pa.nulls(len(rows), pa.string()),
        },
        schema=OUTCOME_SCHEMA,
    )


def _choose(mask: pa.Array, yes: Column, no: Column) -> Column:
    """Values of ``yes`` where ``mask``, else of ``no`` (both of the same declared type)."""
    typed = pc.if_else(mask, yes.typed, no.typed)
    if yes.text is None and no.text is None:
        return Column(typed)
    empty = pa.nulls(len(mask), pa.string())
    text = pc.if_else(mask, yes.text if yes.text is not None else empty, no.text if no.text is not None else empty)
    return Column(typed, text)


def _conflicts(
    rules: Rules,
    good: pa.Table,
    tgt: dict[str, Column],
    rows: np.ndarray[Any, Any],
    differs: np.ndarray[Any, Any],
    source_hashes: FieldHashes,
    target_hashes: FieldHashes,
    b_idx: np.ndarray[Any, Any],
    baselines: pa.Table,
) -> list[NewConflict]:
    """The conflicts of the records at ``rows`` (both sides changed, to different values; policy manual).

    The baseline keeps no values, only 2-byte digests of each field: a field one side left as it was has
    that side's value as its baseline value; a field both sides changed has no known baseline value.
    """
    fields = rules.sorted_fields
    b_fields, _ = binary_to_digests(baselines.column("fields"), len(fields))
    b_tfields, t_ok = binary_to_digests(baselines.column("target_fields"), len(fields))
    b_tfields = np.where(t_ok[:, None], b_tfields, b_fields)
    key_types = [rules.types.get(k, "string") for k in rules.key]
    source_rows = good.select(rules.columns).take(pa.array(rows, pa.int64())).to_pylist()
    target_rows = _rows(tgt, rules.columns, rows)
    out = []
    for j, i in enumerate(rows):
        row, before = source_rows[j], target_rows[j]
        key_values = [row[k] for k in rules.key]
        target_values = normalise_row(before, rules.types, fields)
        source_values = normalise_row(row, rules.types, fields)
        s_dig = (source_hashes.matrix[:, i] & np.uint64(0xFFFF)).astype(np.uint16)
        t_dig = (target_hashes.matrix[:, i] & np.uint64(0xFFFF)).astype(np.uint16)
        baseline_values: dict[str, Any] = {}
        for fi, f in enumerate(fields):
            if s_dig[fi] == b_fields[b_idx[i], fi]:
                baseline_values[f] = source_values[f]
            elif t_dig[fi] == b_tfields[b_idx[i], fi]:
                baseline_values[f] = target_values[f]
        differing = [f for f in rules.fields if differs[fields.index(f), i]]
        out.append(
            NewConflict(
                key_hash(key_values, key_types),
                {k: display(v) for k, v in zip(rules.key, key_values, strict=True)},
                dict(row),
                target_values,
                baseline_values,
                differing,
                dict(rules.types),
            )
        )
    return out


def _rows(
    columns: dict[str, Column], names: list[str], rows: np.ndarray[Any, Any], *, display_values: bool = False
) -> list[dict[str, Any]]:
    """Rows at ``rows`` as dicts (text of values that do not fit their type kept as text)."""
    if not len(rows):
        return []
    take = pa.array(rows, pa.int64())
    values = {}
    for name in names:
        col = columns[name].take(take)
        typed = col.typed.to_pylist()
        if col.text is not None:
            text = col.text.to_pylist()
            typed = [t if t is not None else v for v, t in zip(typed, text, strict=True)]
        values[name] = [display(v) for v in typed] if display_values else typed
    return [{n: values[n][i] for n in names} for i in range(len(rows))]


def _baselines(
    rules: Rules,
    src: dict[str, Column],
    source_hashes: FieldHashes,
    target_hashes: FieldHashes,
    new: np.ndarray[Any, Any],
    write: np.ndarray[Any, Any],
    target_kept: np.ndarray[Any, Any],
    from_target: np.ndarray[Any, Any],
) -> tuple[pa.Table, np.ndarray[Any, Any]]:
    """The new baselines: the source side from the source's values (the target's, for a bidirectional write-back),
    the target side from the values written, or the target's as they stand when nothing is written."""
    rows = np.flatnonzero(new)
    s_rows, t_rows = source_hashes.rows[rows], target_hashes.rows[rows]
    s_dig, t_dig = source_hashes.digests(rows), target_hashes.digests(rows)
    from_target, target_kept = from_target[rows], target_kept[rows]
    source_hash = np.where(from_target, t_rows, s_rows)
    source_digests = np.where(from_target[:, None], t_dig, s_dig)
    target_hash = np.where(target_kept, t_rows, s_rows)
    target_digests = np.where(target_kept[:, None], t_dig, s_dig)
    same = target_hash == source_hash
    take = pa.array(rows, pa.int64())
    arrays: list[pa.Array] = [src[k].typed.take(take) for k in rules.key]
    arrays += [
        pa.array(source_hash, pa.int64()),
        pa.array(target_hash, pa.int64(), mask=same),
        digests_to_binary(source_digests),
        pc.if_else(pa.array(same), pa.scalar(None, pa.binary()), digests_to_binary(target_digests)),
        pa.array(np.full(len(rows), HASH_VERSION, dtype=np.int16)),
    ]
    names = [*rules.key, *BASELINE_FIELDS]
    return pa.Table.from_arrays(arrays, names=names), write[rows]


def batch_keys(batch: pa.Table, key: tuple[str, ...] | list[str]) -> pa.Table:
    """Keys present in a batch (failed rows' too, when their key itself is valid)."""
    keys = batch.select(list(key))
    valid = None
    for name in key:
        mask = pc.is_valid(keys.column(name))
        valid = mask if valid is None else pc.and_(valid, mask)
    return keys.filter(valid) if valid is not None and keys.num_rows else keys


def _with_failed(failed: list[RecordOutcome], outcomes: pa.Table) -> pa.Table:
    if not failed:
        return outcomes
    rows = pa.table(
        {
            "record_key": [
                json.dumps(o.key, ensure_ascii=False, separators=(",", ":"), default=display) for o in failed
            ],
            "action": [RecordAction.FAILED.value] * len(failed),
            "changes": pa.nulls(len(failed), pa.string()),
            "error": [o.error for o in failed],
        },
        schema=OUTCOME_SCHEMA,
    )
    return pa.concat_tables([rows, outcomes])


def _samples(rules: Rules, sets: dict[RecordAction, pa.Table], outcomes: pa.Table, size: int) -> list[RecordOutcome]:
    """Up to ``size`` outcomes of each action, for the run's samples."""
    if size <= 0:
        return []
    out: list[RecordOutcome] = []
    for action, keys in sets.items():
        for row in keys.slice(0, size).to_pylist():
            out.append(RecordOutcome({k: display(row[k]) for k in rules.key}, action))
    actions = outcomes.column("action")
    for action in pc.unique(actions).to_pylist():
        picked = outcomes.filter(pc.equal(actions, action)).slice(0, size)
        for row in picked.to_pylist():
            changes = json.loads(row["changes"]) if row["changes"] else {}
            out.append(RecordOutcome(json.loads(row["record_key"]), RecordAction(action), changes, row["error"]))
    return out


__all__ = ["OUTCOME_SCHEMA", "Plan", "Rules", "baseline_schema", "batch_keys", "classify"]
