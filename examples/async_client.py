#!/usr/bin/env python3
"""Several sequences at once through kvtier.AsyncClient (asyncio).

A serving engine runs many sequences; their offloads and repairs should not wait for each
other. kvtierd serializes the calls of one session and runs different sessions in parallel
(docs/API.md, Concurrency), and AsyncClient lets one event loop keep all of them in flight
over one channel. Each of --sessions sequences (toy_model.py) has its needle at a different
place; every task offloads its evicted rows layer by layer, repairs with its own signal and
checks that it got its own needle back, not another session's. It exits non-zero when a check
fails.

    examples/async_client.py --server unix://kvtier-data/kvtierd.sock --sessions 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtier  # noqa: E402
import toy_model  # noqa: E402

SHAPE = toy_model.Shape(num_layers=4, num_q_heads=8, num_kv_heads=2, head_dim=64)


async def one_sequence(client, index: int, tokens: int, budget: int, seed: int):
    """Opens a session, offloads, repairs, checks the needle. Returns (index, failures, s)."""
    rng = np.random.default_rng(seed + index)
    needle_start = 100 + index * (tokens - 600) // 8
    prompt = toy_model.make_prompt(rng, SHAPE, tokens, needle_start=needle_start)
    sinks, window = 32, 256
    evicted = np.arange(sinks, tokens - window)
    active = np.r_[0:sinks, tokens - window:tokens]
    geometry = kvtier.Geometry(num_layers=SHAPE.num_layers, num_q_heads=SHAPE.num_q_heads,
                               num_kv_heads=SHAPE.num_kv_heads, head_dim=SHAPE.head_dim,
                               dtype="float16")
    start = time.perf_counter()
    session = await client.open_session(geometry, ttl_seconds=600,
                                        session_id=f"example-async-{os.getpid()}-{index}")
    sid = session.session_id
    failures = []
    try:
        for layer in range(SHAPE.num_layers):
            await client.offload(sid, evicted, prompt.keys[layer:layer + 1, evicted],
                                 prompt.values[layer:layer + 1, evicted], layer_begin=layer)
        queries = toy_model.make_queries(rng, SHAPE, prompt.direction, first_position=tokens,
                                         num_tokens=8)
        lse = toy_model.logsumexp(
            toy_model.scores(queries, prompt.keys[:, active], SHAPE)).astype(np.float32)
        result = await client.repair(sid, queries, budget, lse=lse, request_id="turn-2",
                                     return_mode=kvtier.ReturnMode.POSITIONS)
        chosen = np.asarray(result.chosen, np.int64)
        if not np.isin(prompt.needle, chosen).all():
            failures.append(f"session {index}: needle at {needle_start} not chosen "
                            f"(chosen {sorted(chosen.tolist())[:8]}...)")
        # A retry with the same request_id returns the same selection (replayed).
        again = await client.repair(sid, queries, budget, lse=lse, request_id="turn-2",
                                    return_mode=kvtier.ReturnMode.POSITIONS)
        if list(again.chosen) != list(result.chosen) or not again.replayed:
            failures.append(f"session {index}: the request_id replay differs")
    finally:
        await client.release(sid, whole_session=True)
    return index, failures, time.perf_counter() - start


async def run(args) -> int:
    async with kvtier.AsyncClient(args.server, timeout=60.0) as client:
        health = await client.health()
        print(f"kvtierd health: {health}")
        start = time.perf_counter()
        results = await asyncio.gather(*(
            one_sequence(client, i, args.tokens, args.budget, args.seed)
            for i in range(args.sessions)))
        wall = time.perf_counter() - start
    failures = []
    for index, errors, seconds in results:
        print(f"session {index}: {'needle found' if not errors else 'FAILED'} ({seconds:.2f} s)")
        failures += errors
    print(f"{args.sessions} sessions concurrently in {wall:.2f} s "
          f"(sum of their own times {sum(r[2] for r in results):.2f} s)")
    return toy_model.report(failures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="unix://kvtier-data/kvtierd.sock",
                        help="kvtierd address (default: what scripts/run.sh starts)")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=2048, help="prompt length per session")
    parser.add_argument("--budget", type=int, default=48, help="rows to repair (K)")
    parser.add_argument("--seed", type=int, default=3)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
