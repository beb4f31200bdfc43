#!/usr/bin/env python3
"""An index-only session: the engine keeps the evicted payload, kvtier only ranks it.

Engines that already have an offload tier of their own (a CPU swap space, a prefix-cache
store) do not need kvtier to hold K and V. They open the session with ``index_only=True`` and
a few scoring layers, offload only those layers' keys (no values), and Repair answers with
positions; the engine then brings those rows back from its own store. An index-only row costs
about 1.6 KB per scoring layer in kvtierd instead of the whole row (docs/API.md).

This toy engine (toy_model.py) evicts the middle of a 4096-token prompt into its own host
store, sends kvtier the keys of 2 of its 8 layers, repairs 64 rows and checks that the needle
comes back and that kvtierd refuses a payload request (FAILED_PRECONDITION). It exits
non-zero when a check fails.

    examples/index_only.py --server unix://kvtier-data/kvtierd.sock
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtier  # noqa: E402
import toy_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="unix://kvtier-data/kvtierd.sock",
                        help="kvtierd address (default: what scripts/run.sh starts)")
    parser.add_argument("--tokens", type=int, default=4096, help="prompt length")
    parser.add_argument("--budget", type=int, default=64, help="rows to repair (K)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    shape = toy_model.Shape(num_layers=8, num_q_heads=8, num_kv_heads=2, head_dim=64)
    scoring_layers = (3, 6)  # a few middle-to-late layers carry the retrieval signal
    n, sinks, window = args.tokens, 64, 512
    prompt = toy_model.make_prompt(rng, shape, n, needle_start=n // 2, needle_len=16)

    # The engine's own offload tier: it keeps every evicted row's K and V for all layers.
    evicted = np.arange(sinks, n - window)
    engine_store = {"keys": prompt.keys[:, evicted], "values": prompt.values[:, evicted]}
    row_of = {int(p): i for i, p in enumerate(evicted)}
    active = np.r_[0:sinks, n - window:n]

    client = kvtier.Client(args.server, timeout=60.0)
    geometry = kvtier.Geometry(num_layers=shape.num_layers, num_q_heads=shape.num_q_heads,
                               num_kv_heads=shape.num_kv_heads, head_dim=shape.head_dim,
                               dtype="float16", index_only=True,
                               scoring_layers=scoring_layers)
    session = client.open_session(geometry, ttl_seconds=600)
    sid = session.session_id
    failures = []
    try:
        # Only the scoring layers' keys travel; values stay empty. One call per scoring layer
        # (a contiguous range of scoring layers could go in one call).
        for layer in scoring_layers:
            client.offload(sid, evicted, prompt.keys[layer:layer + 1, evicted], None,
                           layer_begin=layer)
        info = client.get_session(sid)
        per_row = info.bytes / max(1, info.rows_candidate)
        full_row = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * 2
        print(f"index-only session {sid}: {info.rows_candidate} candidates, {info.bytes} bytes "
              f"in kvtierd ({per_row:.0f} per row; a full fp16 row would be {full_row}), "
              f"row_bytes {info.row_bytes}")
        if info.rows_candidate != len(evicted):
            failures.append(f"{info.rows_candidate} candidates, expected {len(evicted)}")
        if info.row_bytes != 0:
            failures.append(f"row_bytes {info.row_bytes}, expected 0 for index-only")

        # The signal covers the scoring layers only: queries [S][Hq][T][D] and lse_active
        # [S][Hq][T], S = len(scoring_layers), in ascending layer order.
        t = 16
        queries = toy_model.make_queries(rng, shape, prompt.direction, first_position=n,
                                         num_tokens=t)[list(scoring_layers)]
        active_keys = prompt.keys[list(scoring_layers)][:, active]
        scoring_shape = toy_model.Shape(len(scoring_layers), shape.num_q_heads,
                                        shape.num_kv_heads, shape.head_dim)
        lse_active = toy_model.logsumexp(
            toy_model.scores(queries, active_keys, scoring_shape)).astype(np.float32)

        # A payload request is refused before anything changes.
        try:
            client.repair(sid, queries, args.budget, lse=lse_active,
                          return_mode=kvtier.ReturnMode.PAYLOAD)
            failures.append("a payload repair of an index-only session was accepted")
        except kvtier.FailedPrecondition as e:
            print(f"payload mode refused as documented: {e}")

        result = client.repair(sid, queries, args.budget, lse=lse_active, request_id="turn-2")
        chosen = np.asarray(result.chosen, np.int64)
        found = np.isin(prompt.needle, chosen).all()
        print(f"repair: {len(chosen)} positions in {result.payload_bytes} payload bytes; "
              f"needle {prompt.needle[0]}..{prompt.needle[-1]} {'found' if found else 'MISSED'}")
        if not found:
            failures.append("the needle is not among the chosen positions")
        if result.keys is not None and np.size(result.keys) != 0:
            failures.append("an index-only repair returned a payload")

        # The engine brings the rows back from its own store, every layer, in chosen order.
        rows = np.asarray([row_of[int(p)] for p in chosen])
        keys_back = engine_store["keys"][:, rows]  # [L][K][Hkv][D]
        values_back = engine_store["values"][:, rows]
        print(f"engine restored {keys_back.shape[1]} rows x {keys_back.shape[0]} layers "
              f"({keys_back.nbytes + values_back.nbytes} bytes) from its own store")
        client.release(sid, positions=chosen)
    finally:
        client.release(sid, whole_session=True)
        client.close()

    return toy_model.report(failures)


if __name__ == "__main__":
    sys.exit(main())
