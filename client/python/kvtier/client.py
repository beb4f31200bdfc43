"""kvtier.Client: the synchronous client (one gRPC channel; thread-safe)."""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, TypeVar

import grpc

from kvtier import _core, _health
from kvtier.arrays import DEFAULT_CHUNK_BYTES
from kvtier.datatypes import (Geometry, OffloadResult, PauseResult, PromoteResult,
                              ReleaseResult, RepairResult, RetryPolicy, ReturnMode,
                              ScoringMode, Selector, SessionInfo, Stats)
from kvtier.errors import AlreadyExists, KvtierError, from_rpc_error
from kvtier.v1 import kvtier_pb2 as pb
from kvtier.v1 import kvtier_pb2_grpc as pb_grpc

T = TypeVar("T")

__all__ = ["Client"]


class Client:
    """A connection to one kvtierd.

    ``target``: ``"unix:///abs/path.sock"``, ``"unix://rel/path.sock"`` (relative to the
    working directory), ``"/abs/path.sock"``, ``"host:port"``. ``timeout``: default deadline
    of a call in seconds (a stream's deadline covers the whole stream, retries included);
    every call takes its own ``timeout=``. ``retries``: retries on UNAVAILABLE after the
    first attempt (or pass ``retry_policy=kvtier.RetryPolicy(...)``). ``offload_chunk_bytes``:
    offloads are split into stream chunks of at most this many K+V bytes (4 MiB).
    ``max_message_bytes``: the largest gRPC message sent or received (256 MiB).

    Retries (UNAVAILABLE only, exponential backoff with jitter, never past the deadline)
    happen only where repeating the call is safe:

    - retried: ``offload`` (the whole stream is sent again; re-offloading overwrites),
      ``repair`` (it always carries a request id, generated when none is given, so a repeat
      returns the same selection; with ``request_id=""`` it is not retried), ``promote``,
      ``release`` of positions (idempotent), ``begin_pause``, ``get_session``,
      ``list_sessions``, ``stats``, ``health``, and ``open_session`` (see there);
    - not retried: ``release(whole_session=True)`` (a repeat after a lost response would
      answer NOT_FOUND for a drop that happened);
    - streams are retried only while no response message has been received.

    Errors are :class:`kvtier.KvtierError` subclasses named after the gRPC status
    (``kvtier.NotFound``, ``kvtier.InvalidArgument``, ...). Arrays are checked before
    anything is sent; a mismatch raises ``kvtier.InvalidArgument`` (a ValueError) naming
    the array and its expected shape.

    Thread-safe: calls from many threads share the channel. Use as a context manager or
    call :meth:`close`.
    """

    def __init__(self, target: str = _core.DEFAULT_TARGET, timeout: float = 30.0,
                 retries: Optional[int] = None, *, retry_policy: Optional[RetryPolicy] = None,
                 offload_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 max_message_bytes: int = 256 << 20) -> None:
        self.options = _core.Options(target, timeout, retries, retry_policy,
                                     offload_chunk_bytes, max_message_bytes)
        self.channel = grpc.insecure_channel(
            self.options.grpc_target,
            options=_core.channel_options(self.options.max_message_bytes))
        self.stub = pb_grpc.KvTierStub(self.channel)
        self._health_check = self.channel.unary_unary(
            _health.CHECK_METHOD, request_serializer=_health.encode_request,
            response_deserializer=_health.decode_response)
        self._geometries = _core.GeometryCache()

    # -- plumbing ------------------------------------------------------------------------

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _with_retries(self, attempt: Callable[[float, List[bool]], T], timeout: Optional[float],
                      retry: bool = True, *, deadline: Optional[float] = None) -> T:
        """Runs ``attempt(timeout_seconds, may_retry)`` until it succeeds or fails with an
        error that stands (see _core.next_wait). ``may_retry`` is a one-element list the
        attempt sets to [False] once repeating it would be unsafe. ``deadline`` (monotonic):
        the call's deadline when an earlier step already spent part of ``timeout``."""
        if deadline is None:
            deadline = self.options.deadline(timeout)
        n = 0
        while True:
            n += 1
            may_retry = [retry]
            try:
                return attempt(_core.remaining(deadline), may_retry)
            except grpc.RpcError as e:
                error = from_rpc_error(e)
            except KvtierError as e:
                error = e
            wait = _core.next_wait(self.options.retry, n, deadline, error.code, may_retry[0])
            if wait is None:
                raise error from None
            time.sleep(wait)

    def _unary(self, method: Callable, request: Any, timeout: Optional[float],
               retry: bool = True) -> Any:
        return self._with_retries(lambda t, _: method(request, timeout=t), timeout, retry)

    def _geometry(self, session_id: str, geometry: Optional[Geometry],
                  deadline: float) -> Geometry:
        """``geometry``, the cached one, or GetSession's within the call's ``deadline``."""
        if geometry is not None:
            return geometry
        cached = self._geometries.get(session_id)
        if cached is not None:
            return cached
        return self.get_session(session_id, timeout=_core.remaining(deadline)).geometry

    def _collect(self, kind: str, method: Callable, request: Any, geometry: Geometry,
                 deadline: float, retry: bool) -> _core.StreamCollector:
        def attempt(t: float, may_retry: List[bool]) -> _core.StreamCollector:
            collector = _core.StreamCollector(kind, geometry)
            call = method(request, timeout=t)
            try:
                for message in call:
                    may_retry[0] = False
                    collector.feed(message)
            except KvtierError:
                call.cancel()
                raise
            collector.check_complete()
            return collector

        return self._with_retries(attempt, None, retry, deadline=deadline)

    # -- calls ---------------------------------------------------------------------------

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"
        (NotFound for a service the server does not know).
        Raises Unavailable when the daemon cannot be reached (after the retries)."""
        return self._unary(self._health_check, service, timeout)

    def wait_until_serving(self, timeout: float = 30.0, poll: float = 0.05) -> None:
        """Polls health until it answers SERVING; Unavailable/DeadlineExceeded after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                left = deadline - time.monotonic()
                status = self._with_retries(
                    lambda t, _: self._health_check("", timeout=t), max(left, 1e-3), False)
                if status == "SERVING":
                    return
                error: KvtierError = KvtierError(f"health: {status}",
                                                 code=grpc.StatusCode.UNAVAILABLE)
            except KvtierError as e:
                error = e
            if time.monotonic() + poll >= deadline:
                raise error
            time.sleep(poll)

    def open_session(self, geometry: Geometry, session_id: Optional[str] = None,
                     ttl_seconds: Optional[int] = None, *, tenant: Optional[str] = None,
                     timeout: Optional[float] = None) -> SessionInfo:
        """Opens a session; returns its SessionInfo (id, normalized geometry, TTL).

        Retried on UNAVAILABLE. With a client-chosen ``session_id``, a retry that answers
        ALREADY_EXISTS (the lost first attempt created it) returns that session when its
        tenant, its geometry and (when ``ttl_seconds`` is given) its TTL are the ones asked
        for, and raises AlreadyExists otherwise. Without one, a retry after a lost response
        may leave an unused session behind; it expires with its TTL.
        Errors: InvalidArgument (field named), AlreadyExists, OutOfRange (ttl),
        ResourceExhausted."""
        request = _core.open_request(geometry, session_id, ttl_seconds, tenant)
        tries = [0]

        def attempt(t: float, _: List[bool]) -> Any:
            tries[0] += 1
            try:
                return self.stub.OpenSession(request, timeout=t).session
            except grpc.RpcError as e:
                if (tries[0] > 1 and session_id and e.code() == grpc.StatusCode.ALREADY_EXISTS):
                    info = self.get_session(session_id, timeout=t)
                    if _core.adoptable(request, info):
                        return info.proto
                    raise AlreadyExists(e.details() or "") from None
                raise

        info = SessionInfo.from_proto(self._with_retries(attempt, timeout))
        self._geometries.put(info.session_id, info.geometry)
        return info

    def offload(self, session_id: str, positions: Any, keys: Any, values: Any = None,
                layer_begin: int = 0, *, importance: Any = None,
                geometry: Optional[Geometry] = None,
                timeout: Optional[float] = None) -> OffloadResult:
        """Stores evicted rows. ``keys``/``values``: ``[layers, len(positions), num_kv_heads,
        head_dim]`` numpy arrays or torch tensors of the session dtype, covering layers
        ``[layer_begin, layer_begin + keys.shape[0])``; ``values`` None in an index-only
        session. ``importance``: optional first-stage score per row. Checked against the
        session geometry before sending (``geometry`` or the cached/fetched one); sent as
        chunks of at most ``offload_chunk_bytes`` in one client stream, retried whole on
        UNAVAILABLE. Server errors name the failing chunk (``chunk N: ...``); the chunks
        before it stay stored."""
        session_id = _core.session_id_arg(session_id)
        deadline = self.options.deadline(timeout)  # covers the GetSession too
        g = self._geometry(session_id, geometry, deadline)
        chunker = _core.offload_chunker(self.options, session_id, g, positions, keys, values,
                                        layer_begin, importance)
        response = self._with_retries(lambda t, _: self.stub.Offload(iter(chunker), timeout=t),
                                      None, deadline=deadline)
        return OffloadResult.from_proto(response)

    def repair(self, session_id: str, queries: Any = None, budget: int = 0, lse: Any = None, *,
               request_id: Optional[str] = None, return_mode: Any = ReturnMode.UNSPECIFIED,
               selector: Any = Selector.REPAIRKV, burst_left: Optional[int] = None,
               burst_right: Optional[int] = None, seed: int = 0,
               scoring_mode: Any = ScoringMode.AUTO, query_dtype: Optional[str] = None,
               geometry: Optional[Geometry] = None,
               timeout: Optional[float] = None) -> RepairResult:
        """Scores the session's candidates against the signal and returns ``budget`` rows.

        ``queries``: post-RoPE queries ``[len(scoring_layers), num_q_heads, num_tokens,
        head_dim]`` of float32, float16 or bfloat16; ``lse``: optional log-sum-exp over the
        engine's active keys, ``[len(scoring_layers), num_q_heads, num_tokens]`` float32.
        ``return_mode``: "payload" (K and V come back in ``keys``/``values``), "positions",
        or unspecified (payload; positions in an index-only session). ``selector``:
        "repairkv", or the controls "oldest"/"random" (queries optional). ``request_id``:
        idempotency key; None generates one so that a retry on UNAVAILABLE returns the same
        selection; "" sends none and disables retries."""
        session_id = _core.session_id_arg(session_id)
        deadline = self.options.deadline(timeout)  # covers the GetSession too
        g = self._geometry(session_id, geometry, deadline)
        request = _core.repair_request(session_id, g, queries, budget, lse, request_id,
                                       return_mode, selector, burst_left, burst_right, seed,
                                       scoring_mode, query_dtype)
        collector = self._collect("repair", self.stub.Repair, request, g, deadline,
                                  retry=bool(request.request_id))
        return collector.repair_result(request.request_id)

    def promote(self, session_id: str, positions: Any, *,
                return_mode: Any = ReturnMode.UNSPECIFIED, geometry: Optional[Geometry] = None,
                timeout: Optional[float] = None) -> PromoteResult:
        """Returns the named rows (each stored and complete): ``keys``/``values``
        ``[num_layers, len(positions), num_kv_heads, head_dim]`` in ``positions`` order.
        The rows stop being repair candidates. NotFound for a position not stored."""
        session_id = _core.session_id_arg(session_id)
        deadline = self.options.deadline(timeout)  # covers the GetSession too
        g = self._geometry(session_id, geometry, deadline)
        request = _core.promote_request(session_id, positions, return_mode)
        return self._collect("promote", self.stub.Promote, request, g, deadline,
                             retry=True).promote_result()

    def release(self, session_id: str, positions: Any = None, whole_session: bool = False, *,
                timeout: Optional[float] = None) -> ReleaseResult:
        """Drops rows (positions not stored are ignored) or, with ``whole_session=True``,
        the whole session. NotFound for an unknown session."""
        session_id = _core.session_id_arg(session_id)
        request = _core.release_request(session_id, positions, whole_session)
        response = self._unary(self.stub.Release, request, timeout, retry=not whole_session)
        if whole_session:
            self._geometries.drop(session_id)
        return ReleaseResult.from_proto(response)

    def begin_pause(self, session_id: str, *, timeout: Optional[float] = None) -> PauseResult:
        """The agent paused: stage the session's payloads on disk back into host RAM."""
        request = pb.BeginPauseRequest(session_id=_core.session_id_arg(session_id))
        return PauseResult.from_proto(self._unary(self.stub.BeginPause, request, timeout))

    def get_session(self, session_id: str, *, timeout: Optional[float] = None) -> SessionInfo:
        """Counts and geometry of a session. NotFound for an unknown or expired one."""
        request = pb.GetSessionRequest(session_id=_core.session_id_arg(session_id))
        info = SessionInfo.from_proto(self._unary(self.stub.GetSession, request, timeout))
        self._geometries.put(info.session_id, info.geometry)
        return info

    def list_sessions(self, tenant: Optional[str] = None, *,
                      timeout: Optional[float] = None) -> List[SessionInfo]:
        """Sessions of ``tenant`` (every tenant when None), sorted by id."""
        request = pb.ListSessionsRequest(tenant=_core.tenant_arg(tenant))
        response = self._unary(self.stub.ListSessions, request, timeout)
        return [SessionInfo.from_proto(s) for s in response.sessions]

    def stats(self, *, timeout: Optional[float] = None) -> Stats:
        """Server-wide occupancy per tier and counters."""
        return Stats.from_proto(self._unary(self.stub.Stats, pb.StatsRequest(), timeout))

