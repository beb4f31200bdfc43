"""Bad input: caught before sending (named array, expected shape), server statuses mapped to
the typed exceptions."""

import grpc
import numpy as np
import pytest

import kvtier
from conftest import kv

GEOM = kvtier.Geometry(num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=8,
                       dtype="float16")
DEAD = "unix:///nonexistent/kvtierd.sock"


@pytest.fixture
def dead_client():
    # Checks must fail before anything is sent: a client whose server does not exist
    # would answer Unavailable if they did not.
    with kvtier.Client(DEAD, timeout=5, retries=0) as c:
        yield c


def zeros(*shape, dtype=np.float16):
    return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("keys,values,match", [
    (zeros(2, 3, 2, 7), zeros(2, 3, 2, 8),
     r"keys: expected shape \[layers, rows=3, kv_heads=2, head_dim=8\] of float16, "
     r"got shape \[2, 3, 2, 7\]"),
    (zeros(2, 3, 2, 8), zeros(1, 3, 2, 8),
     r"values: expected shape \[layers=2, rows=3, kv_heads=2, head_dim=8\] of float16, "
     r"got shape \[1, 3, 2, 8\]"),
    (zeros(2, 3, 2, 8, dtype=np.float32), zeros(2, 3, 2, 8),
     r"keys: expected \[layers, rows=3, kv_heads=2, head_dim=8\] of the session dtype "
     r"float16, got float32"),
    (zeros(2, 3, 2, 8), zeros(2, 3, 2, 8, dtype=np.int16),
     r"values: .*session dtype float16, got int16"),
    (zeros(3, 3, 2, 8), zeros(3, 3, 2, 8), r"keys: layers \[layer_begin=0, .*=3\) .* num_layers=2"),
    (zeros(2, 3, 2, 8), None, r"values: required"),
    (zeros(2, 4, 2, 8), zeros(2, 4, 2, 8), r"keys: expected shape \[layers, rows=3"),
])
def test_offload_shapes_and_dtypes_checked_before_sending(dead_client, keys, values, match):
    with pytest.raises(kvtier.InvalidArgument, match=match) as e:
        dead_client.offload("s", [1, 2, 3], keys, values, geometry=GEOM)
    assert isinstance(e.value, ValueError)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("positions,match", [
    ([1, 1, 2], "positions: positions are not unique"),
    ([1, -2, 3], r"positions\[1\]: -2 is negative"),
    ([1.5, 2.0, 3.0], "positions: expected a 1-D array of integers"),
    ([], "positions: empty"),
])
def test_positions_checked_before_sending(dead_client, positions, match):
    with pytest.raises(kvtier.InvalidArgument, match=match):
        dead_client.offload("s", positions, zeros(2, 3, 2, 8), zeros(2, 3, 2, 8), geometry=GEOM)


def test_repair_and_release_arguments_checked_before_sending(dead_client):
    with pytest.raises(kvtier.InvalidArgument,
                       match=r"queries: expected shape \[scoring_layers=2, q_heads=4, tokens, "
                             r"head_dim=8\] of float32, got shape \[2, 2, 1, 8\]"):
        dead_client.repair("s", zeros(2, 2, 1, 8, dtype=np.float32), budget=3, geometry=GEOM)
    with pytest.raises(kvtier.InvalidArgument, match="queries: .* got float64"):
        dead_client.repair("s", np.zeros((2, 4, 1, 8)), budget=3, geometry=GEOM)
    with pytest.raises(kvtier.InvalidArgument, match=r"lse: expected shape "
                       r"\[scoring_layers=2, q_heads=4, tokens=1\] of float32"):
        dead_client.repair("s", zeros(2, 4, 1, 8, dtype=np.float32), budget=3,
                           lse=zeros(2, 4, 2, dtype=np.float32), geometry=GEOM)
    with pytest.raises(kvtier.InvalidArgument, match="queries: required"):
        dead_client.repair("s", None, budget=3, geometry=GEOM)
    with pytest.raises(kvtier.InvalidArgument, match="whole_session"):
        dead_client.release("s")
    with pytest.raises(kvtier.InvalidArgument, match="session_id"):
        dead_client.get_session("")
    with pytest.raises(ValueError, match="return_mode|ReturnMode"):
        dead_client.promote("s", [1], return_mode="everything", geometry=GEOM)


def test_rejected_offload_sends_nothing(client, rng):
    info = client.open_session(GEOM)
    before = client.stats().offloaded_rows
    with pytest.raises(kvtier.InvalidArgument, match="keys"):
        client.offload(info.session_id, [1, 2], zeros(2, 2, 2, 4), zeros(2, 2, 2, 8))
    assert client.stats().offloaded_rows == before
    assert client.get_session(info.session_id).rows_stored == 0
    client.release(info.session_id, whole_session=True)


def test_server_statuses_map_to_typed_exceptions(client, rng):
    info = client.open_session(GEOM, session_id="py-errors")
    keys = kv(rng, 2, 4, 2, 8, "float16")
    client.offload(info.session_id, [0, 1, 2, 3], keys, keys)
    q = rng.standard_normal((2, 4, 1, 8)).astype(np.float32)

    with pytest.raises(kvtier.AlreadyExists, match="py-errors"):
        client.open_session(GEOM, session_id="py-errors")
    with pytest.raises(kvtier.InvalidArgument, match="geometry.num_q_heads"):
        client.open_session(kvtier.Geometry(num_layers=2, num_q_heads=3, num_kv_heads=2,
                                            head_dim=8))
    with pytest.raises(kvtier.InvalidArgument, match="budget") as e:
        client.repair(info.session_id, q, budget=0)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.details.startswith("budget")
    with pytest.raises(kvtier.OutOfRange, match="budget"):
        client.repair(info.session_id, q, budget=2_000_000)
    bad = keys.copy()
    bad[0, 0, 0, 0] = np.nan  # the server refuses NaN keys
    with pytest.raises(kvtier.InvalidArgument, match="chunk 0: .*keys"):
        client.offload(info.session_id, [9, 10, 11, 12], bad, keys)
    with pytest.raises(kvtier.NotFound, match="positions"):
        client.promote(info.session_id, [0, 77])
    with pytest.raises(kvtier.NotFound, match="session"):
        client.offload("py-missing", [0], keys[:, :1], keys[:, :1], geometry=GEOM)
    with pytest.raises(kvtier.NotFound):
        client.begin_pause("py-missing")
    with pytest.raises(kvtier.NotFound):
        client.release("py-missing", whole_session=True)
    with pytest.raises(kvtier.OutOfRange, match="ttl"):
        client.open_session(GEOM, ttl_seconds=10**9)
    with pytest.raises(kvtier.InvalidArgument, match="tenant"):
        client.open_session(GEOM, tenant="no spaces allowed")
    # Every typed error is a KvtierError with the code and the server's message.
    with pytest.raises(kvtier.KvtierError) as e:
        client.get_session("py-missing")
    assert type(e.value) is kvtier.NotFound and e.value.code == grpc.StatusCode.NOT_FOUND
    assert "py-missing" in e.value.details
    client.release(info.session_id, whole_session=True)


def test_every_status_code_has_a_class():
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        err = kvtier.errors.error_for_code(code, "x")
        assert err.code == code and isinstance(err, kvtier.KvtierError)
        assert type(err).__name__.upper() == code.name.replace("_", "")


def test_protocol_errors_are_detected():
    from kvtier import _core
    from kvtier.v1 import kvtier_pb2 as pb
    c = _core.StreamCollector("promote", GEOM)
    with pytest.raises(kvtier.ProtocolError, match="chunk before the summary"):
        c.feed(pb.PromoteResponse(chunk=pb.PayloadChunk(positions=[1])))
    c = _core.StreamCollector("promote", GEOM)
    c.feed(pb.PromoteResponse(summary=pb.PromoteSummary(positions=[1], payload_chunks=1,
                                                        payload_bytes=2 * 2 * 2 * 8 * 2)))
    with pytest.raises(kvtier.ProtocolError, match="bytes, expected 64"):
        c.feed(pb.PromoteResponse(chunk=pb.PayloadChunk(positions=[1], layer_begin=0,
                                                        layer_end=2, keys=b"x", values=b"x")))
    c = _core.StreamCollector("promote", GEOM)
    c.feed(pb.PromoteResponse(summary=pb.PromoteSummary(positions=[1])))
    with pytest.raises(kvtier.ProtocolError, match="ended without done"):
        c.check_complete()
