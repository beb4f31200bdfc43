"""numpy in and out: dtype handling, shape checks, wire bytes, offload chunking and payload
reassembly. Mirrors the C++ SDK (client/src/offload_chunker.cc, payload_assembler.cc).

bfloat16: with ml_dtypes installed (``pip install kvtier[bfloat16]``) bfloat16 arrays are
``ml_dtypes.bfloat16``; without it they are ``np.uint16`` arrays holding the raw bits (the
top 16 bits of the float32), and the session's dtype says they are bfloat16.
``kvtier.BFLOAT16`` is whichever of the two this installation uses.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from kvtier.datatypes import Geometry, dtype_name
from kvtier.errors import InvalidArgument, ProtocolError
from kvtier.v1 import kvtier_pb2 as pb

try:  # optional: the `bfloat16` extra
    import ml_dtypes as _ml_dtypes

    BFLOAT16 = np.dtype(_ml_dtypes.bfloat16)
    HAVE_ML_DTYPES = True
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None
    BFLOAT16 = np.dtype("<u2")
    HAVE_ML_DTYPES = False

__all__ = ["BFLOAT16", "HAVE_ML_DTYPES", "numpy_dtype", "to_numpy", "DEFAULT_CHUNK_BYTES"]

# The C++ SDK's default: offload chunks of at most 4 MiB of keys + values.
DEFAULT_CHUNK_BYTES = 4 << 20

_NUMPY = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype arrays of session dtype ``dtype`` come back as."""
    name = dtype_name(dtype)
    return BFLOAT16 if name == "bfloat16" else _NUMPY[name]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def to_numpy(x: Any, name: str = "array") -> Tuple[np.ndarray, Optional[str]]:
    """Converts ``x`` (numpy array, torch tensor, or anything np.asarray takes) to a numpy
    array without changing its values. Returns the array and, when the input says so itself
    (a torch.bfloat16 tensor, an ml_dtypes.bfloat16 array), its dtype name; None otherwise.

    torch tensors (no torch import needed: recognized by type) go through
    ``.detach().cpu()``; a bfloat16 tensor goes through float32 (exact) and comes back as
    bfloat16 bits, since numpy has no native bfloat16."""
    if isinstance(x, np.ndarray):
        arr = x
    elif _is_torch(x):
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            bits = (np.ascontiguousarray(t.float().numpy(), dtype="<f4").view("<u4") >> 16)
            arr = bits.astype("<u2")
            return (arr.view(BFLOAT16) if HAVE_ML_DTYPES else arr), "bfloat16"
        arr = t.numpy()
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:  # noqa: BLE001
            raise InvalidArgument(f"{name}: cannot convert {type(x).__name__} to an array: {e}")
    if HAVE_ML_DTYPES and arr.dtype == BFLOAT16:
        return arr, "bfloat16"
    return arr, None


def _shape_text(names: Sequence[str], dims: Sequence[Optional[int]]) -> str:
    return "[" + ", ".join(n if d is None else f"{n}={d}" for n, d in zip(names, dims)) + "]"


def _check_shape(arr: np.ndarray, name: str, names: Sequence[str],
                 dims: Sequence[Optional[int]], dtype_text: str) -> None:
    """INVALID_ARGUMENT unless arr.shape matches ``dims`` (None: any size)."""
    ok = arr.ndim == len(dims) and all(d is None or d == s for d, s in zip(dims, arr.shape))
    if not ok:
        raise InvalidArgument(f"{name}: expected shape {_shape_text(names, dims)} of "
                              f"{dtype_text}, got shape {list(arr.shape)}")


def kv_array(x: Any, name: str, geometry: Geometry, layers: Optional[int],
             rows: Optional[int]) -> np.ndarray:
    """Checks a keys/values batch: ``[layers, rows, num_kv_heads, head_dim]`` of the session
    dtype (bfloat16: ml_dtypes.bfloat16, uint16 bits, or a torch.bfloat16 tensor). Returns a
    C-contiguous little-endian array of the wire dtype. InvalidArgument naming ``name``."""
    arr, stated = to_numpy(x, name)
    want = geometry.dtype
    names = ("layers", "rows", "kv_heads", "head_dim")
    dims = (layers, rows, geometry.num_kv_heads, geometry.head_dim)
    _check_dtype(arr, stated, name, want, names, dims)
    _check_shape(arr, name, names, dims, want)
    return _wire(arr, want)


def _check_dtype(arr: np.ndarray, stated: Optional[str], name: str, want: str,
                 names: Sequence[str], dims: Sequence[Optional[int]],
                 label: str = "the session dtype") -> None:
    """INVALID_ARGUMENT unless arr holds ``want``; ``label`` says where ``want`` comes
    from in the message ("the session dtype", "the query dtype")."""
    got = stated or arr.dtype.name
    if want == "bfloat16":
        ok = stated == "bfloat16" or arr.dtype.kind == "u" and arr.dtype.itemsize == 2
    else:
        ok = (stated is None and arr.dtype.kind == "f"
              and arr.dtype.itemsize == _NUMPY[want].itemsize)
    if not ok:
        hint = (" (bfloat16: ml_dtypes.bfloat16, uint16 bits or torch.bfloat16)"
                if want == "bfloat16" else "")
        raise InvalidArgument(
            f"{name}: expected {_shape_text(names, dims)} of {label} {want}{hint}, "
            f"got {got} with shape {list(arr.shape)}")


def _wire(arr: np.ndarray, dtype: str) -> np.ndarray:
    """C-contiguous, little-endian, of the wire dtype's bit pattern."""
    if dtype == "bfloat16":
        target = BFLOAT16 if arr.dtype == BFLOAT16 else np.dtype("<u2")
    else:
        target = _NUMPY[dtype]
    if arr.dtype != target:
        arr = arr.astype(target)  # byte order only: the kind and size were checked
    return np.ascontiguousarray(arr)


def positions_array(x: Any, name: str = "positions", rows: Optional[int] = None) -> np.ndarray:
    """1-D int64 positions, >= 0 and unique. InvalidArgument naming ``name``."""
    arr, _ = to_numpy(x, name)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise InvalidArgument(f"{name}: expected a 1-D array of integers, got "
                              f"{arr.dtype.name} with shape {list(arr.shape)}")
    arr = arr.astype("<i8", copy=False)
    if arr.size == 0:
        raise InvalidArgument(f"{name}: empty")
    if rows is not None and arr.size != rows:
        raise InvalidArgument(f"{name}: {arr.size} positions, expected {rows} (one per row)")
    if (arr < 0).any():
        i = int(np.argmax(arr < 0))
        raise InvalidArgument(f"{name}[{i}]: {int(arr[i])} is negative")
    if np.unique(arr).size != arr.size:
        raise InvalidArgument(f"{name}: positions are not unique")
    return np.ascontiguousarray(arr)


def float32_array(x: Any, name: str, names: Sequence[str],
                  dims: Sequence[Optional[int]]) -> np.ndarray:
    """A float32 array of the given shape (lse_active). Only float32 is accepted: float16 and
    bfloat16 are refused rather than widened (the caller has the float32 it computed), and
    float64 rather than rounded."""
    arr, stated = to_numpy(x, name)
    if stated is None and arr.dtype.kind == "f" and arr.dtype.itemsize == 4:
        pass
    else:
        raise InvalidArgument(f"{name}: expected {_shape_text(names, dims)} of float32, got "
                              f"{stated or arr.dtype.name} with shape {list(arr.shape)}")
    _check_shape(arr, name, names, dims, "float32")
    return np.ascontiguousarray(arr.astype("<f4", copy=False))


def importance_array(x: Any, rows: int) -> np.ndarray:
    """One float32 importance per row (any real dtype is converted)."""
    arr, _ = to_numpy(x, "importance")
    if arr.ndim != 1 or arr.shape[0] != rows or arr.dtype.kind not in "fiu":
        raise InvalidArgument(f"importance: expected shape [rows={rows}] of float32, got "
                              f"{arr.dtype.name} with shape {list(arr.shape)}")
    return np.ascontiguousarray(arr.astype("<f4"))


_QUERY_DTYPES = {"float32": pb.DTYPE_FLOAT32, "float16": pb.DTYPE_FLOAT16,
                 "bfloat16": pb.DTYPE_BFLOAT16}


def queries_array(x: Any, geometry: Geometry,
                  query_dtype: Optional[str]) -> Tuple[np.ndarray, int]:
    """Post-RoPE queries ``[len(scoring_layers), num_q_heads, num_tokens, head_dim]`` of
    float32, float16 or bfloat16 (uint16 bits need ``query_dtype="bfloat16"``). Returns the
    wire array and the proto DType."""
    arr, stated = to_numpy(x, "queries")
    names = ("scoring_layers", "q_heads", "tokens", "head_dim")
    dims = (len(geometry.effective_scoring_layers), geometry.num_q_heads, None,
            geometry.head_dim)
    if query_dtype is not None:
        want = dtype_name(query_dtype, "query_dtype")
    elif stated is not None:
        want = stated
    elif arr.dtype.kind == "f" and arr.dtype.itemsize in (2, 4):
        want = "float16" if arr.dtype.itemsize == 2 else "float32"
    else:
        raise InvalidArgument(
            f"queries: expected {_shape_text(names, dims)} of float32, float16 or bfloat16, "
            f"got {arr.dtype.name} with shape {list(arr.shape)}"
            + (" (uint16 bits: pass query_dtype='bfloat16')" if arr.dtype.kind == "u" else ""))
    _check_dtype(arr, stated, "queries", want, names, dims, "the query dtype")
    _check_shape(arr, "queries", names, dims, want)
    if arr.shape[2] < 1:
        raise InvalidArgument("queries: num_tokens (axis 2) must be at least 1")
    return _wire(arr, want), _QUERY_DTYPES[want]


class OffloadChunker:
    """Splits a checked batch into OffloadChunk messages of at most ``max_chunk_bytes`` of
    keys + values (as the C++ SDK): whole rows of every layer of the batch when a row fits,
    else also split by layer ranges (a single row-layer larger than the limit goes alone)."""

    def __init__(self, session_id: str, positions: np.ndarray, layer_begin: int,
                 keys: np.ndarray, values: Optional[np.ndarray],
                 importance: Optional[np.ndarray], max_chunk_bytes: int) -> None:
        self.session_id = session_id
        self.positions = positions
        self.layer_begin = layer_begin
        self.keys = keys
        self.values = values
        self.importance = importance
        num_layers = keys.shape[0]
        layer_row = keys[0, 0].nbytes
        kv_layer_row = (1 if values is None else 2) * layer_row
        row_bytes = kv_layer_row * num_layers
        if row_bytes <= max_chunk_bytes:
            self.layers_per_chunk = num_layers
            self.rows_per_chunk = max(1, max_chunk_bytes // row_bytes)
        else:
            self.layers_per_chunk = max(1, max_chunk_bytes // kv_layer_row)
            self.rows_per_chunk = max(1, max_chunk_bytes // (kv_layer_row * self.layers_per_chunk))

    def __iter__(self) -> Iterator[pb.OffloadChunk]:
        num_layers, num_rows = self.keys.shape[0], self.keys.shape[1]
        for l0 in range(0, num_layers, self.layers_per_chunk):
            l1 = min(num_layers, l0 + self.layers_per_chunk)
            for r0 in range(0, num_rows, self.rows_per_chunk):
                r1 = min(num_rows, r0 + self.rows_per_chunk)
                chunk = pb.OffloadChunk(
                    session_id=self.session_id,
                    positions=self.positions[r0:r1].tolist(),
                    layer_begin=self.layer_begin + l0,
                    layer_end=self.layer_begin + l1,
                    keys=self.keys[l0:l1, r0:r1].tobytes())
                if self.values is not None:
                    chunk.values = self.values[l0:l1, r0:r1].tobytes()
                if self.importance is not None:
                    chunk.importance.extend(self.importance[r0:r1].tolist())
                yield chunk

    def __len__(self) -> int:
        num_layers, num_rows = self.keys.shape[0], self.keys.shape[1]
        return (-(-num_layers // self.layers_per_chunk)) * (-(-num_rows // self.rows_per_chunk))


class PayloadAssembler:
    """Reassembles a Repair/Promote stream's payload chunks into
    ``[num_layers, rows, num_kv_heads, head_dim]`` arrays in the announced row order,
    checking chunk positions, layer ranges, sizes and counts. ProtocolError otherwise."""

    def __init__(self, geometry: Geometry, order: np.ndarray, expected_chunks: int,
                 expected_bytes: int) -> None:
        self.geometry = geometry
        self.order = order
        self.expected_chunks = expected_chunks
        self.expected_bytes = expected_bytes
        self.chunks = 0
        self.bytes = 0
        self.index: Dict[int, int] = {}
        for i, p in enumerate(order.tolist()):
            if p in self.index:
                raise ProtocolError(f"summary: position {p} appears twice")
            self.index[p] = i
        if expected_chunks < 0:
            raise ProtocolError(f"summary: payload_chunks {expected_chunks}")
        self.keys: Optional[np.ndarray] = None
        self.values: Optional[np.ndarray] = None
        if expected_chunks == 0 and expected_bytes == 0:
            return  # positions only
        rows = len(order)
        total = 2 * geometry.num_layers * rows * geometry.layer_row_bytes
        if expected_bytes != total:
            raise ProtocolError(f"summary: payload_bytes {expected_bytes} but {rows} rows of "
                                f"this geometry take {total}")
        shape = (geometry.num_layers, rows, geometry.num_kv_heads, geometry.head_dim)
        dtype = numpy_dtype(geometry.dtype)
        self.keys = np.empty(shape, dtype=dtype)
        self.values = np.empty(shape, dtype=dtype)
        self.seen = np.zeros((geometry.num_layers, rows), dtype=bool)

    def add(self, chunk: pb.PayloadChunk) -> None:
        n_chunk = self.chunks
        self.chunks += 1
        if self.chunks > self.expected_chunks or self.keys is None:
            raise ProtocolError(f"payload: more than the announced {self.expected_chunks} chunks")
        g = self.geometry
        lb, le = chunk.layer_begin, chunk.layer_end
        if lb < 0 or le > g.num_layers or lb >= le:
            raise ProtocolError(f"payload chunk {n_chunk}: layer range [{lb}, {le}) outside "
                                f"[0, {g.num_layers})")
        n = len(chunk.positions)
        if n == 0:
            raise ProtocolError(f"payload chunk {n_chunk}: no positions")
        r0 = self.index.get(chunk.positions[0])
        if r0 is None:
            raise ProtocolError(f"payload chunk {n_chunk}: position {chunk.positions[0]} was "
                                "not announced")
        if r0 + n > len(self.order) or not np.array_equal(
                self.order[r0:r0 + n], np.asarray(chunk.positions, dtype=np.int64)):
            raise ProtocolError(f"payload chunk {n_chunk}: positions are not a contiguous run "
                                "of the announced order")
        expected = (le - lb) * n * g.layer_row_bytes
        if len(chunk.keys) != expected or len(chunk.values) != expected:
            raise ProtocolError(f"payload chunk {n_chunk}: keys {len(chunk.keys)} / values "
                                f"{len(chunk.values)} bytes, expected {expected}")
        if self.seen[lb:le, r0:r0 + n].any():
            raise ProtocolError(f"payload chunk {n_chunk}: a row-layer was sent twice")
        self.seen[lb:le, r0:r0 + n] = True
        shape = (le - lb, n, g.num_kv_heads, g.head_dim)
        dtype = self.keys.dtype
        self.keys[lb:le, r0:r0 + n] = np.frombuffer(chunk.keys, dtype=dtype).reshape(shape)
        self.values[lb:le, r0:r0 + n] = np.frombuffer(chunk.values, dtype=dtype).reshape(shape)
        self.bytes += 2 * expected

    def finish(self) -> None:
        if self.chunks != self.expected_chunks:
            raise ProtocolError(f"payload: {self.chunks} chunks received, "
                                f"{self.expected_chunks} announced")
        if self.bytes != self.expected_bytes:
            raise ProtocolError(f"payload: {self.bytes} bytes received, "
                                f"{self.expected_bytes} announced")


def int64s(values: Sequence[int]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64)


def float64s(values: Sequence[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.float64)


