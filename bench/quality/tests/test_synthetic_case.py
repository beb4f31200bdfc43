"""RepairKV against the Random-K and Oldest-K controls on the synthetic KV-level needle case
(bench/quality/synthetic_case.py), through a real kvtierd ($KVTIERD).

32 cases (seeds 0..31) of 1,024 rows in SmolLM2-135M's attention geometry (6 layers, 9 query
heads, 3 KV heads, head_dim 64): 4 sinks and the last 128 rows stay active, the other 892
rows are offloaded; among them two target needles of 8 rows (what the next turn's queries look
for: n = 16 target rows) and one distractor needle. Each case is repaired with every selector
at K = 16, 32, 64, 96, in single-row packing (burst 0/0) and in kvtierd's default bursts (2/20).

The margins, all fixed by the seeds (the test is deterministic) but chosen so that no
plausible noise could produce them:

- Random-K, single rows: std::shuffle over the offloaded positions takes a uniformly random
  K-subset of the M = 892 rows, so a case's target hits X ~ Hypergeometric(M, n = 16, K)
  (mean K·n/M, e.g. 1.15 rows of 16 at K = 64) and the total over the C = 32 independent
  cases is the C-fold convolution of that pmf. Its observed total must lie in the central
  interval that leaves at most 1e-6 probability in each tail; RepairKV's total must lie
  above that interval's upper end (its probability under the random null is printed and
  must be below 1e-12).
- RepairKV recall (target rows among those returned / n) >= 0.9 on average at every K >= n
  for single rows, and at K >= 64 for bursts (a needle of 8 rows needs at most 29 rows of
  2/20 bursts, whatever row of it is the first anchor).
- The paired per-case difference recall(RepairKV) - recall(Random-K) is at least 10
  standard errors of its mean (sample s.d. / sqrt(C)) at every K and packing, and at least
  0.5 (0.25 for bursts at K = 16, where one 2/20 burst holds at most 8 of the 16 rows).
- Oldest-K returns exactly the K oldest offloaded rows.
- Every returned row's K and V bytes equal the offloaded ones.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import synthetic_case as sc  # noqa: E402

kvtier = pytest.importorskip("kvtier")
import kvtier.testing  # noqa: E402

CASES = 32
BUDGETS = (16, 32, 64, 96)
TAIL = 1e-6  # probability left in each tail of the random selector's null distribution
MIN_STANDARD_ERRORS = 10.0
CFG = sc.CaseConfig()


@pytest.fixture(scope="module")
def results():
    with kvtier.testing.Daemon() as daemon:
        with kvtier.Client(daemon.unix_target, timeout=120.0) as client:
            rows, failures = sc.run_cases(client, CFG, range(CASES), BUDGETS)
    table = sc.summarize(rows)
    print(f"\n{CASES} cases, M = {CFG.num_offloaded} offloaded rows, "
          f"n = {CFG.num_target_rows} target rows each")
    for (packing, selector, budget), (mean, se, _) in table.items():
        print(f"  {packing:6} {selector:8} K={budget:<3} recall {mean:.3f} (s.e. {se:.3f})")
    return rows, failures, table


def _hits(rows, packing, selector, budget):
    """Per-case target hits, in seed order."""
    picked = sorted((r for r in rows if (r["packing"], r["selector"], r["budget"])
                     == (packing, selector, budget)), key=lambda r: r["seed"])
    assert len(picked) == CASES
    return np.array([r["target_hits"] for r in picked])


def test_returned_rows_are_the_offloaded_bytes(results):
    rows, failures, _ = results
    assert len(rows) == CASES * len(BUDGETS) * len(sc.SELECTORS) * len(sc.PACKINGS)
    assert failures == []


def test_hypergeometric_pmf_is_a_distribution():
    # The null distribution the next test relies on: sums to 1, mean K*n/M.
    m, n = CFG.num_offloaded, CFG.num_target_rows
    for k in BUDGETS:
        pmf = sc.hypergeom_pmf(m, n, k)
        assert math.isclose(pmf.sum(), 1.0, rel_tol=1e-12)
        assert math.isclose((np.arange(len(pmf)) * pmf).sum(), k * n / m, rel_tol=1e-9)
    total = sc.sum_of_iid_pmf(sc.hypergeom_pmf(m, n, 64), CASES)
    assert math.isclose(total.sum(), 1.0, rel_tol=1e-9)
    lo, hi = sc.central_interval(total, TAIL)
    assert total[:lo].sum() <= TAIL and total[hi + 1:].sum() <= TAIL
    assert lo <= CASES * 64 * n / m <= hi


@pytest.mark.parametrize("budget", BUDGETS)
def test_random_k_is_hypergeometric_and_repairkv_is_not(results, budget):
    rows, _, _ = results
    m, n = CFG.num_offloaded, CFG.num_target_rows
    null = sc.sum_of_iid_pmf(sc.hypergeom_pmf(m, n, budget), CASES)
    lo, hi = sc.central_interval(null, TAIL)
    random_total = int(_hits(rows, "single", "random", budget).sum())
    repair_total = int(_hits(rows, "single", "repairkv", budget).sum())
    p_repair = float(null[repair_total:].sum()) if repair_total < len(null) else 0.0
    print(f"K={budget}: Random-K total {random_total}, null mean "
          f"{CASES * budget * n / m:.1f}, central interval [{lo}, {hi}]; RepairKV total "
          f"{repair_total} of {CASES * n}, P(null >= it) = {p_repair:.3g}")
    assert lo <= random_total <= hi
    assert repair_total > hi
    assert p_repair < 1e-12


@pytest.mark.parametrize("packing,min_budget", [("single", CFG.num_target_rows),
                                                ("bursts", 64)])
def test_repairkv_recovers_the_needles(results, packing, min_budget):
    _, _, table = results
    for budget in BUDGETS:
        if budget >= min_budget:
            mean, _, _ = table[(packing, "repairkv", budget)]
            assert mean >= 0.9, (packing, budget, mean)


@pytest.mark.parametrize("packing", sorted(sc.PACKINGS))
@pytest.mark.parametrize("budget", BUDGETS)
def test_repairkv_beats_random_k_by_many_standard_errors(results, packing, budget):
    rows, _, _ = results
    n = CFG.num_target_rows
    diff = (_hits(rows, packing, "repairkv", budget)
            - _hits(rows, packing, "random", budget)) / n
    se = diff.std(ddof=1) / math.sqrt(CASES)
    print(f"{packing} K={budget}: mean paired difference {diff.mean():.3f}, s.e. {se:.4f}")
    # 2/20 bursts at K = 16 take at most one needle (8 of the 16 target rows): recall <= 0.5.
    floor = 0.25 if (packing, budget) == ("bursts", 16) else 0.5
    assert diff.mean() >= floor
    assert diff.mean() >= MIN_STANDARD_ERRORS * se


@pytest.mark.parametrize("packing", sorted(sc.PACKINGS))
def test_oldest_k_returns_the_oldest_offloaded_rows(results, packing):
    rows, _, _ = results
    offloaded = sc.make_case(CFG, 0).offloaded  # the same positions in every case
    for r in rows:
        if r["selector"] == "oldest" and r["packing"] == packing:
            assert np.array_equal(np.sort(r["chosen"]), offloaded[:r["budget"]]), r["budget"]
