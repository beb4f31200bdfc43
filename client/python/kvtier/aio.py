"""kvtier.AsyncClient: the asyncio client (grpc.aio). Same calls, arguments, results,
errors and retry rules as :class:`kvtier.Client`, as coroutines.

CPU-heavy work on large arrays (at least _core.THREAD_BYTES): converting and checking the
offload batch, producing its chunks, building the repair signal, and copying received
payload chunks into the result arrays runs in worker threads (asyncio.to_thread), so that
the event loop keeps serving other tasks. Small calls stay on the loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, List, Optional, TypeVar

import grpc
import grpc.aio

from kvtier import _core, _health
from kvtier.arrays import DEFAULT_CHUNK_BYTES
from kvtier.datatypes import (Geometry, OffloadResult, PauseResult, PromoteResult,
                              ReleaseResult, RepairResult, RetryPolicy, ReturnMode,
                              ScoringMode, Selector, SessionInfo, Stats)
from kvtier.errors import AlreadyExists, KvtierError, from_rpc_error
from kvtier.v1 import kvtier_pb2 as pb
from kvtier.v1 import kvtier_pb2_grpc as pb_grpc

T = TypeVar("T")

__all__ = ["AsyncClient"]


class AsyncClient:
    """A connection to one kvtierd for asyncio code. See :class:`kvtier.Client` for the
    arguments, the retry rules and the errors. Create it inside the event loop that uses
    it; ``async with kvtier.AsyncClient(target) as client: ...`` or ``await close()``."""

    def __init__(self, target: str = _core.DEFAULT_TARGET, timeout: float = 30.0,
                 retries: Optional[int] = None, *, retry_policy: Optional[RetryPolicy] = None,
                 offload_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 max_message_bytes: int = 256 << 20) -> None:
        self.options = _core.Options(target, timeout, retries, retry_policy,
                                     offload_chunk_bytes, max_message_bytes)
        self.channel = grpc.aio.insecure_channel(
            self.options.grpc_target,
            options=_core.channel_options(self.options.max_message_bytes))
        self.stub = pb_grpc.KvTierStub(self.channel)
        self._health_check = self.channel.unary_unary(
            _health.CHECK_METHOD, request_serializer=_health.encode_request,
            response_deserializer=_health.decode_response)
        self._geometries = _core.GeometryCache()

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _with_retries(self, attempt: Callable[[float, List[bool]], Awaitable[T]],
                            timeout: Optional[float], retry: bool = True, *,
                            deadline: Optional[float] = None) -> T:
        if deadline is None:
            deadline = self.options.deadline(timeout)
        n = 0
        while True:
            n += 1
            may_retry = [retry]
            try:
                return await attempt(_core.remaining(deadline), may_retry)
            except grpc.RpcError as e:
                error = from_rpc_error(e)
            except KvtierError as e:
                error = e
            wait = _core.next_wait(self.options.retry, n, deadline, error.code, may_retry[0])
            if wait is None:
                raise error from None
            await asyncio.sleep(wait)

    async def _unary(self, method: Callable, request: Any, timeout: Optional[float],
                     retry: bool = True) -> Any:
        async def attempt(t: float, _: List[bool]) -> Any:
            return await method(request, timeout=t)

        return await self._with_retries(attempt, timeout, retry)

    async def _geometry(self, session_id: str, geometry: Optional[Geometry],
                        deadline: float) -> Geometry:
        if geometry is not None:
            return geometry
        cached = self._geometries.get(session_id)
        if cached is not None:
            return cached
        return (await self.get_session(session_id,
                                       timeout=_core.remaining(deadline))).geometry

    async def _collect(self, kind: str, method: Callable, request: Any, geometry: Geometry,
                       deadline: float, retry: bool) -> _core.StreamCollector:
        async def attempt(t: float, may_retry: List[bool]) -> _core.StreamCollector:
            collector = _core.StreamCollector(kind, geometry)
            call = method(request, timeout=t)
            try:
                async for message in call:
                    may_retry[0] = False
                    if message.ByteSize() >= _core.THREAD_BYTES:  # a large payload chunk
                        await asyncio.to_thread(collector.feed, message)
                    else:
                        collector.feed(message)
            except KvtierError:
                call.cancel()
                raise
            collector.check_complete()
            return collector

        return await self._with_retries(attempt, None, retry, deadline=deadline)

    async def health(self, service: str = "", *, timeout: Optional[float] = None) -> str:
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"
        (NotFound for a service the server does not know)."""
        return await self._unary(self._health_check, service, timeout)

    async def wait_until_serving(self, timeout: float = 30.0, poll: float = 0.05) -> None:
        """Polls health until it answers SERVING (see Client.wait_until_serving)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                left = max(deadline - time.monotonic(), 1e-3)
                status = await self._unary(self._health_check, "", left, retry=False)
                if status == "SERVING":
                    return
                error: KvtierError = KvtierError(f"health: {status}",
                                                 code=grpc.StatusCode.UNAVAILABLE)
            except KvtierError as e:
                error = e
            if time.monotonic() + poll >= deadline:
                raise error
            await asyncio.sleep(poll)

    async def open_session(self, geometry: Geometry, session_id: Optional[str] = None,
                           ttl_seconds: Optional[int] = None, *, tenant: Optional[str] = None,
                           timeout: Optional[float] = None) -> SessionInfo:
        """See Client.open_session."""
        request = _core.open_request(geometry, session_id, ttl_seconds, tenant)
        tries = [0]

        async def attempt(t: float, _: List[bool]) -> Any:
            tries[0] += 1
            try:
                return (await self.stub.OpenSession(request, timeout=t)).session
            except grpc.RpcError as e:
                if (tries[0] > 1 and session_id and e.code() == grpc.StatusCode.ALREADY_EXISTS):
                    info = await self.get_session(session_id, timeout=t)
                    if _core.adoptable(request, info):
                        return info.proto
                    raise AlreadyExists(e.details() or "") from None
                raise

        info = SessionInfo.from_proto(await self._with_retries(attempt, timeout))
        self._geometries.put(info.session_id, info.geometry)
        return info

    async def offload(self, session_id: str, positions: Any, keys: Any, values: Any = None,
                      layer_begin: int = 0, *, importance: Any = None,
                      geometry: Optional[Geometry] = None,
                      timeout: Optional[float] = None) -> OffloadResult:
        """See Client.offload."""
        session_id = _core.session_id_arg(session_id)
        deadline = self.options.deadline(timeout)  # covers the GetSession too
        g = await self._geometry(session_id, geometry, deadline)
        args = (self.options, session_id, g, positions, keys, values, layer_begin, importance)
        large = _core.nbytes(keys, values) >= _core.THREAD_BYTES
        if large:
            chunker = await asyncio.to_thread(_core.offload_chunker, *args)
        else:
            chunker = _core.offload_chunker(*args)

        async def attempt(t: float, _: List[bool]) -> Any:
            chunks = _chunks_in_thread(chunker) if large else iter(chunker)
            return await self.stub.Offload(chunks, timeout=t)

        return OffloadResult.from_proto(
            await self._with_retries(attempt, None, deadline=deadline))

    async def repair(self, session_id: str, queries: Any = None, budget: int = 0,
                     lse: Any = None, *, request_id: Optional[str] = None,
                     return_mode: Any = ReturnMode.UNSPECIFIED,
                     selector: Any = Selector.REPAIRKV, burst_left: Optional[int] = None,
                     burst_right: Optional[int] = None, seed: int = 0,
                     scoring_mode: Any = ScoringMode.AUTO, query_dtype: Optional[str] = None,
                     geometry: Optional[Geometry] = None,
                     timeout: Optional[float] = None) -> RepairResult:
        """See Client.repair."""
        session_id = _core.session_id_arg(session_id)
        deadline = self.options.deadline(timeout)  # covers the GetSession too
        g = await self._geometry(session_id, geometry, deadline)
        args = (session_id, g, queries, budget, lse, request_id, return_mode, selector,
                burst_left, burst_right, seed, scoring_mode, query_dtype)
        if _core.nbytes(queries, lse) >= _core.THREAD_BYTES:
            request = await asyncio.to_thread(_core.repair_request, *args)
        else:
            request = _core.repair_request(*args)
        collector = await self._collect("repair", self.stub.Repair, request, g, deadline,
                                        retry=bool(request.request_id))
        return collector.repair_result(request.request_id)

    async def promote(self, session_id: str, positions: Any, *,
                      return_mode: Any = ReturnMode.UNSPECIFIED,
                      geometry: Optional[Geometry] = None,
                      timeout: Optional[float] = None) -> PromoteResult:
        """See Client.promote."""
        session_id = _core.session_id_arg(session_id)
        deadline = self.options.deadline(timeout)  # covers the GetSession too
        g = await self._geometry(session_id, geometry, deadline)
        request = _core.promote_request(session_id, positions, return_mode)
        collector = await self._collect("promote", self.stub.Promote, request, g, deadline,
                                        retry=True)
        return collector.promote_result()

    async def release(self, session_id: str, positions: Any = None,
                      whole_session: bool = False, *,
                      timeout: Optional[float] = None) -> ReleaseResult:
        """See Client.release."""
        session_id = _core.session_id_arg(session_id)
        request = _core.release_request(session_id, positions, whole_session)
        response = await self._unary(self.stub.Release, request, timeout,
                                     retry=not whole_session)
        if whole_session:
            self._geometries.drop(session_id)
        return ReleaseResult.from_proto(response)

    async def begin_pause(self, session_id: str, *,
                          timeout: Optional[float] = None) -> PauseResult:
        """See Client.begin_pause."""
        request = pb.BeginPauseRequest(session_id=_core.session_id_arg(session_id))
        return PauseResult.from_proto(await self._unary(self.stub.BeginPause, request, timeout))

    async def get_session(self, session_id: str, *,
                          timeout: Optional[float] = None) -> SessionInfo:
        """See Client.get_session."""
        request = pb.GetSessionRequest(session_id=_core.session_id_arg(session_id))
        info = SessionInfo.from_proto(await self._unary(self.stub.GetSession, request, timeout))
        self._geometries.put(info.session_id, info.geometry)
        return info

    async def list_sessions(self, tenant: Optional[str] = None, *,
                            timeout: Optional[float] = None) -> List[SessionInfo]:
        """See Client.list_sessions."""
        request = pb.ListSessionsRequest(tenant=_core.tenant_arg(tenant))
        response = await self._unary(self.stub.ListSessions, request, timeout)
        return [SessionInfo.from_proto(s) for s in response.sessions]

    async def stats(self, *, timeout: Optional[float] = None) -> Stats:
        """See Client.stats."""
        return Stats.from_proto(await self._unary(self.stub.Stats, pb.StatsRequest(), timeout))


async def _chunks_in_thread(chunks: Iterable[Any]) -> AsyncIterator[Any]:
    """Yields ``chunks``, each produced (sliced and copied to bytes) in a worker thread."""
    it = iter(chunks)
    while True:
        chunk = await asyncio.to_thread(next, it, None)
        if chunk is None:
            return
        yield chunk
