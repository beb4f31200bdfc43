#!/usr/bin/env python3
"""The synthetic KV-level needle case: KV repair through a real kvtierd, no model.

Each case is what an engine has in hand at a pause, with random numbers in place of a
model's activations:

- a context of ``num_tokens`` KV rows in SmolLM2-135M's attention geometry (9 query heads,
  3 KV heads, head_dim 64; ``num_layers`` of its 30 layers), keys rotated by RoPE at their
  positions, float16, in kvtier's layout ``[layer][row][kv_head][head_dim]``;
- planted needle spans of ``needle_len`` consecutive rows: ``num_targets`` target needles
  (what the next turn asks for) and ``num_distractors`` distractor needles (what the turn
  before asked for: just as salient, but the next turn does not look at them). Each needle
  has its own key direction per layer and KV head in the lowest RoPE frequencies (as in
  examples/toy_model.py), so a query at a later position still matches it;
- a first-stage compression that keeps ``sinks`` attention sinks and the ``recent`` most
  recent rows; every other row is evicted and offloaded to kvtierd;
- the next turn's signal: post-RoPE queries ``[layer][q_head][token][head_dim]`` float32
  for ``signal_tokens`` tokens after the context, in which a random half of the query
  heads of each layer are retrieval heads (each signal token of a retrieval head looks for
  one target needle, in turn) and the other heads look at nothing in particular, plus the
  log-sum-exp of the active cache per layer, query head and token.

Three selectors choose K rows of the offloaded ones through kvtierd: RepairKV (the default
selector, scoring the signal), Random-K (``selector="random"``, anchors shuffled by a seed)
and Oldest-K (``selector="oldest"``). Two packings: kvtierd's default bursts (2 rows before
and 20 after each anchor) and single rows (``burst_left = burst_right = 0``), under which
Random-K is a uniformly random K-subset of the offloaded rows, so the number of target
rows it recovers is hypergeometric: :func:`hypergeom_pmf`, :func:`sum_of_iid_pmf`.

Recall = the fraction of the target needles' rows among the K returned. Every returned
row's K and V bytes are compared with what was offloaded.

    KVTIERD=build/release/server/kvtierd build/venv/bin/python bench/quality/synthetic_case.py
    build/venv/bin/python bench/quality/synthetic_case.py --server unix://kvtier-data/kvtierd.sock
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field

import numpy as np

ROPE_BASE = 10000.0
SELECTORS = ("repairkv", "random", "oldest")
# name -> (burst_left, burst_right); "bursts" is kvtierd's default packing.
PACKINGS = {"bursts": (2, 20), "single": (0, 0)}


@dataclass(frozen=True)
class CaseConfig:
    """The shape of every case. The defaults are the CI-sized case of the test."""

    num_layers: int = 6
    num_q_heads: int = 9
    num_kv_heads: int = 3
    head_dim: int = 64
    num_tokens: int = 1024
    sinks: int = 4
    recent: int = 128
    num_targets: int = 2
    num_distractors: int = 1
    needle_len: int = 8
    signal_tokens: int = 16
    key_strength: float = 8.0  # the needle key's length along its direction (a random
    # key's length is about sqrt(head_dim) = 8, so needle keys are not longer than others)
    key_noise: float = 0.25  # per-dimension noise on needle keys
    query_strength: float = 4.0  # a retrieval query's length along its needle's direction
    query_noise: float = 1.0  # per-dimension noise on every query
    direction_width: int = 4  # RoPE frequency pairs the needle directions live in

    @property
    def group(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    @property
    def num_offloaded(self) -> int:
        return self.num_tokens - self.sinks - self.recent

    @property
    def num_target_rows(self) -> int:
        return self.num_targets * self.needle_len


@dataclass
class Case:
    """One generated case (arrays in kvtier's layouts)."""

    config: CaseConfig
    seed: int
    keys: np.ndarray  # [L][N][Hkv][D] float16, post-RoPE
    values: np.ndarray  # [L][N][Hkv][D] float16
    active: np.ndarray  # positions kept in the engine's cache, ascending
    offloaded: np.ndarray  # evicted positions, ascending
    targets: np.ndarray  # rows of the target needles, ascending
    distractors: np.ndarray  # rows of the distractor needles, ascending
    queries: np.ndarray  # [L][Hq][T][D] float32, post-RoPE
    lse: np.ndarray  # [L][Hq][T] float32, log-sum-exp over the active rows
    retrieval_heads: np.ndarray = field(repr=False, default=None)  # [L][Hq] bool


def rope(x: np.ndarray, positions: np.ndarray, base: float = ROPE_BASE) -> np.ndarray:
    """Rotary embedding, rotate-half convention (Llama/SmolLM2): dimension j pairs with
    j + D/2 at frequency base^(-2j/D). x: [..., n, D]; positions: [n]. float64 out."""
    d = x.shape[-1]
    inv_freq = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)
    x64 = x.astype(np.float64)
    rotated = np.concatenate([-x64[..., d // 2:], x64[..., : d // 2]], axis=-1)
    return x64 * cos + rotated * sin


def _directions(rng: np.random.Generator, cfg: CaseConfig, count: int) -> np.ndarray:
    """``count`` unit vectors per layer and KV head, [count][L][Hkv][D], supported on the
    lowest RoPE frequencies (their rotation over the context is small)."""
    d, w = cfg.head_dim, cfg.direction_width
    dims = np.r_[d // 2 - w: d // 2, d - w: d]
    u = np.zeros((count, cfg.num_layers, cfg.num_kv_heads, d))
    u[..., dims] = rng.standard_normal((count, cfg.num_layers, cfg.num_kv_heads, len(dims)))
    return u / np.linalg.norm(u, axis=-1, keepdims=True)


def _needle_starts(rng: np.random.Generator, cfg: CaseConfig, count: int) -> np.ndarray:
    """Start positions of ``count`` needle spans inside the evicted range, at least one
    default burst window (23 rows) apart so that no burst covers two needles."""
    lo, hi = cfg.sinks, cfg.num_tokens - cfg.recent - cfg.needle_len  # start in [lo, hi]
    gap = cfg.needle_len + sum(PACKINGS["bursts"]) + 1
    for _ in range(1000):
        starts = np.sort(rng.integers(lo, hi + 1, size=count))
        if count < 2 or np.diff(starts).min() >= gap:
            return starts
    raise ValueError("cannot place the needles: the context is too short")


def make_case(cfg: CaseConfig, seed: int) -> Case:
    """Generates one case from ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    L, n, hkv, hq, d = (cfg.num_layers, cfg.num_tokens, cfg.num_kv_heads, cfg.num_q_heads,
                        cfg.head_dim)
    num_needles = cfg.num_targets + cfg.num_distractors
    starts = _needle_starts(rng, cfg, num_needles)
    order = rng.permutation(num_needles)  # which spans are targets
    spans = [np.arange(s, s + cfg.needle_len) for s in starts[order]]
    directions = _directions(rng, cfg, num_needles)

    keys = rng.standard_normal((L, n, hkv, d))
    values = rng.standard_normal((L, n, hkv, d))
    for j, span in enumerate(spans):
        keys[:, span] = cfg.key_strength * directions[j][:, None] + cfg.key_noise * (
            rng.standard_normal((L, len(span), hkv, d)))
    positions = np.arange(n)
    keys = rope(keys.transpose(0, 2, 1, 3), positions).transpose(0, 2, 1, 3)
    keys, values = keys.astype(np.float16), values.astype(np.float16)

    active = np.r_[0:cfg.sinks, n - cfg.recent:n]
    offloaded = np.setdiff1d(positions, active)

    # The signal: retrieval heads look for the targets (token t: target t % num_targets).
    t = cfg.signal_tokens
    retrieval = np.zeros((L, hq), bool)
    for layer in range(L):
        retrieval[layer, rng.choice(hq, size=(hq + 1) // 2, replace=False)] = True
    kv_of_head = np.arange(hq) // cfg.group
    which = np.arange(t) % cfg.num_targets
    look = directions[which][:, :, kv_of_head, :]  # [T][L][Hq][D]
    look = look.transpose(1, 2, 0, 3) * retrieval[:, :, None, None]  # [L][Hq][T][D]
    pre = cfg.query_strength * look + cfg.query_noise * rng.standard_normal((L, hq, t, d))
    queries = rope(pre, np.arange(n, n + t)).astype(np.float32)

    s = scores(queries, keys[:, active], cfg)
    lse = logsumexp(s).astype(np.float32)
    targets = np.sort(np.concatenate(spans[:cfg.num_targets]))
    distractors = np.sort(np.concatenate(spans[cfg.num_targets:])) if cfg.num_distractors \
        else np.zeros(0, np.int64)
    return Case(config=cfg, seed=seed, keys=keys, values=values, active=active,
                offloaded=offloaded, targets=targets, distractors=distractors,
                queries=queries, lse=lse, retrieval_heads=retrieval)


def scores(queries: np.ndarray, keys: np.ndarray, cfg: CaseConfig) -> np.ndarray:
    """q.k/sqrt(D): queries [L][Hq][T][D], keys [L][n][Hkv][D] -> [L][Hq][T][n] float64."""
    k = keys.astype(np.float64)[:, :, np.arange(cfg.num_q_heads) // cfg.group, :]
    return np.einsum("lhtd,lnhd->lhtn", queries.astype(np.float64), k) / math.sqrt(cfg.head_dim)


def logsumexp(s: np.ndarray) -> np.ndarray:
    m = s.max(axis=-1, keepdims=True)
    return np.squeeze(m, -1) + np.log(np.exp(s - m).sum(axis=-1))


def reference_ranking(case: Case) -> np.ndarray:
    """DESIGN.md §1's anchor order, computed here in float64 (for diagnostics): offloaded
    positions by descending a_i, then ascending position."""
    s = scores(case.queries, case.keys[:, case.offloaded], case.config)
    norm = np.logaddexp(case.lse.astype(np.float64), logsumexp(s))
    a = np.exp(s - norm[..., None]).max(axis=2).mean(axis=(0, 1))
    return case.offloaded[np.lexsort((case.offloaded, -a))]


# --- The random selector's null distribution -----------------------------------------------


def hypergeom_pmf(population: int, successes: int, draws: int) -> np.ndarray:
    """P(X = x), x = 0..min(successes, draws): the number of successes among ``draws``
    rows drawn without replacement from ``population`` rows of which ``successes`` are
    successes (exact, from binomial coefficients)."""
    total = math.comb(population, draws)
    return np.array([math.comb(successes, x) * math.comb(population - successes, draws - x)
                     / total for x in range(min(successes, draws) + 1)])


def sum_of_iid_pmf(pmf: np.ndarray, count: int) -> np.ndarray:
    """The pmf of the sum of ``count`` independent variables with pmf ``pmf``."""
    out = np.array([1.0])
    for _ in range(count):
        out = np.convolve(out, pmf)
    return out


def central_interval(pmf: np.ndarray, tail: float) -> tuple[int, int]:
    """The smallest lo and largest hi with P(X < lo) <= tail and P(X > hi) <= tail."""
    cdf = np.cumsum(pmf)
    lo = int(np.searchsorted(cdf, tail, side="right"))  # first x with P(X <= x) > tail
    sf = np.cumsum(pmf[::-1])[::-1]  # sf[x] = P(X >= x)
    above = np.nonzero(sf <= tail)[0]
    hi = int(above[0]) - 1 if len(above) else len(pmf) - 1
    return lo, hi


# --- Running a case through kvtierd -----------------------------------------------------------


def offload_case(client, case: Case) -> str:
    """Opens a session with the case's geometry and offloads every evicted row; returns the
    session id."""
    import kvtier  # noqa: PLC0415 (the module's math works without the SDK)

    cfg = case.config
    geometry = kvtier.Geometry(num_layers=cfg.num_layers, num_q_heads=cfg.num_q_heads,
                               num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                               dtype="float16")
    sid = client.open_session(geometry, ttl_seconds=600).session_id
    result = client.offload(sid, case.offloaded, case.keys[:, case.offloaded],
                            case.values[:, case.offloaded])
    if result.rows_completed != len(case.offloaded):
        raise RuntimeError(f"offload completed {result.rows_completed} of "
                           f"{len(case.offloaded)} rows")
    return sid


def repair(client, sid: str, case: Case, selector: str, packing: str, budget: int):
    """One Repair of the case's session; returns the kvtier.RepairResult."""
    left, right = PACKINGS[packing]
    return client.repair(sid, case.queries, budget, lse=case.lse, selector=selector,
                         burst_left=left, burst_right=right, seed=case.seed + 1,
                         return_mode="payload")


def check_payload(case: Case, result, budget: int) -> list[str]:
    """What must hold for every returned selection: K distinct offloaded rows, and their K
    and V bytes equal to the offloaded ones. Returns the failures (empty when fine)."""
    chosen = np.asarray(result.chosen, np.int64)
    problems = []
    if len(chosen) != min(budget, len(case.offloaded)):
        problems.append(f"{len(chosen)} rows returned for budget {budget}")
    if len(np.unique(chosen)) != len(chosen):
        problems.append("duplicate positions returned")
    if not np.isin(chosen, case.offloaded).all():
        problems.append("a returned position was never offloaded")
        return problems
    if result.keys is None or result.values is None:
        problems.append("no payload returned")
    elif not (np.array_equal(result.keys.view(np.uint16), case.keys[:, chosen].view(np.uint16))
              and np.array_equal(result.values.view(np.uint16),
                                 case.values[:, chosen].view(np.uint16))):
        problems.append("returned K/V bytes differ from the offloaded rows")
    return problems


def run_cases(client, cfg: CaseConfig, seeds, budgets, selectors=SELECTORS,
              packings=tuple(PACKINGS)) -> tuple[list[dict], list[str]]:
    """Every case x packing x selector x budget through kvtierd, each repair against the
    full set of offloaded rows. Returns one row per repair (seed, packing, selector, budget,
    target_hits, distractor_hits, recall, chosen) and the check failures."""
    rows, failures = [], []
    for seed in seeds:
        case = make_case(cfg, seed)
        sid = offload_case(client, case)
        try:
            for packing in packings:
                for selector in selectors:
                    for budget in budgets:
                        result = repair(client, sid, case, selector, packing, budget)
                        failures += [f"seed {seed} {selector} {packing} K={budget}: {p}"
                                     for p in check_payload(case, result, budget)]
                        chosen = np.asarray(result.chosen, np.int64)
                        if result.candidates != len(case.offloaded):
                            failures.append(f"seed {seed} {selector} {packing} K={budget}: "
                                            f"{result.candidates} candidates, not "
                                            f"{len(case.offloaded)}")
                        # Repair marks the chosen rows promoted (no longer candidates); the
                        # engine evicts them again before the next condition, as it would
                        # after the turn: re-offloading makes them candidates again.
                        back = np.sort(chosen)
                        client.offload(sid, back, case.keys[:, back], case.values[:, back])
                        hits = int(np.isin(case.targets, chosen).sum())
                        rows.append(dict(
                            seed=seed, packing=packing, selector=selector, budget=budget,
                            target_hits=hits,
                            distractor_hits=int(np.isin(case.distractors, chosen).sum()),
                            recall=hits / len(case.targets), chosen=chosen))
        finally:
            client.release(sid, whole_session=True)
    return rows, failures


def summarize(rows: list[dict]) -> dict:
    """(packing, selector, budget) -> (mean recall, its standard error, cases)."""
    out = {}
    for key in sorted({(r["packing"], r["selector"], r["budget"]) for r in rows}):
        recall = np.array([r["recall"] for r in rows
                           if (r["packing"], r["selector"], r["budget"]) == key])
        se = recall.std(ddof=1) / math.sqrt(len(recall)) if len(recall) > 1 else float("nan")
        out[key] = (float(recall.mean()), float(se), len(recall))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="kvtierd address (default: start $KVTIERD)")
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--budgets", default="16,32,64,96")
    parser.add_argument("--tokens", type=int, default=CaseConfig.num_tokens)
    args = parser.parse_args()

    import kvtier  # noqa: PLC0415
    import kvtier.testing  # noqa: PLC0415

    cfg = CaseConfig(num_tokens=args.tokens)
    budgets = [int(b) for b in args.budgets.split(",")]
    daemon = None if args.server else kvtier.testing.Daemon()
    try:
        with kvtier.Client(args.server or daemon.unix_target, timeout=120.0) as client:
            rows, failures = run_cases(client, cfg, range(args.cases), budgets)
    finally:
        if daemon:
            daemon.stop()
    print(f"{args.cases} cases, {cfg.num_offloaded} offloaded rows, "
          f"{cfg.num_target_rows} target rows each")
    print("packing  selector  K    recall   s.e.   K/M (expected recall of single-row Random-K)")
    for (packing, selector, budget), (mean, se, _) in summarize(rows).items():
        print(f"{packing:8} {selector:9} {budget:<4} {mean:7.3f} {se:6.3f}   "
              f"{budget / cfg.num_offloaded:.3f}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
