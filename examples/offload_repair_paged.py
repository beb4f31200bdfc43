#!/usr/bin/env python3
"""KV repair end to end with a toy engine that keeps a paged KV cache (docs/INTEGRATION.md).

The engine (numpy, no GPU, no weights; see toy_model.py) prefills a 2048-token prompt into a
vLLM-style paged cache, then its cache compression keeps only the attention sinks and a
recent window. Before it frees the evicted rows it offloads them to kvtierd layer by layer,
as a KV connector's per-layer save hook would. At the pause before the next turn it computes
the signal (the next turn's post-RoPE queries and the active cache's log-sum-exp), asks
kvtierd for 64 rows, writes them back into free pages at their original positions, and
checks that attention over the repaired cache now finds the needle that compression had
evicted. It exits non-zero when a check fails.

    examples/offload_repair_paged.py --server unix://kvtier-data/kvtierd.sock
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtier  # noqa: E402
import toy_model  # noqa: E402


class PagedKVCache:
    """One sequence's KV cache in vLLM's paged form: per layer a key pool and a value pool of
    ``num_blocks`` blocks of ``block_size`` slots, each slot [num_kv_heads][head_dim]; the
    sequence's block table lists its blocks; slot = block * block_size + offset.

    A compressed cache has holes, so each slot also records the token position of the row it
    holds (-1: empty). Attention reads every occupied slot of the block table: the keys carry
    their RoPE rotation already, so the order of slots does not matter, only which rows are
    there. A block whose slots are all empty goes back to the free list."""

    def __init__(self, shape: toy_model.Shape, num_blocks: int, block_size: int, dtype):
        pool = (shape.num_layers, num_blocks, block_size, shape.num_kv_heads, shape.head_dim)
        self.key_cache = np.zeros(pool, dtype)
        self.value_cache = np.zeros(pool, dtype)
        self.block_size = block_size
        self.slot_position = np.full(num_blocks * block_size, -1, np.int64)
        self.free_blocks = list(range(num_blocks))
        self.block_table: list[int] = []
        self._tail = 0  # slots used in the last block of the table

    def allocate(self, n: int) -> np.ndarray:
        """Reserves n slots at the end of the block table (the slot mapping of n new rows)."""
        slots = []
        while len(slots) < n:
            if not self.block_table or self._tail == self.block_size:
                if not self.free_blocks:
                    raise MemoryError("paged cache: no free block")
                self.block_table.append(self.free_blocks.pop(0))
                self._tail = 0
            slots.append(self.block_table[-1] * self.block_size + self._tail)
            self._tail += 1
        return np.asarray(slots, np.int64)

    def write(self, layer: int, slots: np.ndarray, positions: np.ndarray, keys: np.ndarray,
              values: np.ndarray) -> None:
        """Stores rows [n][Hkv][D] of one layer into their slots (vLLM: reshape_and_cache)."""
        blocks, offsets = slots // self.block_size, slots % self.block_size
        self.key_cache[layer, blocks, offsets] = keys
        self.value_cache[layer, blocks, offsets] = values
        self.slot_position[slots] = positions

    def read(self, layer: int, slots: np.ndarray):
        """Rows [n][Hkv][D] of one layer from their slots (keys, values)."""
        blocks, offsets = slots // self.block_size, slots % self.block_size
        return self.key_cache[layer, blocks, offsets], self.value_cache[layer, blocks, offsets]

    def occupied(self) -> np.ndarray:
        """Slots holding a row, in block-table order."""
        slots = (np.asarray(self.block_table, np.int64)[:, None] * self.block_size
                 + np.arange(self.block_size)).ravel()
        return slots[self.slot_position[slots] >= 0]

    def slots_of(self, positions: np.ndarray) -> np.ndarray:
        """The slots holding the given token positions (each must be present)."""
        occupied = self.occupied()
        where = {int(p): int(s) for s, p in zip(occupied, self.slot_position[occupied])}
        return np.asarray([where[int(p)] for p in positions], np.int64)

    def evict(self, slots: np.ndarray) -> None:
        """Empties the slots; fully empty blocks (except the tail block) are freed."""
        self.slot_position[slots] = -1
        keep = []
        for i, block in enumerate(self.block_table):
            in_block = self.slot_position[block * self.block_size:(block + 1) * self.block_size]
            if (in_block < 0).all() and i != len(self.block_table) - 1:
                self.free_blocks.append(block)
            else:
                keep.append(block)
        self.block_table = keep

    def gather(self):
        """Every occupied row for attention: positions [n], keys and values [L][n][Hkv][D]."""
        slots = self.occupied()
        blocks, offsets = slots // self.block_size, slots % self.block_size
        return (self.slot_position[slots], self.key_cache[:, blocks, offsets],
                self.value_cache[:, blocks, offsets])


def needle_check(name, queries, cache, prompt, shape):
    """Attention of the needle-seeking queries over the cache: the probability mass on the
    needle rows (mean over layers, heads and tokens) and the cosine between the attention
    output and the needle's value marker (mean over layers and heads)."""
    positions, keys, values = cache.gather()
    p, out = toy_model.attention(queries, keys, values, shape)
    on_needle = np.isin(positions, prompt.needle)
    mass = float(p[..., on_needle].sum(-1).mean())
    marker = prompt.marker[:, np.arange(shape.num_q_heads) // shape.group][:, :, None, :]
    cos = (out * marker).sum(-1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(marker, axis=-1))
    print(f"{name}: {len(positions)} rows in the cache, attention mass on the needle "
          f"{mass:.3f}, output/marker cosine {float(cos.mean()):.3f}")
    return mass, float(cos.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="unix://kvtier-data/kvtierd.sock",
                        help="kvtierd address (default: what scripts/run.sh starts)")
    parser.add_argument("--tokens", type=int, default=2048, help="prompt length")
    parser.add_argument("--budget", type=int, default=64, help="rows to repair (K)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    shape = toy_model.Shape(num_layers=4, num_q_heads=8, num_kv_heads=2, head_dim=64)
    block_size, sinks, window = 16, 64, 256
    n = args.tokens
    prompt = toy_model.make_prompt(rng, shape, n, needle_start=n // 3, needle_len=16)

    # --- Prefill: the prompt's rows go into the paged cache, layer by layer. -------------------
    cache = PagedKVCache(shape, num_blocks=n // block_size + 32, block_size=block_size,
                         dtype=np.float16)
    slots = cache.allocate(n)  # the slot mapping of positions 0..n-1
    for layer in range(shape.num_layers):
        cache.write(layer, slots, np.arange(n), prompt.keys[layer], prompt.values[layer])

    client = kvtier.Client(args.server, timeout=60.0)
    geometry = kvtier.Geometry(num_layers=shape.num_layers, num_q_heads=shape.num_q_heads,
                               num_kv_heads=shape.num_kv_heads, head_dim=shape.head_dim,
                               dtype="float16")
    session = client.open_session(geometry, ttl_seconds=600)
    sid = session.session_id
    print(f"session {sid}: row_bytes {session.row_bytes}")
    failures = []
    try:
        # --- Compression evicts the middle of the prompt; offload it before freeing it. --------
        # One offload call per layer, as a KV connector's per-layer save hook sees the cache:
        # rows [1][n_evicted][Hkv][D] for layer_begin = layer, positions = the original token
        # positions (never slot numbers).
        evicted = np.arange(sinks, n - window)
        evicted_slots = cache.slots_of(evicted)
        for layer in range(shape.num_layers):
            k, v = cache.read(layer, evicted_slots)
            client.offload(sid, evicted, k[None], v[None], layer_begin=layer)
        original = {layer: cache.read(layer, evicted_slots) for layer in range(shape.num_layers)}
        cache.evict(evicted_slots)
        info = client.get_session(sid)
        print(f"offloaded {len(evicted)} rows x {shape.num_layers} layers: "
              f"{info.rows_candidate} candidates in kvtierd, "
              f"{len(cache.block_table)} blocks left in the block table")
        if info.rows_candidate != len(evicted):
            failures.append(f"kvtierd has {info.rows_candidate} candidates, not {len(evicted)}")

        # --- The pause: the next turn's signal. --------------------------------------------------
        # Queries of T next-turn tokens at positions n.. (post-RoPE, every layer is a scoring
        # layer here, every query head), and the log-sum-exp of q.k/sqrt(D) over the rows the
        # cache still holds, per layer, query head and token.
        t = 8
        queries = toy_model.make_queries(rng, shape, prompt.direction, first_position=n,
                                         num_tokens=t)
        mass_before, _ = needle_check("before repair", queries, cache, prompt, shape)
        _, active_keys, _ = cache.gather()
        lse_active = toy_model.logsumexp(toy_model.scores(queries, active_keys, shape))
        lse_active = lse_active.astype(np.float32)  # [L][Hq][T]

        client.begin_pause(sid)  # optional: stage demoted payloads back into host RAM
        result = client.repair(sid, queries, args.budget, lse=lse_active, request_id="turn-2")
        chosen = np.asarray(result.chosen, np.int64)
        print(f"repair: {len(chosen)} rows chosen of {result.candidates} candidates; "
              f"needle {prompt.needle[0]}..{prompt.needle[-1]} "
              f"{'found' if np.isin(prompt.needle, chosen).all() else 'MISSED'}")
        if not np.isin(prompt.needle, chosen).all():
            failures.append("the needle is not among the repaired rows")

        # --- Write the promoted rows back into free pages at their original positions. ---------
        # result.keys / result.values: [L][K][Hkv][D] in `chosen` order. The keys were rotated
        # at their original positions when they were first computed, so they go back as they
        # are (no new RoPE); the slot records the original position for masks and bookkeeping.
        new_slots = cache.allocate(len(chosen))
        for layer in range(shape.num_layers):
            cache.write(layer, new_slots, chosen, result.keys[layer], result.values[layer])
        # The bytes that come back are the bytes that were offloaded.
        index = {int(p): i for i, p in enumerate(evicted)}
        rows = np.asarray([index[int(p)] for p in chosen])
        for layer in range(shape.num_layers):
            k0, v0 = original[layer]
            if not (np.array_equal(result.keys[layer], k0[rows])
                    and np.array_equal(result.values[layer], v0[rows])):
                failures.append(f"layer {layer}: repaired K/V differ from the offloaded rows")
        # The rows are active again: tell kvtierd (a later eviction offloads them anew).
        client.release(sid, positions=chosen)

        mass_after, cosine_after = needle_check("after repair", queries, cache, prompt, shape)
        if mass_before > 0.01:
            failures.append(f"needle mass before repair is {mass_before:.3f}, expected ~0")
        if mass_after < 0.5:
            failures.append(f"needle mass after repair is {mass_after:.3f}, expected > 0.5")
        if cosine_after < 0.9:
            failures.append(f"attention output/marker cosine {cosine_after:.3f}, expected > 0.9")
    finally:
        client.release(sid, whole_session=True)
        client.close()

    return toy_model.report(failures)


if __name__ == "__main__":
    sys.exit(main())
