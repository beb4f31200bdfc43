"""Every RPC through kvtier.Client against a real kvtierd over its Unix socket."""

import numpy as np
import pytest

import kvtier
from conftest import kv

GEOM = kvtier.Geometry(num_layers=4, num_q_heads=8, num_kv_heads=2, head_dim=16,
                       dtype="float16")


def test_health_and_stats(client):
    assert client.health() == "SERVING"
    with pytest.raises(kvtier.NotFound):
        client.health("no.such.Service")
    client.wait_until_serving(timeout=10)
    stats = client.stats()
    assert [t.name for t in stats.tiers] == ["hbm", "host", "nvme"]
    assert stats.tier("host").capacity_bytes > 0
    assert stats.scorer == "cpu"
    assert stats.version
    assert stats.uptime_seconds > 0


def test_session_lifecycle_every_rpc(client, rng):
    info = client.open_session(GEOM, session_id="py-lifecycle", ttl_seconds=600,
                               tenant="pytest")
    assert info.session_id == "py-lifecycle"
    assert info.tenant == "pytest"
    assert info.ttl_seconds == 600
    assert info.geometry.scoring_layers == (0, 1, 2, 3)  # filled in by the server
    assert info.row_bytes == 2 * 4 * 2 * 16 * 2

    positions = np.arange(1000, 1200)
    keys = kv(rng, 4, 200, 2, 16, "float16")
    values = kv(rng, 4, 200, 2, 16, "float16")
    off = client.offload(info.session_id, positions, keys, values)
    assert off.rows_written == 200 and off.rows_completed == 200
    assert off.bytes == keys.nbytes + values.nbytes
    assert off.tier == "host"

    got = client.get_session(info.session_id)
    assert (got.rows_stored, got.rows_complete, got.rows_candidate) == (200, 200, 200)

    queries = rng.standard_normal((4, 8, 3, 16)).astype(np.float32)
    r = client.repair(info.session_id, queries, budget=25, return_mode="payload")
    assert len(r.chosen) == 25 and r.chosen.dtype == np.int64
    assert np.array_equal(np.sort(r.chosen), r.sorted)
    assert r.candidates == 200 and not r.replayed and r.scorer == "cpu"
    assert r.scores.shape == (25,) and np.all(np.isfinite(r.scores))
    assert r.request_id.startswith("py-")
    assert r.timings.total_seconds > 0 and r.timings.score_seconds > 0
    idx = r.chosen - 1000
    assert r.keys.dtype == np.float16 and r.keys.shape == (4, 25, 2, 16)
    assert np.array_equal(r.keys, keys[:, idx]) and np.array_equal(r.values, values[:, idx])

    # The same request id replays the same selection without scoring again.
    again = client.repair(info.session_id, queries, budget=25, request_id=r.request_id,
                          return_mode="positions")
    assert again.replayed and np.array_equal(again.chosen, r.chosen) and again.keys is None

    assert client.get_session(info.session_id).rows_promoted == 25

    p = client.promote(info.session_id, [1199, 1000, 1050])
    assert list(p.positions) == [1199, 1000, 1050]
    assert np.array_equal(p.keys, keys[:, [199, 0, 50]])
    assert np.array_equal(p.values, values[:, [199, 0, 50]])
    pp = client.promote(info.session_id, [1001], return_mode="positions")
    assert pp.keys is None and list(pp.positions) == [1001]

    pause = client.begin_pause(info.session_id)
    assert pause.segments_resident + pause.segments_loaded >= 1 and pause.segments_left == 0

    listed = client.list_sessions("pytest")
    assert [s.session_id for s in listed] == ["py-lifecycle"]
    assert "py-lifecycle" not in [s.session_id for s in client.list_sessions("nobody")]

    rel = client.release(info.session_id, [1000, 1001, 5])  # 5 is not stored: ignored
    assert rel.rows_released == 2 and not rel.session_released
    assert client.get_session(info.session_id).rows_stored == 198

    gone = client.release(info.session_id, whole_session=True)
    assert gone.session_released and gone.rows_released == 198
    with pytest.raises(kvtier.NotFound):
        client.get_session(info.session_id)


def test_layer_by_layer_offload_and_importance(client, rng):
    info = client.open_session(GEOM)
    positions = np.array([7, 3, 11, 5])
    keys = kv(rng, 4, 4, 2, 16, "float16")
    values = kv(rng, 4, 4, 2, 16, "float16")
    for layer in range(4):  # as an engine saves them: one layer at a time
        r = client.offload(info.session_id, positions, keys[layer:layer + 1],
                           values[layer:layer + 1], layer_begin=layer,
                           importance=[0.0, 1.0, 0.5, 0.25])
        assert r.rows_completed == (4 if layer == 3 else 0)
    s = client.get_session(info.session_id)
    assert s.rows_complete == 4 and s.rows_candidate == 4
    oldest = client.repair(info.session_id, budget=4, selector="oldest", burst_left=0,
                           burst_right=0, return_mode="positions")
    assert list(oldest.chosen) == [3, 5, 7, 11]
    p = client.promote(info.session_id, positions)
    assert np.array_equal(p.keys, keys) and np.array_equal(p.values, values)
    client.release(info.session_id, whole_session=True)


def test_small_chunks_split_rows_and_layers(daemon, rng):
    g = kvtier.Geometry(num_layers=3, num_q_heads=2, num_kv_heads=2, head_dim=8,
                        dtype="float32")
    # One row-layer of K+V is 2*2*8*4 = 128 bytes; a row of 3 layers is 384 bytes.
    with kvtier.Client(daemon.unix_target, offload_chunk_bytes=256) as c:
        info = c.open_session(g)
        keys, values = kv(rng, 3, 10, 2, 8, "float32"), kv(rng, 3, 10, 2, 8, "float32")
        r = c.offload(info.session_id, np.arange(10), keys, values)
        # 2 layers per chunk (256 // 128), 1 row per chunk: 10 rows x 2 layer ranges.
        assert r.chunks == 20 and r.rows_completed == 10
        p = c.promote(info.session_id, np.arange(10)[::-1])
        assert np.array_equal(p.keys, keys[:, ::-1]) and np.array_equal(p.values, values[:, ::-1])
    with kvtier.Client(daemon.unix_target, offload_chunk_bytes=1000) as c:
        info = c.open_session(g)
        r = c.offload(info.session_id, np.arange(10), keys, values)
        assert r.chunks == 5  # 1000 // 384 = 2 whole rows per chunk


def test_payload_larger_than_one_server_chunk(client, rng):
    # 16 KiB of K+V per row: 600 rows are 9.4 MiB, more than one 4 MiB payload chunk.
    g = kvtier.Geometry(num_layers=2, num_q_heads=8, num_kv_heads=8, head_dim=128,
                        dtype="float32")
    info = client.open_session(g)
    keys, values = kv(rng, 2, 600, 8, 128, "float32"), kv(rng, 2, 600, 8, 128, "float32")
    off = client.offload(info.session_id, np.arange(600), keys, values)
    assert off.chunks >= 3  # 4 MiB client chunks
    r = client.repair(info.session_id, rng.standard_normal((2, 8, 1, 128)).astype(np.float32),
                      budget=600, burst_left=0, burst_right=0)
    assert r.payload_chunks >= 3 and len(r.chosen) == 600
    assert np.array_equal(r.keys, keys[:, r.chosen])
    assert np.array_equal(r.values, values[:, r.chosen])
    client.release(info.session_id, whole_session=True)


def test_index_only_session(client, rng):
    g = kvtier.Geometry(num_layers=4, num_q_heads=4, num_kv_heads=2, head_dim=16,
                        dtype="float16", index_only=True, scoring_layers=(1, 2))
    info = client.open_session(g)
    assert info.geometry.index_only and info.row_bytes == 0
    keys = kv(rng, 2, 50, 2, 16, "float16")
    r = client.offload(info.session_id, np.arange(50), keys, layer_begin=1)
    assert r.rows_completed == 50
    rep = client.repair(info.session_id, rng.standard_normal((2, 4, 2, 16)).astype(np.float32),
                        budget=5)
    assert rep.keys is None and len(rep.chosen) == 5  # positions only
    with pytest.raises(kvtier.FailedPrecondition, match="return_mode"):
        client.promote(info.session_id, [1], return_mode="payload")
    with pytest.raises(kvtier.InvalidArgument, match="values"):
        client.offload(info.session_id, [1], keys[:, :1], keys[:, :1], layer_begin=1)
    with pytest.raises(kvtier.InvalidArgument, match="scoring layer"):
        client.offload(info.session_id, [1], keys[:, :1], layer_begin=0)
    client.release(info.session_id, whole_session=True)
