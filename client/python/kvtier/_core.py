"""What the synchronous and the asyncio client share: options, request building and
checking, the Repair/Promote stream collector and the geometry cache. No I/O here."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from typing import Any, Optional, Sequence, Union

import grpc
import numpy as np

from kvtier import arrays
from kvtier.datatypes import (Geometry, PromoteResult, RepairResult, RetryPolicy, ReturnMode,
                              ScoringMode, Selector, StageTimings, int_field)
from kvtier.errors import InvalidArgument, ProtocolError
from kvtier.v1 import kvtier_pb2 as pb

DEFAULT_TARGET = "unix://kvtier-data/kvtierd.sock"
DEFAULT_TENANT = "default"  # the server's name for the empty tenant (docs/API.md)
_GEOMETRY_CACHE = 4096

# The server's Repair/Promote payload chunks carry at most 4 MiB of keys + values
# (docs/API.md); their positions and framing come on top.
SERVER_PAYLOAD_CHUNK_BYTES = 4 << 20
# What a chunk message holds besides its K+V bytes: positions (up to 10 bytes each),
# importance (4 bytes each), the session id and the framing. 1 MiB covers every chunk whose
# rows take at least 40 bytes of K+V per chunk row.
MESSAGE_OVERHEAD_BYTES = 1 << 20
MIN_MESSAGE_BYTES = SERVER_PAYLOAD_CHUNK_BYTES + MESSAGE_OVERHEAD_BYTES
# AsyncClient: arrays of at least this many bytes are converted, split and reassembled in a
# worker thread (asyncio.to_thread) so that the event loop keeps running.
THREAD_BYTES = 1 << 20


def normalize_target(target: str) -> str:
    """As the C++ SDK: "unix://rel/path" -> "unix:rel/path" (relative to the working
    directory), "/abs/path" -> "unix:/abs/path"; anything else is passed to gRPC."""
    if not target:
        raise InvalidArgument("target: empty")
    if target.startswith("unix://") and len(target) > 7 and target[7] != "/":
        return "unix:" + target[7:]
    if target.startswith("/"):
        return "unix:" + target
    return target


def channel_options(max_message_bytes: int) -> list:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Reconnect soon after the daemon comes (back): the retry loop's backoff, not gRPC's
        # default 1 s..120 s reconnect backoff, should decide how long a caller waits.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


class Options:
    """Settings shared by Client and AsyncClient (see Client's docstring)."""

    def __init__(self, target: str, timeout: float, retries: Optional[int],
                 retry_policy: Optional[RetryPolicy], offload_chunk_bytes: int,
                 max_message_bytes: int) -> None:
        if timeout is None or timeout <= 0:
            raise InvalidArgument("timeout: must be positive seconds")
        if retry_policy is None:
            retry_policy = RetryPolicy() if retries is None else RetryPolicy(
                max_attempts=int(retries) + 1)
        elif retries is not None:
            raise InvalidArgument("retries and retry_policy: give one of them")
        max_message_bytes = int_field(max_message_bytes, "max_message_bytes")
        offload_chunk_bytes = int_field(offload_chunk_bytes, "offload_chunk_bytes", "int64")
        if max_message_bytes < MIN_MESSAGE_BYTES:
            raise InvalidArgument(
                f"max_message_bytes: {max_message_bytes} is below {MIN_MESSAGE_BYTES} (the "
                f"server's {SERVER_PAYLOAD_CHUNK_BYTES}-byte payload chunks plus "
                f"{MESSAGE_OVERHEAD_BYTES} bytes of positions and framing)")
        if offload_chunk_bytes <= 0:
            raise InvalidArgument("offload_chunk_bytes: must be positive")
        if offload_chunk_bytes > max_message_bytes - MESSAGE_OVERHEAD_BYTES:
            raise InvalidArgument(
                f"offload_chunk_bytes: {offload_chunk_bytes} is above max_message_bytes "
                f"({max_message_bytes}) minus {MESSAGE_OVERHEAD_BYTES} bytes of positions "
                "and framing: its chunks could not be sent")
        self.target = target
        self.grpc_target = normalize_target(target)
        self.timeout = float(timeout)
        self.retry = retry_policy
        self.offload_chunk_bytes = int(offload_chunk_bytes)
        self.max_message_bytes = int(max_message_bytes)

    def deadline(self, timeout: Optional[float]) -> float:
        """Monotonic deadline of a call (its own ``timeout`` or the client's)."""
        t = self.timeout if timeout is None else float(timeout)
        if t <= 0:
            raise InvalidArgument("timeout: must be positive seconds")
        return time.monotonic() + t


def nbytes(*arrays_: Any) -> int:
    """Bytes of the given arrays/tensors, without converting them; an object that does not
    say (a nested list) counts as large, since converting it is the slow part."""
    total = 0
    for x in arrays_:
        if x is None:
            continue
        n = getattr(x, "nbytes", None)
        if n is None and hasattr(x, "element_size") and hasattr(x, "numel"):
            n = x.element_size() * x.numel()  # torch
        total += THREAD_BYTES if not isinstance(n, (int, np.integer)) else int(n)
    return total


def remaining(deadline: float) -> float:
    # gRPC needs a positive timeout; an expired deadline fails the attempt at once.
    return max(deadline - time.monotonic(), 1e-3)


def next_wait(policy: RetryPolicy, attempt: int, deadline: float,
              code: Optional[grpc.StatusCode], may_retry: bool) -> Optional[float]:
    """Seconds to wait before attempt ``attempt + 1``, or None when the last error stands:
    not UNAVAILABLE, the call is not safe to repeat, attempts used up, or the wait would
    reach the deadline."""
    if code != grpc.StatusCode.UNAVAILABLE or not may_retry or attempt >= policy.max_attempts:
        return None
    wait = policy.backoff(attempt)
    if time.monotonic() + wait >= deadline:
        return None
    return wait


class GeometryCache:
    """session id -> Geometry of the sessions this client opened or looked up (LRU)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: "collections.OrderedDict[str, Geometry]" = collections.OrderedDict()

    def get(self, session_id: str) -> Optional[Geometry]:
        with self._lock:
            g = self._items.get(session_id)
            if g is not None:
                self._items.move_to_end(session_id)
            return g

    def put(self, session_id: str, geometry: Geometry) -> None:
        with self._lock:
            self._items[session_id] = geometry
            self._items.move_to_end(session_id)
            while len(self._items) > _GEOMETRY_CACHE:
                self._items.popitem(last=False)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._items.pop(session_id, None)


def session_id_arg(session_id: Any) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidArgument(f"session_id: a non-empty string, got {session_id!r}")
    return session_id


def open_request(geometry: Geometry, session_id: Optional[str], ttl_seconds: Optional[int],
                 tenant: Optional[str]) -> pb.OpenSessionRequest:
    if not isinstance(geometry, Geometry):
        raise InvalidArgument(f"geometry: a kvtier.Geometry, got {type(geometry).__name__}")
    ttl = 0 if ttl_seconds is None else int_field(ttl_seconds, "ttl_seconds", "uint32")
    return pb.OpenSessionRequest(geometry=geometry.to_proto(), tenant=tenant or "",
                                 ttl_seconds=ttl, session_id=session_id or "")


def adoptable(request: pb.OpenSessionRequest, info: Any) -> bool:
    """Whether the existing session ``info`` (a SessionInfo) is the one ``request`` would
    have opened, so that an open_session retry answered ALREADY_EXISTS may return it: the
    same tenant ("default" for none), the same geometry as the server stores it (scoring
    layers filled in and sorted) and, when the request named one, the same TTL."""
    if info.tenant != (request.tenant or DEFAULT_TENANT):
        return False
    if request.ttl_seconds and info.ttl_seconds != request.ttl_seconds:
        return False
    g = pb.Geometry()
    g.CopyFrom(request.geometry)
    layers = sorted(g.scoring_layers) or list(range(g.num_layers))
    del g.scoring_layers[:]
    g.scoring_layers.extend(layers)
    return Geometry.from_proto(g) == info.geometry


def offload_chunker(options: Options, session_id: str, geometry: Geometry, positions: Any,
                    keys: Any, values: Any, layer_begin: int,
                    importance: Any) -> arrays.OffloadChunker:
    """Checks an offload batch against the session geometry (nothing is sent on error) and
    returns its chunker."""
    pos = arrays.positions_array(positions)
    k = arrays.kv_array(keys, "keys", geometry, None, pos.size)
    layers = k.shape[0]
    if not isinstance(layer_begin, (int, np.integer)) or layer_begin < 0 or layers < 1 or \
            layer_begin + layers > geometry.num_layers:
        raise InvalidArgument(
            f"keys: layers [layer_begin={layer_begin}, layer_begin + keys.shape[0]="
            f"{layer_begin + layers}) is not a non-empty range inside "
            f"[0, num_layers={geometry.num_layers})")
    if geometry.index_only:
        if values is not None:
            raise InvalidArgument("values: must be None in an index-only session")
        scoring = set(geometry.effective_scoring_layers)
        missing = [layer for layer in range(layer_begin, layer_begin + layers)
                   if layer not in scoring]
        if missing:
            raise InvalidArgument(f"layer_begin: layer {missing[0]} is not a scoring layer of "
                                  "this index-only session")
        v = None
    else:
        if values is None:
            raise InvalidArgument(
                f"values: required (shape [layers={layers}, rows={pos.size}, kv_heads="
                f"{geometry.num_kv_heads}, head_dim={geometry.head_dim}]) unless the "
                "session is index-only")
        v = arrays.kv_array(values, "values", geometry, layers, pos.size)
    imp = None if importance is None else arrays.importance_array(importance, pos.size)
    return arrays.OffloadChunker(session_id, pos, int(layer_begin), k, v, imp,
                                 options.offload_chunk_bytes)


def new_request_id() -> str:
    return "py-" + uuid.uuid4().hex


def repair_request(session_id: str, geometry: Geometry, queries: Any, budget: int,
                   lse: Any, request_id: Optional[str], return_mode: Any, selector: Any,
                   burst_left: Optional[int], burst_right: Optional[int], seed: int,
                   scoring_mode: Any, query_dtype: Optional[str]) -> pb.RepairRequest:
    sel = Selector.parse(selector)
    req = pb.RepairRequest(
        session_id=session_id,
        request_id=new_request_id() if request_id is None else request_id,
        budget=int_field(budget, "budget"),
        selector=int(sel), seed=int_field(seed, "seed", "uint64"),
        return_mode=int(ReturnMode.parse(return_mode)),
        scoring_mode=int(ScoringMode.parse(scoring_mode)))
    if burst_left is not None:
        req.burst_left = int_field(burst_left, "burst_left")
    if burst_right is not None:
        req.burst_right = int_field(burst_right, "burst_right")
    if queries is None:
        if sel in (Selector.UNSPECIFIED, Selector.REPAIRKV):
            raise InvalidArgument("queries: required for the repairkv selector")
        if lse is not None:
            raise InvalidArgument("lse: given without queries")
        return req
    q, qdtype = arrays.queries_array(queries, geometry, query_dtype)
    s, hq, t, _ = q.shape
    req.signal.num_tokens = t
    req.signal.query_dtype = qdtype
    req.signal.queries = q.tobytes()
    if lse is not None:
        lse_arr = arrays.float32_array(lse, "lse", ("scoring_layers", "q_heads", "tokens"),
                                       (s, hq, t))
        req.signal.lse_active = lse_arr.tobytes()
    return req


def promote_request(session_id: str, positions: Any, return_mode: Any) -> pb.PromoteRequest:
    pos = arrays.positions_array(positions)
    return pb.PromoteRequest(session_id=session_id, positions=pos.tolist(),
                             return_mode=int(ReturnMode.parse(return_mode)))


def release_request(session_id: str, positions: Any, whole_session: bool) -> pb.ReleaseRequest:
    if whole_session:
        if positions is not None:
            raise InvalidArgument("positions: must be None with whole_session=True")
        return pb.ReleaseRequest(session_id=session_id, whole_session=True)
    if positions is None:
        raise InvalidArgument("positions: give the rows to release, or whole_session=True")
    pos = arrays.positions_array(positions)
    return pb.ReleaseRequest(session_id=session_id, positions=pos.tolist())


class StreamCollector:
    """Collects one Repair or Promote response stream: exactly one ``summary`` first, then
    payload ``chunk``s, then one ``done``. ProtocolError when the stream breaks that shape
    or the payload does not match the summary and the geometry."""

    def __init__(self, kind: str, geometry: Geometry) -> None:
        self.kind = kind  # "repair" or "promote"
        self.geometry = geometry
        self.summary: Any = None
        self.assembler: Optional[arrays.PayloadAssembler] = None
        self.done: Any = None
        self.received = 0  # messages
        self.bytes_received = 0

    def feed(self, message: Any) -> None:
        self.received += 1
        self.bytes_received += message.ByteSize()
        which = message.WhichOneof("kind")
        if which == "summary":
            if self.summary is not None:
                raise ProtocolError("stream: summary is not the first message"
                                    if self.done is None else "stream: summary after done")
            self.summary = message.summary
            order = arrays.int64s(self.summary.chosen if self.kind == "repair"
                                  else self.summary.positions)
            self.order = order
            self.assembler = arrays.PayloadAssembler(
                self.geometry, order, self.summary.payload_chunks, self.summary.payload_bytes)
        elif which == "chunk":
            if self.summary is None:
                raise ProtocolError("stream: payload chunk before the summary")
            if self.done is not None:
                raise ProtocolError("stream: payload chunk after done")
            self.assembler.add(message.chunk)
        elif which == "done":
            if self.summary is None:
                raise ProtocolError("stream: done before the summary")
            if self.done is not None:
                raise ProtocolError("stream: done sent twice")
            self.assembler.finish()
            self.done = message.done
        else:
            raise ProtocolError("stream: message with no kind set")

    def check_complete(self) -> None:
        if self.summary is None:
            raise ProtocolError("stream: ended with no summary")
        if self.done is None:
            raise ProtocolError("stream: ended without done")

    def _timings(self) -> StageTimings:
        t = StageTimings.from_proto(self.done.timings)
        if self.kind == "repair":
            # score and select come in the summary; done repeats every stage, but keep the
            # summary's where done left them out.
            st = self.summary.timings
            for name in ("score_seconds", "select_seconds", "first_pass_seconds",
                         "rescore_seconds"):
                if getattr(t, name) == 0.0:
                    setattr(t, name, getattr(st, name))
        return t

    def repair_result(self, request_id: str) -> RepairResult:
        s = self.summary
        return RepairResult(
            chosen=self.order, sorted=arrays.int64s(s.sorted), scores=arrays.float64s(s.scores),
            candidates=s.candidates, replayed=s.replayed, scorer=s.scorer,
            scoring_mode=ScoringMode(s.scoring_mode), rescored=s.rescored,
            payload_chunks=s.payload_chunks, payload_bytes=s.payload_bytes,
            keys=self.assembler.keys, values=self.assembler.values, timings=self._timings(),
            request_id=request_id, bytes_received=self.bytes_received, summary=s)

    def promote_result(self) -> PromoteResult:
        s = self.summary
        return PromoteResult(
            positions=self.order, keys=self.assembler.keys, values=self.assembler.values,
            payload_chunks=s.payload_chunks, payload_bytes=s.payload_bytes,
            timings=self._timings(), bytes_received=self.bytes_received, summary=s)


def tenant_arg(tenant: Optional[str]) -> str:
    return tenant or ""


PositionsLike = Union[Sequence[int], np.ndarray]
