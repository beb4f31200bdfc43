"""A toy attention "model" shared by the examples: numpy only, no weights.

It produces what a real engine has in hand at each step of KV repair, with the same shapes
and conventions, so that the examples can show the calls without a GPU or a checkpoint:

- the KV rows of a prompt, keys already rotated by RoPE at their token positions (engines
  cache post-RoPE keys), in kvtier's layout ``[layer][row][kv_head][head_dim]``;
- a planted "needle": a span of positions whose keys point along one direction per layer and
  KV head, with values set to a recognisable marker vector;
- the next turn's post-RoPE queries, ``[layer][q_head][token][head_dim]``, that look for the
  needle (a real engine gets them from the attention layers while it prefills the next turn);
- the log-sum-exp of the active cache per layer, query head and token, and the attention
  output over a set of cached rows (what the model's attention layer computes).

The needle direction lives in the lowest RoPE frequencies (the last pairs of the rotate-half
layout), whose rotation over a few thousand positions is small, so that a query at position
m still matches a key rotated at position n < m: the same reason long-range retrieval in real
models is carried by low-frequency dimensions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

ROPE_BASE = 10000.0


@dataclass(frozen=True)
class Shape:
    """Attention geometry of the toy model (the fields of kvtier.Geometry)."""

    num_layers: int = 4
    num_q_heads: int = 8
    num_kv_heads: int = 2
    head_dim: int = 64

    @property
    def group(self) -> int:
        """Query heads per KV head (GQA): query head h reads KV head h // group."""
        return self.num_q_heads // self.num_kv_heads


def rope(x: np.ndarray, positions: np.ndarray, base: float = ROPE_BASE) -> np.ndarray:
    """Rotary position embedding in the rotate-half convention (GPT-NeoX, Llama, vLLM's
    default ``is_neox_style``): dimension j pairs with j + D/2 at frequency base^(-2j/D).

    x: [..., n, D]; positions: [n]. Returns an array of x's dtype (computed in float64)."""
    d = x.shape[-1]
    inv_freq = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # [D/2]
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [n, D/2]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)  # [n, D]
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)
    x64 = x.astype(np.float64)
    rotated = np.concatenate([-x64[..., d // 2:], x64[..., : d // 2]], axis=-1)
    return (x64 * cos + rotated * sin).astype(x.dtype)


def needle_directions(rng: np.random.Generator, shape: Shape, width: int = 4) -> np.ndarray:
    """One unit vector per layer and KV head, [L][Hkv][D], supported on the ``width`` lowest
    RoPE frequencies (dims D/2-width..D/2-1 and D-width..D-1)."""
    d = shape.head_dim
    dims = np.r_[d // 2 - width: d // 2, d - width: d]
    u = np.zeros((shape.num_layers, shape.num_kv_heads, d))
    u[..., dims] = rng.standard_normal((shape.num_layers, shape.num_kv_heads, len(dims)))
    return u / np.linalg.norm(u, axis=-1, keepdims=True)


@dataclass
class Prompt:
    """A prompt's KV rows and the needle planted in it."""

    keys: np.ndarray  # [L][N][Hkv][D] post-RoPE, the cache dtype
    values: np.ndarray  # [L][N][Hkv][D]
    needle: np.ndarray  # positions of the needle span, ascending
    direction: np.ndarray  # [L][Hkv][D] the needle's key direction (pre-RoPE)
    marker: np.ndarray  # [L][Hkv][D] the needle's value (float32)


def make_prompt(rng: np.random.Generator, shape: Shape, num_tokens: int, needle_start: int,
                needle_len: int = 16, strength: float = 8.0, dtype=np.float16) -> Prompt:
    """KV rows for positions 0..num_tokens-1: random keys and values, except the needle span
    [needle_start, needle_start + needle_len) whose keys are ``strength`` along the needle
    direction and whose values are the marker. Keys are rotated by RoPE at their positions,
    as the engine caches them."""
    L, hkv, d = shape.num_layers, shape.num_kv_heads, shape.head_dim
    keys = rng.standard_normal((L, num_tokens, hkv, d))
    values = rng.standard_normal((L, num_tokens, hkv, d))
    direction = needle_directions(rng, shape)
    marker = rng.standard_normal((L, hkv, d))
    marker *= 4.0 / np.linalg.norm(marker, axis=-1, keepdims=True)
    needle = np.arange(needle_start, needle_start + needle_len)
    keys[:, needle] = strength * direction[:, None] + 0.25 * rng.standard_normal(
        (L, needle_len, hkv, d))
    values[:, needle] = marker[:, None] + 0.1 * rng.standard_normal((L, needle_len, hkv, d))
    # RoPE rotates each row by its own position: [L][N][Hkv][D] -> rotate along N.
    positions = np.arange(num_tokens)
    post = rope(keys.transpose(0, 2, 1, 3), positions).transpose(0, 2, 1, 3)
    return Prompt(keys=post.astype(dtype), values=values.astype(dtype), needle=needle,
                  direction=direction, marker=marker.astype(np.float32))


def make_queries(rng: np.random.Generator, shape: Shape, direction: np.ndarray,
                 first_position: int, num_tokens: int, strength: float = 8.0) -> np.ndarray:
    """The next turn's post-RoPE queries, [L][Hq][T][D] float32, for T tokens at positions
    first_position.. that look for the needle: query head h points along the direction of
    its KV head h // group."""
    L, hq, d = shape.num_layers, shape.num_q_heads, shape.head_dim
    kv_of_head = np.arange(hq) // shape.group
    pre = strength * direction[:, kv_of_head, None, :] + 0.25 * rng.standard_normal(
        (L, hq, num_tokens, d))
    return rope(pre, np.arange(first_position, first_position + num_tokens)).astype(np.float32)


def scores(queries: np.ndarray, keys: np.ndarray, shape: Shape) -> np.ndarray:
    """s = q.k / sqrt(D) for every layer, query head, token and row: queries [L][Hq][T][D],
    keys [L][n][Hkv][D] (any float dtype) -> [L][Hq][T][n] float64."""
    k = keys.astype(np.float64)[:, :, np.arange(shape.num_q_heads) // shape.group, :]
    # k: [L][n][Hq][D]; contract D.
    return np.einsum("lhtd,lnhd->lhtn", queries.astype(np.float64), k) / np.sqrt(shape.head_dim)


def logsumexp(s: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log(sum(exp(s))) along ``axis``."""
    m = np.max(s, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(s - m), axis=axis))


def attention(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, shape: Shape):
    """Attention of the queries over the given rows (all of them visible: they precede the
    queries). Returns (probabilities [L][Hq][T][n], output [L][Hq][T][D])."""
    s = scores(queries, keys, shape)
    p = np.exp(s - logsumexp(s)[..., None])
    v = values.astype(np.float64)[:, :, np.arange(shape.num_q_heads) // shape.group, :]
    return p, np.einsum("lhtn,lnhd->lhtd", p, v)


def report(failures: list[str]) -> int:
    """Prints each failed check to stderr and OK or a count; the example's exit status."""
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("OK" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0
