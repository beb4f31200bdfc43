#!/usr/bin/env python3
"""Multi-turn needle-in-a-haystack benchmark of KV repair through kvtierd (issue 6).

Per example: a haystack of filler sentences with four needles "The special code for <name>
is <5-digit number>." at random depths. Turn 1 asks for two of them; the engine
(engine.py, SmolLM2-135M-Instruct in numpy) answers on the full cache. A first-stage policy
(policies.py) then compresses the conversation's cache to a base budget B and every evicted
row is offloaded to kvtierd (one session per example and policy, layer by layer, float32 so
that repaired rows come back bit-exact). Turn 2 asks for the other two needles under each
condition; score = fraction of the turn-2 values present in the answer.

Conditions (K = promotion budget): full (no compression); norepair (B rows); matched
(B + K rows of the same first-stage ranking); repairkv (kvtierd Repair with the exact
post-RoPE turn-2 prompt queries of every layer and head and the active-cache LSE); random
and oldest (kvtierd's selector controls, same packing); staleq (the turn-1 question's
queries as the signal); wrongq (another example's turn-2 queries). Promoted rows are
inserted at their original positions; after each repair they are offloaded again so that
the next condition sees the same candidates.

Answers are written in a fixed form: the assistant turn is primed with "The special code
for <name> is" for each asked name and the model writes the number (greedy, at most 7
tokens), which keeps the 135M model's answers scorable (see docs/QUALITY.md).

    /tmp/h9venv/bin/python bench/quality/needle_bench.py --examples 4 --context 2048
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engine  # noqa: E402
import policies  # noqa: E402

NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene",
         "James", "Karen", "Louis", "Maria", "Nora", "Oscar", "Peter", "Rosa", "Simon",
         "Tina", "Victor"]
FILLER = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
          "There and back again.", "The river flows to the sea.", "Birds sing in the morning.",
          "The wind moves the trees.", "Clouds drift over the hills.",
          "The road goes on and on.", "A cat sleeps by the fire.", "The bell rings at noon."]
CONDITIONS = ("full", "norepair", "matched", "repairkv", "random", "oldest", "staleq",
              "wrongq")
KV_CONDITIONS = ("repairkv", "random", "oldest", "staleq", "wrongq")
ANSWER_TOKENS = 7  # " " + five digits + "."


class Example:
    pass


def make_example(model, rng, context: int, needles: int = 4) -> Example:
    tok = model.tokenizer
    ex = Example()
    names = [str(x) for x in rng.choice(NAMES, needles, replace=False)]
    values = [int(v) for v in rng.choice(np.arange(10000, 100000), needles, replace=False)]
    depths = np.sort(rng.uniform(0.05, 0.95, needles))
    order = rng.permutation(needles)
    ex.names, ex.values, ex.depths = names, values, depths
    ex.turn1 = [int(i) for i in order[:needles // 2]]
    ex.turn2 = [int(i) for i in order[needles // 2:]]
    sents: list[str] = []
    per = len(tok.encode(" ".join(FILLER))) / len(FILLER)
    target = int(context / per)
    sents = [str(s) for s in rng.choice(FILLER, target)]
    while len(tok.encode(" ".join(sents))) < context - 80:
        sents.extend(str(s) for s in rng.choice(FILLER, 16))
    while len(tok.encode(" ".join(sents))) > context - 40 and len(sents) > 8:
        sents = sents[:-4]
    for i in sorted(range(needles), key=lambda j: -depths[j]):
        sents.insert(int(depths[i] * len(sents)),
                     f"The special code for {names[i]} is {values[i]}.")
    ex.haystack = " ".join(sents)
    q1 = " and ".join(names[i] for i in ex.turn1)
    q2 = " and ".join(names[i] for i in ex.turn2)
    ex.user1 = (f"{ex.haystack}\n\nWhat are the special codes for {q1}?")
    ex.user2 = f"What are the special codes for {q2}?"
    ex.prompt1 = model.chat_prompt(ex.user1)
    ex.prompt2 = model.chat_prompt(ex.user2, add_system=False)
    # Token positions of each needle's number (for the needle-row recall diagnostic).
    text = "<|im_start|>system\n" + model.SYSTEM + "<|im_end|>\n<|im_start|>user\n" + ex.user1
    enc = tok._tok.encode(text, add_special_tokens=False)
    ex.needle_rows = []
    for i in range(needles):
        s = text.index(f"The special code for {names[i]} is {values[i]}.")
        e = s + len(f"The special code for {names[i]} is {values[i]}.")
        ex.needle_rows.append(np.asarray(
            [t for t, (a, b) in enumerate(enc.offsets) if a >= s and b <= e], np.int64))
    return ex


def answer(model, caches, names, first_prefix, first_positions):
    """Forced-form answers for several caches: for each name, "The special code for <name>
    is" then up to ANSWER_TOKENS greedy tokens. ``first_prefix`` (e.g. the turn's prompt) is
    prefilled before the first name. Returns (texts, next free position, the last generated
    token not yet in the cache, every token fed to the cache) per cache."""
    tok = model.tokenizer
    n = len(caches)
    texts = [""] * n
    pending = [list(first_prefix) for _ in range(n)]
    fed: list[list[int]] = [[] for _ in range(n)]
    pos = list(first_positions)
    for j, name in enumerate(names):
        seg = tok.encode(("" if j == 0 else " ") + f"The special code for {name} is")
        prompts = [pending[i] + seg for i in range(n)]
        outs = model.generate_batch(prompts, caches, ANSWER_TOKENS, pos, strip_eos=False)
        for i in range(n):
            got = outs[i]
            fed[i] += prompts[i] + got[:-1]
            pos[i] += len(prompts[i]) + max(0, len(got) - 1)
            texts[i] += ("" if j == 0 else " ") + f"The special code for {name} is" + \
                tok.decode([t for t in got if t not in model.eos_ids])
            pending[i] = [t for t in got[-1:] if t not in model.eos_ids]
    return texts, pos, pending, fed


def hits(text: str, values) -> list[bool]:
    found = set(re.findall(r"\d{5}", text.replace(" ", "")))
    return [str(v) in found for v in values]


class Bench:
    def __init__(self, args, model, client):
        self.args, self.model, self.client = args, model, client
        self.lat_rows: list[dict] = []

    def prepare(self, ex: Example, policy: str):
        """Turn 1 on the full cache; the first-stage importance of every row; the stale
        (turn-1 question) queries."""
        m, a = self.model, self.args
        n1 = len(ex.prompt1)
        cache = m.new_cache()
        t0 = time.perf_counter()
        want_h2o = policy == "h2o"
        # The prompt's last token is fed with the first answer segment (answer()).
        st = m.forward(ex.prompt1[:-1], np.arange(n1 - 1), cache, capture=want_h2o,
                       last_logits_only=True)
        ex.prefill_s = time.perf_counter() - t0
        texts, pos, pending, fed = answer(m, [cache], [ex.names[i] for i in ex.turn1],
                                          [ex.prompt1[-1]], [n1 - 1])
        ex.answer1 = texts[0]
        ex.turn1_hits = hits(ex.answer1, [ex.values[i] for i in ex.turn1])
        ans_end = pos[0]
        close = pending[0] + m.turn_suffix()
        m.forward(close, np.arange(ans_end, ans_end + len(close)), cache)
        tokens = list(ex.prompt1[:-1]) + fed[0] + close
        assert len(tokens) == len(cache) == int(cache.positions[-1]) + 1
        ex.n_ctx = len(tokens)
        # Observation passes over the rows before the question tail (the same attention as
        # in turn 1): A, the question tail (its queries are StaleQ's signal); B, the answer
        # tokens (SnapKV: their attention, max over them, mean over heads and layers).
        obs = n1 - a.stale_tokens
        probe = cache.keep(np.arange(obs))
        st_a = m.forward(tokens[obs:n1], np.arange(obs, n1), probe, capture=True,
                         last_logits_only=True)
        ex.stale_queries = np.ascontiguousarray(st_a.queries)
        ex.stale_positions = np.arange(obs, n1)
        st_b = m.forward(tokens[n1:ans_end], np.arange(n1, ans_end), probe, capture=True,
                         last_logits_only=True)

        def pad(v):
            out = np.zeros(len(cache), np.float64)
            out[:len(v)] = v
            return out
        if policy == "snapkv":
            importance = pad(policies.snapkv_importance(st_b.attn_max))
        elif policy == "h2o":
            importance = (pad(policies.h2o_importance(st.attn_sum))
                          + pad(policies.h2o_importance(st_b.attn_sum)))
        else:
            importance = policies.streaming_importance(cache.positions)
        ex.importance = importance.astype(np.float32)
        ex.full_cache = cache
        return ex

    def run_example(self, idx: int, ex: Example, policy: str, donor, writer, flush):
        m, a, client = self.model, self.args, self.client
        full = ex.full_cache
        n = len(full)
        imp = ex.importance
        keep_b = policies.keep(imp, a.budget, a.sinks, a.window)
        cache_b = full.keep(keep_b)
        evicted = np.setdiff1d(np.arange(n), keep_b)
        ev_pos = full.positions[evicted]
        geometry = engine_geometry(m)
        session = client.open_session(geometry, ttl_seconds=3600)
        sid = session.session_id
        try:
            t0 = time.perf_counter()
            for l in range(m.n_layers):
                client.offload(sid, ev_pos, full._k[l:l + 1, evicted], full._v[l:l + 1, evicted],
                               layer_begin=l,
                               importance=imp[evicted] if l == 0 else None)
            offload_s = time.perf_counter() - t0
            # Signals.
            t2_pos = np.arange(ex.n_ctx, ex.n_ctx + len(ex.prompt2))
            probe = cache_b.copy()
            st = m.forward(ex.prompt2, t2_pos, probe, capture=True, last_logits_only=True)
            ex.turn2_queries, ex.turn2_positions = st.queries, t2_pos
            signals = {"repairkv": (st.queries, st.lse)}
            signals["random"] = signals["oldest"] = signals["repairkv"]
            signals["staleq"] = (ex.stale_queries, engine.attention_lse(
                m, ex.stale_queries, ex.stale_positions, cache_b))
            signals["wrongq"] = (donor.turn2_queries, engine.attention_lse(
                m, donor.turn2_queries, donor.turn2_positions, cache_b))
            caches, labels = [full.copy(), cache_b.copy()], [("full", 0), ("norepair", 0)]
            rows_info = [n, len(cache_b)]
            for k in a.ks:
                caches.append(full.keep(policies.keep(imp, a.budget + k, a.sinks, a.window)))
                labels.append(("matched", k))
                rows_info.append(len(caches[-1]))
                for cond in KV_CONDITIONS:
                    q, lse = signals[cond]
                    selector = cond if cond in ("random", "oldest") else "repairkv"
                    t0 = time.perf_counter()
                    r = client.repair(sid, q, k, lse=lse, selector=selector,
                                      seed=a.seed * 1000003 + idx,
                                      request_id=f"ex{idx}-{policy}-{cond}-{k}")
                    wall = time.perf_counter() - t0
                    c = cache_b.copy()
                    chosen = np.asarray(r.chosen, np.int64)
                    at = np.searchsorted(full.positions, chosen)
                    if not (np.array_equal(r.keys, full._k[:, at])
                            and np.array_equal(r.values, full._v[:, at])):
                        raise RuntimeError(f"example {idx} {cond} K={k}: the rows kvtierd "
                                           "returned differ from the rows offloaded")
                    c.insert(chosen, r.keys, r.values)
                    t1 = time.perf_counter()
                    # The rows go back to being evicted for the next condition.
                    client.offload(sid, chosen, r.keys, r.values, layer_begin=0,
                                   importance=imp[at])
                    reoffload = time.perf_counter() - t1
                    tm = r.timings
                    self.lat_rows.append(dict(
                        example=idx, policy=policy, condition=cond, K=k,
                        candidates=r.candidates, signal_tokens=q.shape[2],
                        score_s=tm.score_seconds, select_s=tm.select_seconds,
                        gather_s=tm.gather_seconds, send_s=tm.send_seconds,
                        server_total_s=tm.total_seconds, client_wall_s=wall,
                        reoffload_s=reoffload, payload_bytes=r.payload_bytes,
                        offload_all_s=offload_s))
                    caches.append(c)
                    labels.append((cond, k))
                    rows_info.append(len(c))
            t2_names = [ex.names[i] for i in ex.turn2]
            t2_vals = [ex.values[i] for i in ex.turn2]
            t0 = time.perf_counter()
            texts, _, _, _ = answer(m, caches, t2_names, ex.prompt2,
                                 [ex.n_ctx] * len(caches))
            gen_s = time.perf_counter() - t0
            needle = np.concatenate([ex.needle_rows[i] for i in ex.turn2])
            for (cond, k), c, text, nrows in zip(labels, caches, texts, rows_info):
                h = hits(text, t2_vals)
                recall = float(np.isin(needle, c.positions).mean())
                writer.writerow(dict(
                    example=idx, policy=policy, condition=cond, K=k, B=a.budget,
                    context_tokens=ex.n_ctx, rows=nrows, score=sum(h) / len(h),
                    needle_row_recall=round(recall, 4),
                    turn1_score=sum(ex.turn1_hits) / len(ex.turn1_hits), answer=text))
            flush()
            return gen_s, offload_s
        finally:
            client.release(sid, whole_session=True)


def engine_geometry(m):
    import kvtier
    return kvtier.Geometry(num_layers=m.n_layers, num_q_heads=m.n_q_heads,
                           num_kv_heads=m.n_kv_heads, head_dim=m.head_dim, dtype="float32")


FIELDS = ["example", "policy", "condition", "K", "B", "context_tokens", "rows", "score",
          "needle_row_recall", "turn1_score", "answer"]
LAT_FIELDS = ["example", "policy", "condition", "K", "candidates", "signal_tokens", "score_s",
              "select_s", "gather_s", "send_s", "server_total_s", "client_wall_s",
              "reoffload_s", "payload_bytes", "offload_all_s"]


def summarize(rows, ks):
    """Mean score per (policy, condition, K) printed as a table."""
    from collections import defaultdict
    acc = defaultdict(list)
    for r in rows:
        acc[(r["policy"], r["condition"], int(r["K"]))].append(float(r["score"]))
    for policy in sorted({p for p, _, _ in acc}):
        print(f"policy {policy}: mean turn-2 score (n examples)")
        print("  condition   " + " ".join(f"K={k:<5}" for k in ks))
        for cond in CONDITIONS:
            if cond in ("full", "norepair"):
                v = acc.get((policy, cond, 0), [])
                print(f"  {cond:<10}  {np.mean(v) if v else float('nan'):.3f} (n={len(v)})")
                continue
            cells = [acc.get((policy, cond, k), []) for k in ks]
            print(f"  {cond:<10}  " + " ".join(
                f"{np.mean(c) if c else float('nan'):<7.3f}" for c in cells))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=4)
    p.add_argument("--first_example", type=int, default=0,
                   help="index of the first example (to split one run over several calls)")
    p.add_argument("--context", type=int, default=2048, help="haystack tokens (approx.)")
    p.add_argument("--budget", type=int, default=256, help="base budget B (rows)")
    p.add_argument("--ks", default="8,16,32,48,64,96,128")
    p.add_argument("--policies", default="snapkv", help="comma list of " + ",".join(
        policies.POLICIES))
    p.add_argument("--needles", type=int, default=4,
                   help="needles per haystack; turn 1 asks for half, turn 2 the rest")
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--stale_tokens", type=int, default=24,
                   help="turn-1 question tokens used as the StaleQ signal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server", default=None, help="kvtierd address; default: start one")
    p.add_argument("--kvtierd", default=None,
                   help="binary to start (default $KVTIERD or build/release/server/kvtierd)")
    p.add_argument("--gguf", default=None)
    p.add_argument("--out", default=None, help="CSV path (default bench/quality/results/"
                   "needle-<date>.csv); the latency CSV goes next to it (-latency.csv)")
    a = p.parse_args()
    a.ks = [int(k) for k in a.ks.split(",") if k]
    pols = [x for x in a.policies.split(",") if x]
    for x in pols:
        if x not in policies.POLICIES:
            p.error(f"unknown policy {x}")
    import kvtier
    import kvtier.testing

    out = a.out or os.path.join(HERE, "results", time.strftime("needle-%Y%m%d-%H%M%S.csv"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    lat_out = out[:-4] + "-latency.csv" if out.endswith(".csv") else out + "-latency.csv"

    model = engine.Model.load(a.gguf)
    daemon = None
    if a.server:
        target = a.server
    else:
        binary = a.kvtierd or os.environ.get("KVTIERD") or os.path.join(
            HERE, "..", "..", "build", "release", "server", "kvtierd")
        daemon = kvtier.testing.Daemon(kvtierd=binary)
        target = daemon.unix_target
    client = kvtier.Client(target, timeout=300.0)
    rows = []
    try:
        client.wait_until_serving(timeout=60)
        bench = Bench(a, model, client)
        with open(out, "w", newline="") as f:
            class Tee:
                def __init__(self):
                    self.w = csv.DictWriter(f, FIELDS)
                    self.w.writeheader()

                def writerow(self, r):
                    rows.append(r)
                    self.w.writerow(r)
            writer = Tee()
            for policy in pols:
                # The donor of example 0's WrongQ signal: an extra example (index = N).
                rng = np.random.default_rng([a.seed, a.first_example + a.examples])
                donor = make_example(model, rng, a.context, a.needles)
                bench.prepare(donor, policy)
                t2_pos = np.arange(donor.n_ctx, donor.n_ctx + len(donor.prompt2))
                keep_b = policies.keep(donor.importance, a.budget, a.sinks, a.window)
                st = model.forward(donor.prompt2, t2_pos, donor.full_cache.keep(keep_b),
                                   capture=True, last_logits_only=True)
                donor.turn2_queries, donor.turn2_positions = st.queries, t2_pos
                donor.full_cache = None
                for i in range(a.first_example, a.first_example + a.examples):
                    t0 = time.perf_counter()
                    ex = make_example(model, np.random.default_rng([a.seed, i]), a.context,
                                      a.needles)
                    bench.prepare(ex, policy)
                    gen_s, off_s = bench.run_example(i, ex, policy, donor, writer, f.flush)
                    ex.full_cache = None
                    donor = ex
                    mine = [r for r in rows if r["example"] == i and r["policy"] == policy]
                    sc = {(r["condition"], r["K"]): r["score"] for r in mine}
                    print(f"[{policy} {i + 1}/{a.first_example + a.examples}] "
                          f"ctx {ex.n_ctx} tok, prefill "
                          f"{ex.prefill_s:.1f}s, turn1 {ex.answer1!r}, full {sc[('full', 0)]}"
                          f", norepair {sc[('norepair', 0)]}, K=96 repairkv "
                          f"{sc.get(('repairkv', 96))} matched {sc.get(('matched', 96))} "
                          f"random {sc.get(('random', 96))}; {time.perf_counter() - t0:.0f}s",
                          flush=True)
        with open(lat_out, "w", newline="") as f:
            w = csv.DictWriter(f, LAT_FIELDS)
            w.writeheader()
            w.writerows(bench.lat_rows)
    finally:
        client.close()
        if daemon is not None:
            daemon.stop()
    summarize(rows, a.ks)
    print(f"wrote {out} and {lat_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
