#!/usr/bin/env python3
"""Checks the reference engine against itself and prints what it saw (docs/QUALITY.md):
greedy decoding of a few prompts is deterministic (two runs, same tokens) and coherent
(printed), an easy needle question is answered on the full cache, and prefill throughput.

    /tmp/h9venv/bin/python bench/quality/engine_check.py [--context 4096]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine  # noqa: E402

PROMPTS = ["What is the capital of France?", "Write one sentence about cats.",
           "Name three colors of the rainbow."]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", type=int, default=4096, help="tokens for the prefill timing")
    a = p.parse_args()
    failures = []
    t0 = time.perf_counter()
    m = engine.Model.load()
    print(f"loaded {os.path.basename(m.path)} in {time.perf_counter() - t0:.1f}s: "
          f"{m.n_layers} layers, {m.n_q_heads} query heads, {m.n_kv_heads} KV heads, "
          f"head_dim {m.head_dim}, rope base {m.rope_base:g}")
    tok = m.tokenizer
    for q in PROMPTS:
        runs = [m.generate(m.chat_prompt(q), m.new_cache(), 40) for _ in range(2)]
        print(f"{q!r} -> {tok.decode(runs[0])!r}")
        if runs[0] != runs[1]:
            failures.append(f"{q!r}: two greedy runs differ")
    # Easy needle: one fact in ~1K tokens of filler, asked directly.
    filler = " ".join(["The grass is green. The sky is blue. The sun is yellow."] * 60)
    half = len(filler) // 2
    text = (filler[:half] + " The special code for Alice is 40713. " + filler[half:]
            + "\n\nWhat is the special code for Alice?")
    out = tok.decode(m.generate(m.chat_prompt(text), m.new_cache(), 24))
    print(f"easy needle ({len(m.chat_prompt(text))} tokens) -> {out!r}")
    if "40713" not in out.replace(" ", ""):
        failures.append("easy needle not answered")
    # Prefill throughput.
    ids = (tok.encode(filler) * (a.context // 600 + 2))[:a.context]
    t0 = time.perf_counter()
    m.forward(ids, np.arange(len(ids)), m.new_cache(), last_logits_only=True)
    dt = time.perf_counter() - t0
    print(f"prefill {len(ids)} tokens: {dt:.1f}s, {len(ids) / dt:.0f} tokens/s")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
