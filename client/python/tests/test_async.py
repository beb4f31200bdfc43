"""Every RPC through kvtier.AsyncClient (grpc.aio) against the real kvtierd."""

import asyncio
import threading

import numpy as np
import pytest

import kvtier
import kvtier._core
import kvtier.arrays
from conftest import kv
from test_retry_deadline import SLOW, LostResponse, record_timeout

GEOM = kvtier.Geometry(num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=16,
                       dtype="float32")


@pytest.mark.asyncio
async def test_async_every_rpc(aclient, rng):
    assert await aclient.health() == "SERVING"
    await aclient.wait_until_serving(timeout=10)
    before = await aclient.stats()

    info = await aclient.open_session(GEOM, session_id="py-async", tenant="pytest-async")
    assert info.session_id == "py-async" and info.geometry.dtype == "float32"
    keys, values = kv(rng, 2, 64, 2, 16, "float32"), kv(rng, 2, 64, 2, 16, "float32")
    off = await aclient.offload("py-async", np.arange(64) * 2, keys, values)
    assert off.rows_completed == 64 and off.bytes == keys.nbytes * 2

    r = await aclient.repair("py-async", rng.standard_normal((2, 4, 2, 16)).astype(np.float32),
                             budget=10, burst_left=0, burst_right=1)
    assert len(r.chosen) == 10 and r.candidates == 64
    assert np.array_equal(r.keys, keys[:, r.chosen // 2])
    assert np.array_equal(r.values, values[:, r.chosen // 2])

    p = await aclient.promote("py-async", [126, 0])
    assert np.array_equal(p.keys, keys[:, [63, 0]]) and np.array_equal(p.values, values[:, [63, 0]])

    pause = await aclient.begin_pause("py-async")
    assert pause.segments_left == 0
    s = await aclient.get_session("py-async")
    assert s.rows_complete == 64 and s.rows_promoted >= 10
    listed = await aclient.list_sessions("pytest-async")
    assert [x.session_id for x in listed] == ["py-async"]

    after = await aclient.stats()
    assert after.repairs == before.repairs + 1
    assert after.offloaded_rows >= before.offloaded_rows + 64

    rel = await aclient.release("py-async", [0, 2, 4])
    assert rel.rows_released == 3
    gone = await aclient.release("py-async", whole_session=True)
    assert gone.session_released
    with pytest.raises(kvtier.NotFound):
        await aclient.get_session("py-async")


@pytest.mark.asyncio
async def test_async_concurrent_sessions(aclient, rng):
    async def one(i):
        info = await aclient.open_session(GEOM)
        keys = kv(rng, 2, 32, 2, 16, "float32")
        await aclient.offload(info.session_id, np.arange(32), keys, keys)
        p = await aclient.promote(info.session_id, [i])
        await aclient.release(info.session_id, whole_session=True)
        return np.array_equal(p.keys, keys[:, [i]])

    assert await asyncio.gather(*(one(i) for i in range(8))) == [True] * 8


@pytest.mark.asyncio
async def test_async_errors_are_typed(aclient, rng):
    with pytest.raises(kvtier.NotFound, match="session"):
        await aclient.get_session("py-no-such-session")
    with pytest.raises(kvtier.InvalidArgument, match="keys"):
        await aclient.offload("py-x", [1], np.zeros((1, 1, 2, 8), np.float32),
                              np.zeros((1, 1, 2, 8), np.float32), geometry=GEOM)
    info = await aclient.open_session(GEOM)
    with pytest.raises(kvtier.InvalidArgument, match="budget"):
        await aclient.repair(info.session_id, np.zeros((2, 4, 1, 16), np.float32), budget=0)
    await aclient.release(info.session_id, whole_session=True)


@pytest.mark.asyncio
async def test_async_unavailable_after_retries():
    policy = kvtier.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    async with kvtier.AsyncClient("unix:///nonexistent/kvtierd.sock", timeout=10,
                                  retry_policy=policy) as c:
        with pytest.raises(kvtier.Unavailable):
            await c.stats()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["offload", "repair", "promote"])
async def test_async_geometry_lookup_and_the_call_share_one_deadline(daemon, aclient, rng,
                                                                     kind):
    info = await aclient.open_session(GEOM)
    keys = kv(rng, 2, 4, 2, 16, "float32")
    await aclient.offload(info.session_id, [0, 1, 2, 3], keys, keys)
    args, method = {
        "offload": ((info.session_id, [4, 5], keys[:, :2], keys[:, :2]), "Offload"),
        "repair": ((info.session_id, np.zeros((2, 4, 1, 16), np.float32), 2), "Repair"),
        "promote": ((info.session_id, [0, 1]), "Promote"),
    }[kind]
    seen = {}
    async with kvtier.AsyncClient(daemon.unix_target, timeout=60) as fresh:
        real_get_session = fresh.get_session

        async def slow_get_session(sid, *, timeout=None):
            seen["get_session"] = timeout
            await asyncio.sleep(SLOW)
            return await real_get_session(sid, timeout=timeout)

        fresh.get_session = slow_get_session
        record_timeout(fresh.stub, method, seen)
        await getattr(fresh, kind)(*args, timeout=5.0)
    assert seen["get_session"] <= 5.0
    assert seen[method] <= 5.0 - SLOW + 0.05, seen
    await aclient.release(info.session_id, whole_session=True)


@pytest.mark.asyncio
async def test_async_open_session_retry_checks_the_tenant(aclient):
    await aclient.open_session(GEOM, session_id="py-async-adopt", tenant="someone-else")
    real = aclient.stub.OpenSession
    calls = [0]

    def open_session(request, timeout=None, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            raise LostResponse()  # the first attempt never reached the server
        return real(request, timeout=timeout, **kwargs)

    aclient.stub.OpenSession = open_session
    with pytest.raises(kvtier.AlreadyExists):
        await aclient.open_session(GEOM, session_id="py-async-adopt", tenant="me")
    assert calls[0] == 2
    calls[0] = 0
    info = await aclient.open_session(GEOM, session_id="py-async-adopt", tenant="someone-else")
    assert calls[0] == 2 and info.tenant == "someone-else"  # its own session: adopted
    await aclient.release("py-async-adopt", whole_session=True)


@pytest.mark.asyncio
async def test_async_large_arrays_are_handled_off_the_event_loop(aclient, rng, monkeypatch):
    loop_thread = threading.get_ident()
    threads = {"convert": set(), "chunk": set(), "signal": set(), "reassemble": set()}

    def recorded(name, fn):
        def wrapper(*args, **kwargs):
            threads[name].add(threading.get_ident())
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(kvtier._core, "offload_chunker",
                        recorded("convert", kvtier._core.offload_chunker))
    monkeypatch.setattr(kvtier._core, "repair_request",
                        recorded("signal", kvtier._core.repair_request))
    real_feed = kvtier._core.StreamCollector.feed

    def feed(self, message):
        if message.WhichOneof("kind") == "chunk":
            threads["reassemble"].add(threading.get_ident())
        return real_feed(self, message)

    monkeypatch.setattr(kvtier._core.StreamCollector, "feed", feed)
    real_iter = kvtier.arrays.OffloadChunker.__iter__

    def chunks(self):
        for chunk in real_iter(self):
            threads["chunk"].add(threading.get_ident())
            yield chunk

    monkeypatch.setattr(kvtier.arrays.OffloadChunker, "__iter__", chunks)

    async def roundtrip(geometry, rows, tokens):
        info = await aclient.open_session(geometry)
        keys = kv(rng, geometry.num_layers, rows, geometry.num_kv_heads, geometry.head_dim,
                  "float32")
        await aclient.offload(info.session_id, np.arange(rows), keys, keys)
        q = rng.standard_normal((geometry.num_layers, geometry.num_q_heads, tokens,
                                 geometry.head_dim)).astype(np.float32)
        r = await aclient.repair(info.session_id, q, budget=rows)
        assert np.array_equal(r.keys, keys[:, r.chosen])
        await aclient.release(info.session_id, whole_session=True)

    # Small: everything stays on the loop.
    await roundtrip(GEOM, 8, 1)
    assert all(t == {loop_thread} for t in threads.values()), threads
    for t in threads.values():
        t.clear()
    # Large: 2 MiB keys, 4 MiB payload chunks, 1 MiB of queries: worker threads only.
    big = kvtier.Geometry(num_layers=2, num_q_heads=8, num_kv_heads=8, head_dim=128,
                          dtype="float32")
    await roundtrip(big, 256, 128)
    assert all(t and loop_thread not in t for t in threads.values()), threads
