"""Retries on UNAVAILABLE (a daemon that starts late, a stopped daemon) and deadlines."""

import threading
import time

import grpc
import numpy as np
import pytest

import kvtier
import kvtier.testing
from conftest import kv


class CountingPolicy(kvtier.RetryPolicy):
    """A RetryPolicy that counts the retries it was asked to wait for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "retries", 0)
        object.__setattr__(self, "first_retry", threading.Event())

    def backoff(self, retry, rng=None):
        object.__setattr__(self, "retries", self.retries + 1)
        self.first_retry.set()
        return super().backoff(retry, rng)


def test_stopped_daemon_is_unavailable_after_the_retries():
    with kvtier.testing.Daemon() as d:
        d.stop()
        policy = CountingPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
        with kvtier.Client(d.unix_target, timeout=20, retry_policy=policy) as c:
            with pytest.raises(kvtier.Unavailable):
                c.stats()
        assert policy.retries == 2  # 3 attempts


def test_daemon_that_starts_late_is_reached_by_the_retries():
    with kvtier.testing.Daemon() as d:
        d.stop()  # same socket path, nobody listening
        policy = CountingPolicy(max_attempts=200, initial_backoff=0.05, max_backoff=0.25)
        result = {}
        with kvtier.Client(d.unix_target, timeout=120, retry_policy=policy) as c:
            def call():
                try:
                    result["stats"] = c.stats()
                except Exception as e:  # noqa: BLE001
                    result["error"] = e

            t = threading.Thread(target=call)
            t.start()
            try:
                assert policy.first_retry.wait(60), "the call never retried"
                d.restart()  # the daemon comes up while the call is retrying
            finally:
                t.join(120)
            assert "error" not in result, result.get("error")
            assert result["stats"].scorer == "cpu"
            assert policy.retries >= 1


def test_no_retries_without_request_id_after_unavailable():
    policy = CountingPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.02)
    g = kvtier.Geometry(num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=4,
                        dtype="float32")
    with kvtier.Client("unix:///nonexistent/kvtierd.sock", retry_policy=policy) as c:
        with pytest.raises(kvtier.Unavailable):
            c.repair("s", np.zeros((1, 1, 1, 4), np.float32), budget=1, request_id="",
                     geometry=g)
        assert policy.retries == 0  # "" disables the idempotency key, so no retry
        with pytest.raises(kvtier.Unavailable):
            c.release("s", whole_session=True)
        assert policy.retries == 0  # not idempotent: never retried
        with pytest.raises(kvtier.Unavailable):
            c.repair("s", np.zeros((1, 1, 1, 4), np.float32), budget=1, geometry=g)
        assert policy.retries == 4  # generated request id: safe to retry


def test_retries_never_pass_the_deadline():
    policy = CountingPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.1)
    with kvtier.Client("unix:///nonexistent/kvtierd.sock", retry_policy=policy) as c:
        import time
        t0 = time.monotonic()
        with pytest.raises(kvtier.Unavailable):
            c.stats(timeout=1.0)
        assert time.monotonic() - t0 < 5.0
        assert 1 <= policy.retries < 1000


def test_deadline_exceeded(client, rng):
    g = kvtier.Geometry(num_layers=4, num_q_heads=16, num_kv_heads=4, head_dim=64,
                        dtype="float16")
    info = client.open_session(g)
    n = 20000
    keys = kv(rng, 4, n, 4, 64, "float16")
    client.offload(info.session_id, np.arange(n), keys, keys)
    q = rng.standard_normal((4, 16, 64, 64)).astype(np.float32)
    with pytest.raises(kvtier.DeadlineExceeded) as e:
        client.repair(info.session_id, q, budget=100, scoring_mode="exact", timeout=0.005)
    assert isinstance(e.value, TimeoutError)
    # A repair past its deadline promotes nothing.
    assert client.get_session(info.session_id).rows_promoted == 0
    # The same call with time to spare succeeds.
    r = client.repair(info.session_id, q, budget=100, return_mode="positions", timeout=120)
    assert len(r.chosen) == 100
    client.release(info.session_id, whole_session=True)


SMALL = kvtier.Geometry(num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=8,
                        dtype="float32")
SLOW = 0.5  # seconds the patched GetSession takes


def record_timeout(stub, method, seen):
    """Wraps stub.<method> so that the timeout each call gets is recorded in seen[method]."""
    real = getattr(stub, method)

    def call(request, timeout=None, **kwargs):
        seen[method] = timeout
        return real(request, timeout=timeout, **kwargs)

    setattr(stub, method, call)


def call_args(client, rng, kind):
    """A stored session and the arguments of an offload, repair or promote on it."""
    info = client.open_session(SMALL)
    keys = kv(rng, 2, 4, 2, 8, "float32")
    client.offload(info.session_id, [0, 1, 2, 3], keys, keys)
    return info.session_id, {
        "offload": ((info.session_id, [4, 5], keys[:, :2], keys[:, :2]), "Offload"),
        "repair": ((info.session_id, np.zeros((2, 4, 1, 8), np.float32), 2), "Repair"),
        "promote": ((info.session_id, [0, 1]), "Promote"),
    }[kind]


@pytest.mark.parametrize("kind", ["offload", "repair", "promote"])
def test_geometry_lookup_and_the_call_share_one_deadline(daemon, client, rng, kind):
    session_id, (args, method) = call_args(client, rng, kind)
    seen = {}
    # A new client has no cached geometry: the call looks it up with GetSession first.
    with kvtier.Client(daemon.unix_target, timeout=60) as fresh:
        real_get_session = fresh.get_session

        def slow_get_session(sid, *, timeout=None):
            seen["get_session"] = timeout
            time.sleep(SLOW)
            return real_get_session(sid, timeout=timeout)

        fresh.get_session = slow_get_session
        record_timeout(fresh.stub, method, seen)
        getattr(fresh, kind)(*args, timeout=5.0)
    assert seen["get_session"] <= 5.0
    # The RPC got what was left of the same 5 s, not a fresh 5 s.
    assert seen[method] <= 5.0 - SLOW + 0.05, seen
    client.release(session_id, whole_session=True)


class LostResponse(grpc.RpcError):
    """An UNAVAILABLE that the client retries (as when a response is lost)."""

    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection lost"


def lose_first_open(client, create_first):
    """Makes the first OpenSession fail with UNAVAILABLE, after creating the session on the
    server when create_first (a lost response) or without reaching it. Returns the call
    counter."""
    real = client.stub.OpenSession
    calls = [0]

    def open_session(request, timeout=None, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            if create_first:
                real(request, timeout=timeout, **kwargs)
            raise LostResponse()
        return real(request, timeout=timeout, **kwargs)

    client.stub.OpenSession = open_session
    return calls


def test_open_session_retry_adopts_the_session_its_lost_attempt_opened(client):
    calls = lose_first_open(client, create_first=True)
    info = client.open_session(SMALL, session_id="py-adopt", ttl_seconds=600, tenant="t1")
    assert calls[0] == 2  # the retry answered ALREADY_EXISTS and the session was adopted
    assert (info.session_id, info.tenant, info.ttl_seconds) == ("py-adopt", "t1", 600)
    client.release("py-adopt", whole_session=True)
    # No tenant given: the server's "default" tenant matches.
    calls = lose_first_open(client, create_first=True)
    info = client.open_session(SMALL, session_id="py-adopt-default")
    assert calls[0] == 2 and info.tenant == "default"
    client.release("py-adopt-default", whole_session=True)


@pytest.mark.parametrize("existing,asked", [
    ({"tenant": "someone-else"}, {"tenant": "me"}),
    ({"tenant": "me"}, {}),
    ({"ttl_seconds": 600}, {"ttl_seconds": 900}),
    ({"geometry": kvtier.Geometry(num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=8,
                                  dtype="float16")}, {}),
])
def test_open_session_retry_never_adopts_another_session(client, existing, asked):
    sid = "py-not-mine"
    existing = dict(existing)
    client.open_session(existing.pop("geometry", SMALL), session_id=sid, **existing)
    try:
        lose_first_open(client, create_first=False)  # the first attempt never reached it
        with pytest.raises(kvtier.AlreadyExists):
            client.open_session(SMALL, session_id=sid, **asked)
    finally:
        client.release(sid, whole_session=True)
