"""First-stage cache compression policies for the quality benchmark.

Each policy ranks the rows of a cache and keeps a budget of them: ``keep(...)`` returns the
row indices (ascending) of the kept rows. Every policy keeps the first ``sinks`` rows
(attention sinks) and the most recent ``window`` rows; the rest of the budget goes to the
highest-ranked middle rows. A larger budget keeps a superset of a smaller one (the same
ranking), which is what the "matched no repair at B + K" condition needs.

- ``snapkv``: importance = the softmax weight of the observation rows' queries (the turn-1
  answer tokens) on each row, max over observation rows, mean over heads and layers.
- ``h2o``: importance = the accumulated softmax weight every query so far put on each row
  (sum over tokens), mean over heads and layers (heavy hitters).
- ``streaming``: StreamingLLM: sinks + the most recent rows only (importance = position).
"""

from __future__ import annotations

import numpy as np

POLICIES = ("snapkv", "h2o", "streaming")


def snapkv_importance(attn_max: np.ndarray) -> np.ndarray:
    """attn_max [L, Hq, rows] (max over the observation rows) -> [rows]."""
    return attn_max.mean(axis=(0, 1)).astype(np.float32)


def h2o_importance(attn_sum: np.ndarray) -> np.ndarray:
    """attn_sum [L, Hq, rows] (sum over every query so far) -> [rows]."""
    return attn_sum.mean(axis=(0, 1)).astype(np.float32)


def streaming_importance(positions: np.ndarray) -> np.ndarray:
    """Recency: later rows rank higher."""
    p = np.asarray(positions, np.float64)
    return (p / max(1.0, float(p.max()) if len(p) else 1.0)).astype(np.float32)


def keep(importance: np.ndarray, budget: int, sinks: int = 4, window: int = 128) -> np.ndarray:
    """Indices of the rows to keep: the first ``sinks``, the last ``window`` and the
    ``budget - sinks - window`` middle rows of highest importance (ties: earlier row)."""
    n = len(importance)
    if budget >= n:
        return np.arange(n)
    if budget < sinks + window:
        raise ValueError(f"budget {budget} < sinks {sinks} + window {window}")
    fixed = np.concatenate([np.arange(min(sinks, n)), np.arange(max(sinks, n - window), n)])
    middle = np.arange(sinks, max(sinks, n - window))
    order = middle[np.lexsort((middle, -importance[middle]))]
    chosen = order[:budget - len(fixed)]
    return np.sort(np.concatenate([fixed, chosen]))
