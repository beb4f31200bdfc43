#!/usr/bin/env python3
"""Measures what the return mode costs through the Python SDK (docs/INTEGRATION.md §6).

Opens a full session of the 7B-class shape (28 layers, 28 query heads, 4 KV heads, head dim
128, fp16, all layers scoring), offloads --rows random rows, then runs --runs repairs per
budget K in payload mode and in positions mode. It prints, per mode and K, the median of:
the server's score and total time and their difference (what the mode changes: select,
gather, send), the client's end-to-end time (the SDK call as the engine sees it: signal
sent, stream collected, payload decoded into numpy arrays), and the bytes received. After each repair the promoted rows are offloaded again (outside the
timed region), so every repair scores the same candidates. It also prints the host bytes per
row of the full session and of an index-only session with 4 scoring layers.

    examples/return_mode_cost.py --server unix://kvtier-data/kvtierd.sock
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtier  # noqa: E402
import toy_model  # noqa: E402

SHAPE = toy_model.Shape(num_layers=28, num_q_heads=28, num_kv_heads=4, head_dim=128)


def offload_rows(client, sid, positions, keys, values, layers_per_call=7):
    """Offloads rows in a few layer ranges (as an engine saving a group of layers)."""
    for begin in range(0, SHAPE.num_layers, layers_per_call):
        end = min(begin + layers_per_call, SHAPE.num_layers)
        client.offload(sid, positions, keys[begin:end], values[begin:end], layer_begin=begin)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="unix://kvtier-data/kvtierd.sock",
                        help="kvtierd address (default: what scripts/run.sh starts)")
    parser.add_argument("--rows", type=int, default=4096, help="offloaded rows (candidates)")
    parser.add_argument("--tokens", type=int, default=16, help="signal tokens T")
    parser.add_argument("--budgets", default="96,1024", help="comma-separated K values")
    parser.add_argument("--runs", type=int, default=5, help="measured repairs per mode and K")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    budgets = [int(k) for k in args.budgets.split(",")]
    if max(budgets) > args.rows:
        parser.error("every budget must be at most --rows")

    rng = np.random.default_rng(args.seed)
    n = args.rows
    # Random rows and queries: the cost does not depend on what is selected (float32 noise
    # kept to fp16, generated without float64 temporaries: 4096 rows are 224 MiB of K+V).
    kv_shape = (SHAPE.num_layers, n, SHAPE.num_kv_heads, SHAPE.head_dim)
    keys = rng.standard_normal(kv_shape, dtype=np.float32).astype(np.float16)
    values = rng.standard_normal(kv_shape, dtype=np.float32).astype(np.float16)
    positions = np.arange(n, dtype=np.int64)
    queries = rng.standard_normal(
        (SHAPE.num_layers, SHAPE.num_q_heads, args.tokens, SHAPE.head_dim), dtype=np.float32)
    row_bytes = 2 * SHAPE.num_layers * SHAPE.num_kv_heads * SHAPE.head_dim * 2

    client = kvtier.Client(args.server, timeout=600.0)
    geometry = kvtier.Geometry(num_layers=SHAPE.num_layers, num_q_heads=SHAPE.num_q_heads,
                               num_kv_heads=SHAPE.num_kv_heads, head_dim=SHAPE.head_dim,
                               dtype="float16")
    sid = client.open_session(geometry, ttl_seconds=3600).session_id
    failures = []
    try:
        start = time.perf_counter()
        offload_rows(client, sid, positions, keys, values)
        seconds = time.perf_counter() - start
        info = client.get_session(sid)
        print(f"offloaded {n} rows x {row_bytes} bytes ({n * row_bytes / 2**20:.1f} MiB) in "
              f"{seconds:.2f} s; kvtierd holds {info.bytes / n:.0f} host bytes per row")
        print(f"signal: {queries.nbytes} bytes of float32 queries "
              f"[{SHAPE.num_layers}][{SHAPE.num_q_heads}][{args.tokens}][{SHAPE.head_dim}]")
        print()
        print("| mode | K | payload MiB | received bytes | server score ms | server total ms "
              "| total - score ms | client e2e ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for k in budgets:
            for mode in (kvtier.ReturnMode.PAYLOAD, kvtier.ReturnMode.POSITIONS):
                score, total, rest, e2e, received = [], [], [], [], 0
                for run in range(args.runs + 1):  # run 0 warms up
                    t0 = time.perf_counter()
                    r = client.repair(sid, queries, k, return_mode=mode)
                    elapsed = time.perf_counter() - t0
                    if run > 0:
                        score.append(r.timings.score_seconds)
                        total.append(r.timings.total_seconds)
                        rest.append(r.timings.total_seconds - r.timings.score_seconds)
                        e2e.append(elapsed)
                        received = r.bytes_received
                    if len(r.chosen) != k:
                        failures.append(f"{mode.name} K={k}: {len(r.chosen)} rows returned")
                    if mode == kvtier.ReturnMode.PAYLOAD and r.keys.shape != (
                            SHAPE.num_layers, k, SHAPE.num_kv_heads, SHAPE.head_dim):
                        failures.append(f"K={k}: payload shape {r.keys.shape}")
                    # Make the chosen rows candidates again for the next repair.
                    chosen = np.sort(np.asarray(r.chosen, np.int64))
                    offload_rows(client, sid, chosen, keys[:, chosen],
                                 values[:, chosen])
                payload_mib = k * row_bytes / 2**20 if mode == kvtier.ReturnMode.PAYLOAD else 0
                print(f"| {mode.name.lower()} | {k} | {payload_mib:.2f} | {received} | "
                      f"{1e3 * statistics.median(score):.1f} | "
                      f"{1e3 * statistics.median(total):.1f} | "
                      f"{1e3 * statistics.median(rest):.1f} | "
                      f"{1e3 * statistics.median(e2e):.1f} |")
    finally:
        client.release(sid, whole_session=True)

    # Host bytes per row of an index-only session with 4 scoring layers.
    scoring = (0, 9, 18, 27)
    geometry_io = kvtier.Geometry(num_layers=SHAPE.num_layers, num_q_heads=SHAPE.num_q_heads,
                                  num_kv_heads=SHAPE.num_kv_heads, head_dim=SHAPE.head_dim,
                                  dtype="float16", index_only=True, scoring_layers=scoring)
    sid = client.open_session(geometry_io, ttl_seconds=600).session_id
    try:
        for layer in scoring:
            client.offload(sid, positions, keys[layer:layer + 1], None,
                           layer_begin=layer)
        info = client.get_session(sid)
        print()
        print(f"index-only, scoring layers {scoring}: {info.bytes / n:.0f} host bytes per row")
    finally:
        client.release(sid, whole_session=True)
        client.close()

    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
