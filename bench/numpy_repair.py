#!/usr/bin/env python3
"""The exact RepairKV selection written the way a research prototype writes it: numpy,
float32 matrix products through whatever BLAS numpy links, a Python loop over layers and
query heads. It is the baseline kvtier's scorer is compared with (docs/PERFORMANCE.md),
so it must compute the same thing: --check-golden plays every golden case of
../shared/reference/repair and requires the exact expected `chosen`.

  bench/numpy_repair.py --check-golden ../shared/reference/repair
  bench/numpy_repair.py --bench --rows 32768 --tokens 64 --runs 5   # one JSON line

Math (DESIGN.md section 1): s = q.k/sqrt(D); p = exp(s - logsumexp(lse_active and s over
all rows)); a = mean over layers and query heads of the max over tokens of p; rank by
(a desc, importance desc, position asc); pack bursts [x - left, x + right] to exactly K.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def score(keys, queries, lse_active=None):
    """keys [L][Hkv][N][D], queries [L][Hq][T][D] float32; lse_active [L][Hq][T] or None.
    Returns a [N] float64."""
    num_layers, num_kv_heads, num_rows, head_dim = keys.shape
    num_q_heads = queries.shape[1]
    group = num_q_heads // num_kv_heads
    scale = np.float32(1.0 / np.sqrt(head_dim))
    total = np.zeros(num_rows, dtype=np.float64)
    for layer in range(num_layers):
        for head in range(num_q_heads):
            s = (queries[layer, head] @ keys[layer, head // group].T) * scale  # [T][N]
            m = s.max(axis=1)
            if lse_active is not None:
                m = np.maximum(m, lse_active[layer, head])
            sums = np.exp(s - m[:, None]).sum(axis=1)
            if lse_active is not None:
                sums += np.exp(lse_active[layer, head] - m)
            lse = m + np.log(sums)
            total += np.exp(s - lse[:, None]).max(axis=0)
    return total / (num_layers * num_q_heads)


def select(scores, positions, importance, budget, left, right, oldest=False):
    """Ranks rows and packs bursts; returns the chosen positions in the order taken."""
    if oldest:
        anchors = np.sort(positions)
    else:
        order = np.lexsort((positions, -importance, -scores))
        anchors = positions[order]
    stored = set(positions.tolist())
    taken = set()
    chosen = []
    for x in anchors.tolist():
        for p in range(x - left, x + right + 1):
            if p in stored and p not in taken:
                taken.add(p)
                chosen.append(p)
                if len(chosen) == budget:
                    return chosen
    return chosen


def load_case(case_dir):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    g = case["geometry"]
    files = case["files"]

    def raw(name, dtype):
        return np.fromfile(os.path.join(case_dir, files[name]), dtype=dtype)

    n, t = case["num_rows"], case["signal_tokens"]
    L, hq, hkv, d = g["num_layers"], g["num_q_heads"], g["num_kv_heads"], g["head_dim"]
    inputs = {
        "positions": raw("positions", "<i8"),
        "keys": raw("keys", "<f4").reshape(L, hkv, n, d),
        "queries": raw("queries", "<f4").reshape(L, hq, t, d),
        "lse_active": raw("lse_active", "<f4").reshape(L, hq, t) if files.get("lse_active") else None,
        "importance": raw("importance", "<f4") if files.get("importance") else np.zeros(n, "f4"),
    }
    return case, inputs


def check_golden(reference_dir):
    cases = sorted(
        d for d in os.listdir(reference_dir)
        if os.path.isfile(os.path.join(reference_dir, d, "case.json")))
    if not cases:
        print(f"no golden cases under {reference_dir}", file=sys.stderr)
        return 1
    failed = 0
    for name in cases:
        case, x = load_case(os.path.join(reference_dir, name))
        oldest = case["selector"] == "oldest"
        scores = np.zeros(len(x["positions"])) if oldest else score(
            x["keys"], x["queries"], x["lse_active"])
        chosen = select(scores, x["positions"], x["importance"], case["budget"],
                        case["burst_left"], case["burst_right"], oldest)
        ok = chosen == case["expected"]["chosen"]
        failed += not ok
        print(f"{name}: {'OK' if ok else 'MISMATCH'} ({len(chosen)} chosen)")
    return 1 if failed else 0


def blas_name():
    """The BLAS numpy was built against, as numpy reports it."""
    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except TypeError:
        info = getattr(np.__config__, "blas_opt_info", None) or {}
        libs = info.get("libraries") or ["?"]
        return ",".join(libs)


def blas_threads():
    """Threads the BLAS really uses: threadpoolctl's answer when it is installed (the
    benchmark's virtual environment has it), else what the environment asks for."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return ", ".join(f"{p['internal_api']} {p.get('version')}: {p['num_threads']}"
                             for p in pools)
    except ImportError:
        pass
    return os.environ.get("OPENBLAS_NUM_THREADS", "default")


def bench(args):
    rng = np.random.default_rng(args.seed)
    L, hq, hkv, d = args.layers, args.q_heads, args.kv_heads, args.head_dim
    keys = rng.standard_normal((L, hkv, args.rows, d), dtype=np.float32)
    queries = rng.standard_normal((L, hq, args.tokens, d), dtype=np.float32)
    lse = np.full((L, hq, args.tokens), 5.0, dtype=np.float32)
    positions = np.arange(args.rows, dtype=np.int64)
    importance = np.zeros(args.rows, dtype=np.float32)
    times = []
    for run in range(args.runs + 1):  # run 0 warms up
        start = time.perf_counter()
        a = score(keys, queries, lse)
        select(a, positions, importance, args.budget, 2, 20)
        if run > 0:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "impl": "numpy",
        "numpy": np.__version__,
        "blas": blas_name(),
        "blas_threads": blas_threads(),
        "rows": args.rows, "tokens": args.tokens, "layers": L, "q_heads": hq,
        "kv_heads": hkv, "head_dim": d, "budget": args.budget, "runs": args.runs,
        "median_s": statistics.median(times), "min_s": min(times),
    }))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-golden", metavar="DIR")
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--rows", type=int, default=32768)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--q-heads", type=int, default=28)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.check_golden:
        return check_golden(args.check_golden)
    if args.bench:
        return bench(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
