"""dtype round trips (offload -> promote, bit-exact) and the torch and uint16 paths."""

import subprocess
import sys

import numpy as np
import pytest

import kvtier
from conftest import kv


def geom(dtype):
    return kvtier.Geometry(num_layers=3, num_q_heads=4, num_kv_heads=2, head_dim=8,
                           dtype=dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
def test_offload_promote_round_trip_is_bit_exact(client, rng, dtype):
    info = client.open_session(geom(dtype))
    keys, values = kv(rng, 3, 40, 2, 8, dtype), kv(rng, 3, 40, 2, 8, dtype)
    # Special values survive: signed zero, subnormals, extremes (but no NaN/inf keys: the
    # server refuses them, they would poison every score).
    raw = keys.view(np.uint16 if keys.itemsize == 2 else np.uint32)
    raw[0, 0, 0, :4] = [0x8000, 0x0001, 0x7BFF, 0x0400] if keys.itemsize == 2 else \
        [0x80000000, 0x00000001, 0x7F7FFFFF, 0x00800000]
    positions = rng.permutation(1000)[:40]
    client.offload(info.session_id, positions, keys, values)
    p = client.promote(info.session_id, positions)
    assert p.keys.dtype == kvtier.arrays.numpy_dtype(dtype)
    assert p.keys.tobytes() == keys.tobytes() and p.values.tobytes() == values.tobytes()
    client.release(info.session_id, whole_session=True)


def test_bfloat16_as_uint16_bits_and_float16_queries(client, rng):
    info = client.open_session(geom("bfloat16"))
    bits = kv(rng, 3, 10, 2, 8, "bfloat16").view(np.uint16)  # raw bits, no ml_dtypes type
    client.offload(info.session_id, np.arange(10), bits, bits)
    p = client.promote(info.session_id, np.arange(10))
    assert p.keys.view(np.uint16).tobytes() == bits.tobytes()
    client.release(info.session_id, np.arange(10))
    client.offload(info.session_id, np.arange(10), bits, bits)
    # Queries as float16 and as bfloat16 bits (query_dtype stated).
    q = rng.standard_normal((3, 4, 2, 8)).astype(np.float32)
    r16 = client.repair(info.session_id, q.astype(np.float16), budget=3,
                        return_mode="positions", request_id="q16")
    assert r16.summary is not None and len(r16.chosen) == 3
    qbits = (q.view(np.uint32) >> 16).astype(np.uint16)
    rbf = client.repair(info.session_id, qbits, budget=3, return_mode="positions",
                        query_dtype="bfloat16")
    assert len(rbf.chosen) == 3 and set(rbf.chosen).isdisjoint(r16.chosen)
    client.release(info.session_id, whole_session=True)


class FakeTensor:
    """A stand-in for torch.Tensor (torch is not a dependency): the calls the SDK makes."""

    __module__ = "torch"

    def __init__(self, array, dtype_name):
        self._a = array
        self.dtype = f"torch.{dtype_name}"
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def float(self):
        self.calls.append("float")
        if self.dtype == "torch.bfloat16":  # exact: bf16 is the top half of an fp32
            return FakeTensor((self._a.view(np.uint16).astype(np.uint32) << 16).view(np.float32),
                              "float32")
        return FakeTensor(self._a.astype(np.float32), "float32")

    def numpy(self):
        if self.dtype == "torch.bfloat16":
            raise TypeError("Got unsupported ScalarType BFloat16")  # as torch does
        return self._a


FakeTensor.__module__ = "torch"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_torch_tensors_are_accepted(client, rng, dtype):
    info = client.open_session(geom(dtype))
    keys = kv(rng, 3, 6, 2, 8, dtype)
    values = kv(rng, 3, 6, 2, 8, dtype)
    tk, tv = FakeTensor(keys, dtype), FakeTensor(values, dtype)
    client.offload(info.session_id, FakeTensor(np.arange(6), "int64"), tk, tv)
    assert tk.calls[:2] == ["detach", "cpu"]
    p = client.promote(info.session_id, np.arange(6))
    assert p.keys.tobytes() == keys.tobytes() and p.values.tobytes() == values.tobytes()
    client.release(info.session_id, whole_session=True)


def test_torch_dtype_mismatch_is_named(client):
    g = geom("float16")
    t = FakeTensor(np.zeros((3, 1, 2, 8), np.uint16), "bfloat16")
    with pytest.raises(kvtier.InvalidArgument, match=r"keys: .*float16.*got bfloat16"):
        client.offload("py-none", [0], t, t, geometry=g)


def test_without_ml_dtypes_bfloat16_comes_back_as_uint16(daemon):
    # A fresh interpreter where ml_dtypes cannot be imported: bfloat16 rows come back as
    # their uint16 bits.
    code = f"""
import sys
sys.modules['ml_dtypes'] = None
import numpy as np, kvtier
assert kvtier.BFLOAT16 == np.dtype('<u2'), kvtier.BFLOAT16
c = kvtier.Client({daemon.unix_target!r})
g = kvtier.Geometry(num_layers=1, num_q_heads=1, num_kv_heads=1, head_dim=4, dtype='bfloat16')
s = c.open_session(g).session_id
bits = np.array([[[[0x3F80, 0x4000, 0xBF80, 0x0001]]]], dtype=np.uint16)
c.offload(s, [3], bits, bits)
p = c.promote(s, [3])
assert p.keys.dtype == np.uint16 and p.keys.tobytes() == bits.tobytes()
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_ml_dtypes_is_used_when_installed():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert kvtier.BFLOAT16 == np.dtype(ml_dtypes.bfloat16)
