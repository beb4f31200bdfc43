"""Client options and call arguments are checked before anything is sent: every mistake is
a kvtier.InvalidArgument (a ValueError) naming the argument, never a plain ValueError from
protobuf or the enums; a server value the SDK cannot read is a kvtier.ProtocolError."""

import numpy as np
import pytest

import kvtier
import kvtier._core
from kvtier.v1 import kvtier_pb2 as pb

GEOM = kvtier.Geometry(num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=8,
                       dtype="float16")
DEAD = "unix:///nonexistent/kvtierd.sock"
MiB = 1 << 20


@pytest.fixture
def dead_client():
    # A client whose server does not exist: a check that let the call through would
    # answer Unavailable instead of InvalidArgument.
    with kvtier.Client(DEAD, timeout=5, retries=0) as c:
        yield c


def queries(dtype=np.float32):
    return np.zeros((2, 4, 1, 8), dtype=dtype)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_message_bytes": 1 * MiB}, r"max_message_bytes: 1048576 is below 5242880"),
    ({"max_message_bytes": 4 * MiB}, r"max_message_bytes: .*payload chunks"),
    ({"offload_chunk_bytes": 300 * MiB}, r"offload_chunk_bytes: 314572800 is above "
                                         r"max_message_bytes \(268435456\)"),
    ({"offload_chunk_bytes": 8 * MiB, "max_message_bytes": 8 * MiB},
     r"offload_chunk_bytes: .* is above max_message_bytes"),
    ({"offload_chunk_bytes": 0}, r"offload_chunk_bytes: must be positive"),
    ({"max_message_bytes": 1 << 31}, r"max_message_bytes: .* int32 range"),
])
@pytest.mark.parametrize("cls", [kvtier.Client, kvtier.AsyncClient])
def test_message_and_chunk_sizes_are_checked(cls, kwargs, match):
    with pytest.raises(kvtier.InvalidArgument, match=match):
        cls(DEAD, **kwargs)


def test_smallest_allowed_message_size_still_offloads_and_repairs(daemon, rng):
    # 5 MiB messages: 4 MiB offload chunks and the server's 4 MiB payload chunks fit.
    with kvtier.Client(daemon.unix_target, timeout=60, max_message_bytes=5 * MiB,
                       offload_chunk_bytes=4 * MiB) as c:
        g = kvtier.Geometry(num_layers=4, num_q_heads=8, num_kv_heads=8, head_dim=128,
                            dtype="float16")
        info = c.open_session(g)
        n = 2048  # 32 MiB of K+V: eight full 4 MiB chunks each way
        keys = rng.standard_normal((4, n, 8, 128)).astype(np.float16)
        off = c.offload(info.session_id, np.arange(n), keys, keys)
        assert off.chunks == 8
        r = c.repair(info.session_id, rng.standard_normal((4, 8, 1, 128)).astype(np.float32),
                     budget=n)
        assert r.payload_chunks == 8 and np.array_equal(r.keys, keys[:, r.chosen])
        c.release(info.session_id, whole_session=True)


@pytest.mark.parametrize("kwargs,match", [
    ({"budget": 2**31}, r"budget: 2147483648 is outside the int32 range"),
    ({"budget": -2**31 - 1}, r"budget: .* int32 range"),
    ({"budget": 3.0}, r"budget: an int, got float"),
    ({"seed": -1}, r"seed: -1 is outside the uint64 range"),
    ({"seed": 2**64}, r"seed: .* uint64 range"),
    ({"seed": "7"}, r"seed: an int, got str"),
    ({"burst_left": 2**40}, r"burst_left: 1099511627776 is outside the int32 range"),
    ({"burst_right": 2**31}, r"burst_right: .* int32 range"),
    ({"selector": "bogus"}, r"selector: 'bogus' is not one of unspecified, repairkv, oldest"),
    ({"selector": 99}, r"selector: 99 is not one of"),
    ({"return_mode": 1.5}, r"return_mode: a string or an int, got float"),
    ({"scoring_mode": "slow"}, r"scoring_mode: 'slow' is not one of auto, exact, fast"),
    ({"query_dtype": "float64"}, r"query_dtype: 'float64' is not one of float16"),
    ({"query_dtype": 42}, r"query_dtype: unknown DType enum value 42"),
])
def test_repair_arguments_raise_invalid_argument(dead_client, kwargs, match):
    args = {"budget": 3, **kwargs}
    with pytest.raises(kvtier.InvalidArgument, match=match) as e:
        dead_client.repair("s", queries(), geometry=GEOM, **args)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("ttl,match", [
    (-1, r"ttl_seconds: -1 is outside the uint32 range"),
    (2**32, r"ttl_seconds: 4294967296 is outside the uint32 range"),
    ("600", r"ttl_seconds: an int, got str"),
])
def test_open_session_ttl_is_range_checked(dead_client, ttl, match):
    with pytest.raises(kvtier.InvalidArgument, match=match):
        dead_client.open_session(GEOM, ttl_seconds=ttl)


@pytest.mark.parametrize("kwargs,match", [
    ({"dtype": "int8"}, r"Geometry.dtype: 'int8' is not one of float16, bfloat16, float32"),
    ({"dtype": 17}, r"Geometry.dtype: unknown DType enum value 17"),
    ({"num_layers": 2**31}, r"Geometry.num_layers: 2147483648 is outside the int32 range"),
    ({"scoring_layers": (0, 2**33)}, r"Geometry.scoring_layers\[1\]: .* int32 range"),
])
def test_geometry_arguments_raise_invalid_argument(kwargs, match):
    args = {"num_layers": 2, "num_q_heads": 4, "num_kv_heads": 2, "head_dim": 8, **kwargs}
    with pytest.raises(kvtier.InvalidArgument, match=match):
        kvtier.Geometry(**args)


def test_numpy_ints_and_enum_names_still_work(dead_client):
    req = kvtier._core.repair_request(
        "s", GEOM, queries(), np.int64(5), None, "rid", "positions", "RANDOM", np.int32(0),
        2**31 - 1, 2**64 - 1, kvtier.ScoringMode.FAST, None)
    assert (req.budget, req.burst_left, req.burst_right, req.seed) == (5, 0, 2**31 - 1, 2**64 - 1)
    assert req.selector == pb.SELECTOR_RANDOM and req.return_mode == pb.RETURN_MODE_POSITIONS


def test_query_dtype_mismatch_names_the_query_dtype(dead_client):
    with pytest.raises(kvtier.InvalidArgument,
                       match=r"queries: expected .* of the query dtype float16, got float32"):
        dead_client.repair("s", queries(np.float32), budget=3, query_dtype="float16",
                           geometry=GEOM)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_lse_must_be_float32(dead_client, dtype):
    # float32_array refuses float16 rather than widening it (and float64 rather than
    # rounding it), as its docstring says.
    with pytest.raises(kvtier.InvalidArgument, match=r"lse: expected .* of float32, got float"):
        dead_client.repair("s", queries(), budget=3, lse=np.zeros((2, 4, 1), dtype=dtype),
                           geometry=GEOM)


@pytest.mark.parametrize("dtype", [pb.DTYPE_UNSPECIFIED, 42])
def test_unknown_dtype_from_the_server_is_a_protocol_error(dtype):
    g = pb.Geometry(num_layers=2, num_q_heads=4, num_kv_heads=2, head_dim=8, dtype=dtype)
    with pytest.raises(kvtier.ProtocolError, match=f"geometry.dtype: .*DType {dtype}"):
        kvtier.Geometry.from_proto(g)
    info = pb.SessionInfo(session_id="s", geometry=g)
    with pytest.raises(kvtier.ProtocolError):
        kvtier.SessionInfo.from_proto(info)
    assert kvtier.Geometry.from_proto(GEOM.to_proto()) == GEOM
