"""Stable 64-bit hashes of records and of their fields, computed column by column over Arrow (format 3).

A baseline remembers what both sides of a record looked like when they last agreed as hashes, so the
hashes must mean the same thing in every release: they are built here from a documented encoding, never
from a library's own ``hash`` (polars' and DuckDB's may change between versions). :data:`HASH_VERSION` is
stored beside every baseline.

**Canonical value.** Each field is first normalised to its declared type (``integer`` int64,
``float`` float64, ``boolean``, ``date`` date32, ``datetime`` timestamp[us] naive UTC, ``decimal(p,s)``
decimal128 at the declared scale, ``string`` UTF-8); a value the type cannot hold (a text typed into a
number column on the target) keeps its text. The canonical 64-bit word of a value is then:

==============  ==========================================================================
integer         the two's complement bits
float           the IEEE-754 bits, ``-0.0`` as ``0.0`` and every NaN as one NaN
boolean         0 or 1
date            days since 1970-01-01
datetime        microseconds since 1970-01-01 00:00:00 UTC
decimal         ``mix(low 64 bits) ^ mix(high 64 bits ^ C)`` of the unscaled 128-bit integer
string / text   :func:`bytes_hash` of the UTF-8 bytes (text kept by a failed normalisation is
                salted apart from a declared string)
NULL            the constant :data:`NULL_WORD` (before the field's salt)
==============  ==========================================================================

**Field hash.** ``mix(word ^ salt)``, where ``salt`` is the first 8 bytes (little-endian) of the
BLAKE2b-64 digest of ``"<field name>\\x1f<declared type>"``, and ``mix`` is the splitmix64 finaliser
(constants ``0x9E3779B97F4A7C15``, ``0xBF58476D1CE4E5B9``, ``0x94D049BB133111EB``; shifts 30, 27, 31).

**Row hash.** Starting from ``h = ROW_SEED``, for each field in the order of sorted field names:
``h = mix(h * 0x100000001B3 ^ field hash)`` (wrapping 64-bit arithmetic), read as a signed ``bigint``.

**Field digests.** The low 16 bits of each field hash, in sorted field-name order, two bytes each
(little-endian): enough for a conflict to say which fields each side changed, for 2 bytes a field.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync_pipelines.config.models import decimal_parts

HASH_VERSION = 3
"""The format of the hashes built here; stored with every baseline (2 was SHA-256 of JSON, 1 its hex text)."""

U64 = np.uint64
_GOLDEN = U64(0x9E3779B97F4A7C15)
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)
_ROW_PRIME = U64(0x100000001B3)
ROW_SEED = U64(0x736563726F6E7973)
NULL_WORD = U64(0x6E756C6C6E756C6C)
_LENGTH_SALT = U64(0xC2B2AE3D27D4EB4F)
_DECIMAL_HIGH = U64(0x165667B19E3779F9)
_TEXT_SALT = U64(0x27D4EB2F165667C5)

Hashes = np.ndarray[Any, np.dtype[np.uint64]]


def mix(x: Hashes) -> Hashes:
    """The splitmix64 finaliser over an array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        return _scrambled(x + _GOLDEN)


def _mixed(z: Hashes) -> Hashes:
    """:func:`mix` of ``z`` in place (``z`` is overwritten)."""
    with np.errstate(over="ignore"):
        z += _GOLDEN
    return _scrambled(z)


def _scrambled(z: Hashes) -> Hashes:
    """splitmix64's shifts and multiplications, in place: no array allocated per step."""
    with np.errstate(over="ignore"):
        z ^= z >> U64(30)
        z *= _M1
        z ^= z >> U64(27)
        z *= _M2
        z ^= z >> U64(31)
    return z


def _salt(name: str, type_name: str) -> np.uint64:
    digest = hashlib.blake2b(f"{name}\x1f{type_name}".encode(), digest_size=8).digest()
    return U64(int.from_bytes(digest, "little"))


def bytes_hash(array: pa.Array) -> Hashes:
    """A 64-bit hash of each value's bytes of a string or binary array (NULLs hash as empty).

    Each value is cut into little-endian 8-byte words (the last one zero-padded); word ``i`` contributes
    ``mix(word ^ mix(i))``, the contributions are summed (mod 2**64) and the sum is mixed with the length.
    Everything is done on the whole array's buffers at once.
    """
    if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
        offsets_type: Any = np.int64
    else:
        offsets_type = np.int32
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=U64)
    buffers = array.buffers()
    raw_offsets = np.frombuffer(buffers[1], dtype=offsets_type)[array.offset : array.offset + n + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    if array.null_count:
        valid = np.asarray(array.is_valid())
        lengths = np.where(valid, np.diff(raw_offsets), 0)
    else:
        lengths = np.diff(raw_offsets)
    starts = raw_offsets[:-1]
    nwords = (lengths + 7) // 8
    longest = int(nwords.max()) if n else 0
    if longest <= _COLUMN_WORDS:
        sums = _word_sums_by_column(data, starts, lengths, nwords, longest)
    else:
        sums = _word_sums_flat(data, starts, lengths, nwords)
    with np.errstate(over="ignore"):
        return mix(sums ^ (lengths.astype(U64) * _LENGTH_SALT))


_COLUMN_WORDS = 32
"""Strings of at most this many 8-byte words are hashed a word position at a time over every row."""


def _word_sums_by_column(
    data: np.ndarray[Any, Any], starts: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any], nwords: Any, longest: int
) -> Hashes:
    """The sum of word contributions of each value, taking word ``k`` of every value that has one at once
    (short strings).

    The data is laid over aligned 64-bit words once; a value's word ``k`` at byte ``o`` is the high bytes of
    aligned word ``o // 8`` joined to the low bytes of the next one (one gather per word position, each
    aligned word gathered once for both of its halves). Values are taken longest first, so that those with a
    word ``k`` are a prefix of that order; only a value's last word is masked to its length.
    """
    n = len(starts)
    sums = np.zeros(n, dtype=U64)
    if longest == 0:
        return sums
    end = int((starts + lengths).max())
    aligned = np.zeros(end // 8 + longest + 2, dtype="<u8")
    aligned.view(np.uint8)[:end] = data[:end]
    words = aligned.astype(U64, copy=False)
    # Sorted as bytes where the counts fit one (at most _COLUMN_WORDS words): numpy sorts bytes by radix.
    shortfall = (longest - nwords).astype(np.uint8 if longest < 256 else np.int64)
    order = None if bool((nwords == longest).all()) else np.argsort(shortfall, kind="stable")
    if order is not None:
        starts, lengths, nwords = starts[order], lengths[order], nwords[order]
    # Values with more than k words: the first ``having[k]`` of the order.
    having = np.searchsorted(-nwords, -np.arange(longest), side="left") if order is not None else np.full(longest, n)
    first = starts >> 3
    shift = ((starts & 7) * 8).astype(U64)
    back = U64(63) - shift
    low = words[first]
    with np.errstate(over="ignore"):
        for k in range(longest):
            m = int(having[k])
            high = words[first[:m] + (k + 1)]
            word = low[:m] >> shift[:m]
            word |= (high << back[:m]) << U64(1)  # two shifts: a shift by 64 is not defined
            low = high
            last = np.flatnonzero(nwords[:m] == k + 1)
            if len(last):
                kept = (lengths[last] - 8 * k).astype(U64) * U64(8)
                word[last] &= np.where(kept >= U64(64), ~U64(0), (U64(1) << (kept & U64(63))) - U64(1))
            word ^= mix(np.full(1, k, dtype=U64))
            sums[:m] += _mixed(word)
    if order is None:
        return sums
    out = np.empty(n, dtype=U64)
    out[order] = sums
    return out


def _word_sums_flat(
    data: np.ndarray[Any, Any], starts: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any], nwords: Any
) -> Hashes:
    """The same sums over one flat array of every word (long strings: work follows the total length)."""
    n = len(starts)
    word_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nwords, out=word_offsets[1:])
    total_words = int(word_offsets[-1])
    sums = np.zeros(n, dtype=U64)
    if total_words:
        padded = np.zeros(total_words * 8, dtype=np.uint8)
        owner = np.repeat(np.arange(n), lengths)
        if len(owner):
            within = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            padded[word_offsets[owner] * 8 + within] = data[starts[owner] + within]
        words = padded.view("<u8").astype(U64, copy=False)
        word_owner = np.repeat(np.arange(n), nwords)
        index = (np.arange(total_words, dtype=np.int64) - word_offsets[word_owner]).astype(U64)
        contributions = mix(words ^ mix(index))
        has_words = nwords > 0
        positions = word_offsets[:-1][has_words]
        with np.errstate(over="ignore"):
            sums[has_words] = np.add.reduceat(contributions, positions)
    return sums


def _words(array: pa.Array, type_name: str) -> Hashes:
    """The canonical 64-bit word of each value of ``array`` (of its declared type; see the module docstring)."""
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        words = bytes_hash(array)
        return words if type_name == "string" else words ^ _TEXT_SALT
    if pa.types.is_boolean(kind):
        return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=U64)
    if pa.types.is_decimal(kind):
        filled = pc.fill_null(array, pa.scalar(0, kind)) if array.null_count else array
        halves = np.frombuffer(filled.buffers()[1], dtype="<u8")[filled.offset * 2 : (filled.offset + len(filled)) * 2]
        halves = halves.astype(U64, copy=False).reshape(-1, 2)
        return mix(halves[:, 0]) ^ mix(halves[:, 1] ^ _DECIMAL_HIGH)
    if pa.types.is_floating(kind):
        values = np.asarray(pc.fill_null(pc.cast(array, pa.float64()), 0.0).to_numpy(zero_copy_only=False))
        values = np.where(values == 0.0, 0.0, values)  # -0.0 as 0.0
        values = np.where(np.isnan(values), np.float64("nan"), values)
        return values.view(np.uint64).copy()
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_integer(kind):
        if pa.types.is_date(kind):
            array = array.cast(pa.int32())
        elif pa.types.is_timestamp(kind):
            array = array.cast(pa.int64())
        filled = pc.fill_null(array, 0) if array.null_count else array
        return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64).view(U64)
    raise TypeError(f"no canonical encoding of Arrow type {kind} (declared {type_name})")


def field_hashes(array: pa.Array | pa.ChunkedArray, name: str, type_name: str) -> Hashes:
    """The field hash of each value of column ``name`` (declared ``type_name``) as uint64."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if len(array) > 1 and array.null_count == len(array):  # every value NULL (no target row): one hash for all
        return np.full(len(array), field_hashes(array.slice(0, 1), name, type_name)[0], dtype=U64)
    words = _words(array, type_name)
    if array.null_count:
        words = np.where(np.asarray(array.is_valid()), words, NULL_WORD)
    return mix(words ^ _salt(name, type_name))


def combine(per_field: Sequence[Hashes], n: int) -> Hashes:
    """The row hash from the field hashes of each field, given in sorted field-name order."""
    h = np.full(n, ROW_SEED, dtype=U64)
    with np.errstate(over="ignore"):
        for fh in per_field:
            h = mix((h * _ROW_PRIME) ^ fh)
    return h


class Column:
    """One field's values in its declared type: ``typed`` (NULL where a value does not fit the type) and, when
    some do not, ``text`` holding the text of exactly those values (NULL elsewhere)."""

    def __init__(self, typed: pa.Array, text: pa.Array | None = None):
        self.typed = typed
        self.text = text if text is not None and text.null_count < len(text) else None

    @property
    def unfit(self) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
        """Where a value kept its text, or None when every value fits."""
        return None if self.text is None else np.asarray(self.text.is_valid())

    def hashes(self, name: str, declared: str) -> Hashes:
        """The field hash of each value (see the module docstring)."""
        out = field_hashes(self.typed, name, declared)
        if self.text is not None:
            text = mix(
                np.where(np.asarray(self.text.is_valid()), bytes_hash(self.text) ^ _TEXT_SALT, NULL_WORD)
                ^ _salt(name, declared)
            )
            out = np.where(self.unfit, text, out)  # type: ignore[arg-type]
        return out

    def take(self, indices: pa.Array) -> Column:
        return Column(self.typed.take(indices), None if self.text is None else self.text.take(indices))


def column_of(values: pa.Array | pa.ChunkedArray, declared: str) -> Column:
    """``values`` as a :class:`Column` of declared type ``declared``.

    A column already of its type is kept; another is cast when every value converts exactly, else
    normalised value by value (:func:`~sync_pipelines.connectors.fingerprint.normalise`), the values that do
    not fit keeping their text.
    """
    from sync_pipelines.connectors.values import arrow_type

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    wanted = arrow_type(declared)
    kind = values.type
    if kind == wanted:
        return Column(values)
    if pa.types.is_timestamp(kind) and pa.types.is_timestamp(wanted) and kind.tz is not None:
        return Column(pc.cast(values, pa.timestamp(kind.unit)).cast(wanted))  # UTC instants, made naive
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)) or declared == "string":
        try:
            return Column(pc.cast(values, wanted, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    return _value_by_value(values.to_pylist(), declared, wanted)


def _value_by_value(values: list[Any], declared: str, wanted: pa.DataType) -> Column:
    from sync_pipelines.connectors.fingerprint import normalise

    typed: list[Any] = []
    text: list[str | None] = []
    for value in values:
        python = _python_value(normalise(value, declared), declared)
        try:
            pa.array([python], wanted)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            typed.append(None)
            text.append(str(python))
            continue
        typed.append(python)
        text.append(None)
    return Column(pa.array(typed, wanted), pa.array(text, pa.string()))


class FieldHashes:
    """The field hashes of some rows, one row of :attr:`matrix` per field in sorted name order, and row hashes."""

    def __init__(self, columns: Mapping[str, Column], types: Mapping[str, str], n: int):
        self.fields = sorted(columns)
        self.n = n
        self.matrix = np.empty((len(self.fields), n), dtype=U64)
        for i, name in enumerate(self.fields):
            self.matrix[i] = columns[name].hashes(name, types.get(name, "string"))

    @classmethod
    def reusing(
        cls, columns: Mapping[str, Column], types: Mapping[str, str], known: FieldHashes, of: Mapping[str, Column]
    ) -> FieldHashes:
        """The field hashes of ``columns``, copied from ``known`` (the hashes of ``of``, the same rows) where a
        value equals the known one: equal values of one Arrow type have one canonical word, so they hash alike.
        Only the other values are hashed (a full read of an unchanged target hashes nothing)."""
        out = cls.__new__(cls)
        out.fields = sorted(columns)
        out.n = known.n
        out.matrix = np.empty((len(out.fields), out.n), dtype=U64)
        for i, name in enumerate(out.fields):
            column, declared = columns[name], types.get(name, "string")
            # A column of NULLs (no target row) is hashed at once rather than compared value by value.
            nulls = column.text is None and column.typed.null_count == len(column.typed)
            same = _same_values(column, of[name]) if name in known.fields and name in of and not nulls else None
            if same is None or not same.any():
                out.matrix[i] = column.hashes(name, declared)
                continue
            out.matrix[i] = known.matrix[known.fields.index(name)]
            if not same.all():
                rest = np.flatnonzero(~same)
                out.matrix[i, rest] = column.take(pa.array(rest, pa.int64())).hashes(name, declared)
        return out

    @functools.cached_property
    def rows(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Each row's hash as a signed 64-bit integer (as stored in a ``bigint``)."""
        return combine(list(self.matrix), self.n).view(np.int64)

    def digests(self, rows: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, np.dtype[np.uint16]]:
        """The 16-bit field digests of every row (or of ``rows``), shape (rows, fields)."""
        matrix = self.matrix if rows is None else self.matrix[:, rows]
        return (matrix & U64(0xFFFF)).astype(np.uint16).T.copy()


def _same_values(a: Column, b: Column) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    """Where ``a`` and ``b`` hold the same value (NULL and NULL alike); None when they cannot be compared as typed
    values (another Arrow type, or a value kept as text)."""
    if a.text is not None or b.text is not None or a.typed.type != b.typed.type or len(a.typed) != len(b.typed):
        return None
    try:
        equal = pc.equal(a.typed, b.typed)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return None
    same = np.asarray(equal.to_numpy(zero_copy_only=False)) if equal.null_count == 0 else None
    if same is None:
        both_null = np.asarray(a.typed.is_null()) & np.asarray(b.typed.is_null())
        same = np.asarray(pc.fill_null(equal, False).to_numpy(zero_copy_only=False)) | both_null
    return same.astype(bool, copy=False)


def row_hashes(table: pa.Table, types: Mapping[str, str], fields: Sequence[str]) -> np.ndarray[Any, Any]:
    """The row hash of every row of ``table`` over ``fields`` (each normalised to its declared type)."""
    columns = {f: column_of(table.column(f), types.get(f, "string")) for f in fields}
    return FieldHashes(columns, types, table.num_rows).rows


def digests_to_binary(digests: np.ndarray[Any, np.dtype[np.uint16]]) -> pa.Array:
    """Field digests (rows x fields) as one fixed-width binary value per row (little-endian uint16s)."""
    rows, fields = digests.shape
    width = 2 * fields
    if rows == 0:
        return pa.array([], pa.binary())
    data = np.ascontiguousarray(digests.astype("<u2")).view(np.uint8).reshape(-1)
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32) if width else np.zeros(rows + 1, np.int32)
    return pa.Array.from_buffers(pa.binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def binary_to_digests(array: pa.Array | pa.ChunkedArray, fields: int) -> tuple[np.ndarray[Any, Any], Any]:
    """The inverse of :func:`digests_to_binary`: (digests rows x fields, valid mask); a NULL or short value
    reads as all zeros and invalid."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    n = len(array)
    out = np.zeros((n, fields), dtype=np.uint16)
    if n == 0 or fields == 0:
        return out, np.asarray(array.is_valid()) if n else np.zeros(0, bool)
    lengths = np.asarray(pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False))
    valid = np.asarray(array.is_valid()) & (lengths == 2 * fields)
    if valid.any():
        good = array.filter(pa.array(valid))
        data = b"".join(v.as_py() for v in good) if len(good) < 64 else _concat_binary(good)
        out[valid] = np.frombuffer(data, dtype="<u2").reshape(-1, fields)
    return out, valid


def _concat_binary(array: pa.Array) -> bytes:
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    return bytes(memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])])


def _python_value(value: Any, declared: str) -> Any:
    """A normalised value (see ``fingerprint.normalise``) back as a Python value of its declared type."""
    import datetime as dt
    from decimal import Decimal

    if value is None or not isinstance(value, str):
        return value
    try:
        if declared == "datetime":
            return dt.datetime.fromisoformat(value)
        if declared == "date":
            return dt.date.fromisoformat(value)
        if declared == "float":
            return float(value)
        if decimal_parts(declared) is not None:
            return Decimal(value)
    except (ValueError, ArithmeticError):
        return value
    return value


__all__ = [
    "HASH_VERSION",
    "Column",
    "FieldHashes",
    "binary_to_digests",
    "bytes_hash",
    "column_of",
    "combine",
    "digests_to_binary",
    "field_hashes",
    "mix",
    "row_hashes",
]
