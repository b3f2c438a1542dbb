"""Transform: map staged source batches to the target schema; bad records fail alone, with a reason."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.config.models import SyncConfig
from sync_pipelines.connectors.rowhash import row_hashes
from sync_pipelines.connectors.values import arrow_type, display
from sync_pipelines.engine.manifest import BatchFile, Manifest, RunOptions
from sync_pipelines.engine.progress import Progress
from sync_pipelines.engine.staging import batch_name, prepare_dir, read_batch, write_batch
from sync_pipelines.errors import RunCancelled

ERROR_COLUMN = "__error"
KEY_COLUMN = "__key"


def target_types(config: SyncConfig, source_types: dict[str, str]) -> dict[str, str]:
    """Declared type per target column: the mapping's `type`, else the source column's own type."""
    if not config.mapping:
        return dict(source_types)
    out: dict[str, str] = {}
    for target, spec in config.mapping.items():
        if spec.type:
            out[target] = spec.type
        elif spec.constant is not None:
            out[target] = _type_of_value(spec.constant)
        else:
            out[target] = source_types.get(config.source_column(target) or target, "string")
    return out


def _type_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


class _DuplicateTracker:
    """Finds keys seen earlier in the run.

    A full read is ordered by key, so only the previous batch's last key matters (constant memory). An
    incremental read is ordered by cursor; there one 64-bit word per record is kept: the key itself for one
    integer column, else the key's row hash (:func:`~sync_pipelines.connectors.rowhash.row_hashes` over the
    key columns in their declared types). The words are kept in sorted runs, a new run merged into the one
    before it while that one is at most twice its size: a batch is looked up with one binary search per run
    (a few runs), and each word is merged about log2(records / batch) times, instead of every batch
    re-sorting everything seen before it.
    """

    def __init__(self, ordered_by_key: bool):
        self.ordered_by_key = ordered_by_key
        self.last_key: tuple[Any, ...] | None = None
        self._runs: list[np.ndarray[Any, np.dtype[np.int64]]] = []

    def seen_before(self, keys: dict[str, pa.Array], types: dict[str, str]) -> list[int]:
        """Positions of the batch's ``keys`` (its valid rows' key columns: none null, none repeated in the
        batch) seen in an earlier batch; from now on they are seen."""
        columns = list(keys.values())
        if not columns or not len(columns[0]):
            return []
        if self.ordered_by_key:
            hits = self.earlier_in_columns(columns)
            if hits is None:
                tuples = list(zip(*[c.to_pylist() for c in columns], strict=True))
                hits = sorted(self.earlier(tuples))
            return hits
        return np.flatnonzero(self._seen(_key_words(keys, types))).tolist()

    def earlier_in_columns(self, key_columns: list[pa.Array]) -> list[int] | None:
        """Indexes of a key-ordered batch's keys (given as columns, none null) equal to the previous batch's
        last key, compared by Arrow; None: not a key-ordered read, or a key Arrow cannot compare so (left
        to :meth:`earlier`)."""
        if not self.ordered_by_key or not key_columns or not len(key_columns[0]):
            return None
        try:
            hits: list[int] = []
            if self.last_key is not None:
                same = pc.equal(key_columns[0], pa.scalar(self.last_key[0], key_columns[0].type))
                for column, value in zip(key_columns[1:], self.last_key[1:], strict=True):
                    same = pc.and_(same, pc.equal(column, pa.scalar(value, column.type)))
                hits = np.flatnonzero(np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)).tolist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        self.last_key = tuple(column[-1].as_py() for column in key_columns)
        return hits

    def earlier(self, keys: list[tuple[Any, ...]]) -> set[int]:
        """Indexes of a key-ordered batch's ``keys`` equal to the previous batch's last key."""
        assert self.ordered_by_key, "an incremental read's keys are looked up by seen_before"
        if not keys:
            return set()
        hits = {i for i, k in enumerate(keys) if k == self.last_key}
        self.last_key = keys[-1]
        return hits

    def _seen(self, words: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Where ``words`` were kept before; then keeps the others."""
        order = np.argsort(words)
        ordered = words[order]  # sorted needles: the binary searches walk each run in one direction
        found = np.zeros(len(words), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, ordered), len(run) - 1)
            found |= run[at] == ordered
        new = ordered[~found]
        if len(new):
            self._runs.append(new)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last, before = self._runs.pop(), self._runs.pop()
            merged = np.concatenate([before, last])
            merged.sort(kind="stable")  # two sorted runs: one merge pass
            self._runs.append(merged)
        out = np.empty(len(words), dtype=bool)
        out[order] = found
        return out


def _key_words(keys: dict[str, pa.Array], types: dict[str, str]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """One 64-bit word per key: the value of a single 64-bit integer column, else the key's row hash."""
    if len(keys) == 1:
        (column,) = keys.values()
        if pa.types.is_int64(column.type):
            return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.asarray(row_hashes(pa.table(keys), types, list(keys)), dtype=np.int64)


def cast_column(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, dict[int, Any]]:
    """Cast ``values`` to ``target``; returns the cast array and ``{row: raw value}`` of failures."""
    try:
        return _cast(values, target), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
        pass
    good: list[Any] = []
    bad: dict[int, Any] = {}
    for i, raw in enumerate(values.to_pylist()):
        if raw is None:
            good.append(None)
            continue
        try:
            good.append(_cast(pa.array([raw]), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError, ValueError):
            bad[i] = raw
            good.append(None)
    return pa.array(good, type=target), bad


def _cast(values: pa.Array, target: pa.DataType) -> pa.Array:
    if values.type == target:
        return values
    if pa.types.is_string(target) and not pa.types.is_string(values.type):
        return pc.cast(values, pa.string())
    if pa.types.is_decimal(target) and pa.types.is_integer(values.type):
        values = pc.cast(values, pa.decimal128(38, target.scale))
    if pa.types.is_decimal(target) and pa.types.is_string(values.type):
        values = pc.cast(pc.utf8_trim_whitespace(values), pa.decimal128(38, target.scale))
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(values.type) and values.type.tz != target.tz:
        # Instants are kept in UTC; a naive value is read as UTC wall time.
        micros = pc.cast(values, pa.timestamp("us", tz=values.type.tz)).cast(pa.int64())
        return micros.cast(target)
    if pa.types.is_boolean(target) and pa.types.is_string(values.type):
        values = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    return pc.cast(values, target, safe=True)


def map_batch(
    config: SyncConfig, table: pa.Table, types: dict[str, str], duplicates: _DuplicateTracker
) -> tuple[pa.Table, int]:
    """Map one source batch to the target columns plus ``__error`` and ``__key``; returns it and its failures."""
    n = table.num_rows
    errors: dict[int, list[str]] = {}
    """Reasons by row, for the failing rows only."""
    columns: dict[str, pa.Array] = {}
    targets = list(config.mapping) if config.mapping else list(table.column_names)
    for target in targets:
        spec = config.mapping.get(target) if config.mapping else None
        wanted = arrow_type(types[target])
        if spec is not None and spec.constant is not None:
            raw: pa.Array = pa.array([spec.constant] * n)
        else:
            source = config.source_column(target) or target
            raw = table.column(source).combine_chunks()
        cast, bad = cast_column(raw, wanted)
        for row, value in bad.items():
            errors.setdefault(row, []).append(f"{target}: cannot convert {_short(value)} to {types[target]}")
        if spec is not None and spec.default is not None:
            default, bad_default = cast_column(pa.array([spec.default]), wanted)
            if bad_default:
                raise ValueError(f"{config.name}: mapping.{target}.default: cannot convert {spec.default!r}")
            cast = pc.fill_null(cast, default[0])
        columns[target] = cast
    key_names = list(config.target.key)
    raw_key_columns = [table.column(config.source_column(k) or k) for k in key_names]
    valid_rows: list[int] | None = None
    """The rows whose keys are looked up among earlier batches' (None: every row)."""
    if key_names and not errors and _keys_unique(columns, key_names):
        # No conversion failed, no key is null and none repeats within the batch: only earlier batches can clash.
        valid_keys = {k: columns[k] for k in key_names}
    else:
        key_lists = [columns[k].to_pylist() for k in key_names]
        keys = list(zip(*key_lists, strict=True)) if key_lists else [()] * n
        seen_in_batch: set[tuple[Any, ...]] = set()
        valid_rows = []
        for i, key in enumerate(keys):
            nulls = [k for k, v in zip(key_names, key, strict=True) if v is None]
            if nulls and i not in errors:
                errors[i] = [f"key {', '.join(nulls)} is null"]
            if i in errors:
                continue
            if key in seen_in_batch:
                errors[i] = ["duplicate key within the run"]
                continue
            seen_in_batch.add(key)
            valid_rows.append(i)
        taken = pa.array(valid_rows, pa.int64())
        valid_keys = {k: columns[k].take(taken) for k in key_names} if key_names else {}
    for pos in duplicates.seen_before(valid_keys, types):
        errors.setdefault(pos if valid_rows is None else valid_rows[pos], []).append("duplicate key within the run")
    error_column = (
        pa.array(["; ".join(errors[i]) if i in errors else None for i in range(n)], pa.string())
        if errors
        else pa.nulls(n, pa.string())
    )
    key_texts = _key_texts(key_names, raw_key_columns, n)
    key_column = key_texts if isinstance(key_texts, pa.Array) else pa.array(key_texts, pa.string())
    out = pa.table({**columns, ERROR_COLUMN: error_column, KEY_COLUMN: key_column})
    return out, len(errors)


def _keys_unique(columns: dict[str, pa.Array], key_names: list[str]) -> bool:
    """Whether no key value is null and no key repeats within the batch (checked column-wise)."""
    key_columns = [columns[k] for k in key_names]
    if any(c.null_count for c in key_columns):
        return False
    n = len(key_columns[0])
    if len(key_columns) == 1:
        key = key_columns[0]
        if pa.types.is_integer(key.type):
            values = np.asarray(key.to_numpy(zero_copy_only=False))
            if bool((values[1:] > values[:-1]).all()):
                return True  # ascending (a full read's batch, in key order): told in one pass, without hashing
        return bool(pc.count_distinct(key).as_py() == n)
    grouped = pa.table(dict(zip(key_names, key_columns, strict=True))).group_by(key_names).aggregate([])
    return bool(grouped.num_rows == n)


def _json_string(values: pa.Array) -> pa.Array | None:
    """JSON string literals of a text column (as ``json.dumps(..., ensure_ascii=False)`` writes them), or None
    when some value holds a control character (left to ``json.dumps``)."""
    if pc.any(pc.match_substring_regex(values, "[\\x00-\\x1f]")).as_py():
        return None
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _key_texts(key_names: list[str], raw_columns: list[pa.ChunkedArray], n: int) -> list[str] | pa.Array:
    """Each record's key as JSON (the ``__key`` column), column-wise for integer and text keys."""
    if not raw_columns:
        return ["{}"] * n
    parts: list[Any] = []
    for i, (name, column) in enumerate(zip(key_names, raw_columns, strict=True)):
        values = column.combine_chunks()
        if pa.types.is_integer(values.type):
            rendered: pa.Array | None = pc.cast(values, pa.string())
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            rendered = _json_string(pc.cast(values, pa.string()))
        else:
            rendered = None
        if rendered is None:
            return [
                json.dumps(
                    dict(zip(key_names, (display(v) for v in raw), strict=True)), default=str, ensure_ascii=False
                )
                for raw in zip(*[c.to_pylist() for c in raw_columns], strict=True)
            ]
        parts += [
            ("{" if i == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ": ",
            pc.fill_null(rendered, "null"),
        ]
    return pc.binary_join_element_wise(*parts, "}", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def transformed_manifest(manifest: Manifest, types: dict[str, str]) -> Manifest:
    """The (still empty) transform manifest following an extract manifest: same run, state and plan."""
    return Manifest(
        sync=manifest.sync,
        run_id=manifest.run_id,
        stage="transform",
        full_sync=manifest.full_sync,
        watermark_before=manifest.watermark_before,
        state_version=manifest.state_version,
        types=types,
        final_position=manifest.final_position,
        plan=manifest.plan,
    )


def transform(config: SyncConfig, manifest: Manifest, options: RunOptions) -> Manifest:
    """Map each staged batch to the target schema; failing records are kept with their reason."""
    folder = prepare_dir(options.staging_dir(config.name) / "transform")
    types = target_types(config, manifest.types)
    out = transformed_manifest(manifest, types)
    duplicates = _DuplicateTracker(ordered_by_key=manifest.full_sync)
    progress = Progress(config.name, "transform", options.logger, total=manifest.rows)
    for batch in manifest.batches:
        if options.stop_requested.is_set():
            raise RunCancelled(f"sync {config.name}: stopped while transforming (batch {batch.index})")
        mapped, failed = map_batch(config, read_batch(batch.path), types, duplicates)
        path = folder / batch_name(batch.index)
        write_batch(mapped, path)
        out.batches.append(BatchFile(batch.index, str(path), mapped.num_rows, failed, batch.position))
        out.rows += mapped.num_rows
        out.failed += failed
        progress.batch_done(mapped.num_rows)
    options.logger.info("%s: transformed %d rows, %d failed", config.name, out.rows, out.failed)
    return out
