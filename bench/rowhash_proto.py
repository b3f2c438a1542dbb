"""A numpy prototype of the v3 row hash, to time hashing beside the write floor of bookkeeping format v3.

Each column is hashed to 64 bits per row, vectorised: fixed-width columns (integers, timestamps,
decimal128) through a splitmix64 mix of their values; strings by folding their length and their
8-byte words, read straight from Arrow's offsets and data buffers, through splitmix64. NULLs hash
to a tag of their own. The row hash folds the column hashes in column order; the per-field hashes
keep 2 bytes of each non-key column. Only the cost matters here: the values are not a stable format
(the engine's own row hash is ``sync_pipelines.engine.rowhash``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_NULL_TAG = np.uint64(0x6A09E667F3BCC909)
_MUL1, _MUL2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of ``x + gamma``, element-wise, wrapping on uint64 (``x`` is left alone)."""
    z = x + _GAMMA
    z ^= z >> _S30
    z *= _MUL1
    z ^= z >> _S27
    z *= _MUL2
    z ^= z >> _S31
    return z


def _fixed(array: pa.Array, width: int) -> np.ndarray:
    """The values of a fixed-width array as uint64 (decimal128: its two halves folded)."""
    data = array.buffers()[1]
    assert data is not None
    if width == 16:
        halves = np.frombuffer(data, dtype=np.uint64, count=2 * (array.offset + len(array)))[2 * array.offset :]
        return splitmix64(halves[0::2]) ^ halves[1::2]
    kind = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}[width]
    return np.frombuffer(data, dtype=kind, count=array.offset + len(array))[array.offset :].astype(np.uint64)


def _strings(array: pa.Array) -> np.ndarray:
    """Per row: the length, then each 8-byte word of the string (zero-padded), folded by splitmix64.

    Word ``k`` of every row is gathered at once from the data buffer through the offsets, so the loop
    runs once per 8 bytes of the longest string, not once per row.
    """
    offsets_buf, data_buf = array.buffers()[1], array.buffers()[2]
    assert offsets_buf is not None
    large = pa.types.is_large_string(array.type)
    offsets = np.frombuffer(offsets_buf, dtype=np.int64 if large else np.int32, count=array.offset + len(array) + 1)
    offsets = offsets[array.offset :].astype(np.int64)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashed = splitmix64(lengths.astype(np.uint64))
    longest = int(lengths.max()) if len(lengths) else 0
    if longest == 0:
        return hashed
    assert data_buf is not None
    end = int(offsets[-1])
    padded = np.zeros(end + 8, dtype=np.uint8)
    padded[:end] = np.frombuffer(data_buf, dtype=np.uint8, count=end)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 8)
    for k in range(0, longest, 8):
        word = np.ascontiguousarray(windows[np.minimum(starts + k, end)]).view(np.uint64).ravel()
        remaining = np.clip(lengths - k, 0, 8).astype(np.uint64)
        keep = np.where(remaining >= 8, _ALL, (np.uint64(1) << (remaining * np.uint64(8))) - np.uint64(1))
        hashed = splitmix64(hashed ^ (word & keep))
    return hashed


def column_hashes(array: pa.Array) -> np.ndarray:
    """A 64-bit hash per value of one Arrow column (NULL: a tag of its own)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        hashed = _strings(array)
    else:
        width = array.type.bit_width // 8
        hashed = splitmix64(_fixed(array, width))
    if array.null_count:
        hashed[np.asarray(array.is_null())] = _NULL_TAG
    return hashed


def row_hashes(table: pa.Table, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The row hash (uint64) of every row, and 2 bytes per non-key field (a ``rows x 2*fields`` uint8 array)."""
    row = np.zeros(table.num_rows, dtype=np.uint64)
    fields = []
    for name in table.column_names:
        hashed = column_hashes(table.column(name))
        row = splitmix64(row ^ hashed)
        if name not in key:
            fields.append(hashed.astype(np.uint16))
    packed = np.stack(fields, axis=1) if fields else np.zeros((table.num_rows, 0), dtype=np.uint16)
    return row, packed.view(np.uint8)
