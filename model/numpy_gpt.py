"""The bashlsp transformer's inference forward pass in numpy, for serving on a CPU.

The same math as `GPT.forward` with a KV cache, behind the same interface (`forward.Forward`;
tests/model/test_engine.py checks the logits of all three implementations against each other), without
torch: `import torch` alone costs more than the server's whole cold-start and memory budget on
a small CPU machine, while numpy, tokenizers and safetensors load in well under a second. At
serving sizes (nano: 4 x 256) numpy's matmuls (OpenBLAS) are as fast as torch's and a decode
step dispatches fewer ops (figures: docs/benchmarks.md, `python -m bashlsp.bench.engine`).

Everything stays float32 (a float64 scalar in an expression would silently promote the
activations, then cast every weight matrix to float64 in each matmul: 3x slower).
Weight matrices are stored transposed, as contiguous (in, out), so activations multiply
from the left.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .config import BLOCK_WEIGHTS, GPTConfig
from .forward import block_weights, rope_angles

# Up to this many rows a matmul runs as one matrix-vector product per row: OpenBLAS's gemm is
# 2-3x slower than that for such skinny inputs (measured, one thread: 2 x 256 @ 256 x 8192
# 925 us as gemm, 333 us as 2 gemv; 5 rows 1,089 vs 806 us; 8 rows 1,176 vs 1,324 us). These
# are the shapes of typing: 1-4 new tokens a keystroke, and 2-4 alternatives decoded together.
SKINNY_ROWS = 6


def matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (M, K) @ w (K, N), float32."""
    rows = x.shape[0]
    if 1 < rows <= SKINNY_ROWS:
        out = np.empty((rows, w.shape[1]), dtype=np.float32)
        for i in range(rows):
            np.matmul(x[i], w, out=out[i])
        return out
    return x @ w


class NumpyKVCache:
    """Keys and values of every layer for a batch of streams, preallocated to `max_len`
    (the layout of `gpt.KVCache`, so the engine handles both the same way)."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int) -> None:
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.head_dim)
        self.k = np.empty(shape, dtype=np.float32)  # positions past `length` are never read
        self.v = np.empty(shape, dtype=np.float32)
        self.max_len = max_len
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def resized(self, batch_size: int, max_len: int) -> NumpyKVCache:
        """forward.KVCache.resized: a new cache of `max_len` positions holding the first
        `length` positions of batch row 0 in each of `batch_size` rows."""
        new = NumpyKVCache.__new__(NumpyKVCache)
        shape = (self.k.shape[0], batch_size, self.k.shape[2], max_len, self.k.shape[4])
        new.k, new.v = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
        new.k[:, :, :, : self.length] = self.k[:, :1, :, : self.length]
        new.v[:, :, :, : self.length] = self.v[:, :1, :, : self.length]
        new.max_len, new.length = max_len, self.length
        return new


class NumpyGPT:
    """Inference-only `GPT` over a state dict of numpy arrays (float16 or float32)."""

    def __init__(self, config: GPTConfig, tensors: dict[str, np.ndarray]) -> None:
        self.config = config
        self.n_head, self.head_dim, self.n_embd = config.n_head, config.head_dim, config.n_embd
        self.hidden = config.mlp_hidden
        self.eps = float(config.norm_eps)
        self.scale = float(1.0 / np.sqrt(config.head_dim))
        self._num_params = sum(int(t.size) for t in tensors.values())

        def weight(name: str) -> np.ndarray:
            return np.ascontiguousarray(tensors[name], dtype=np.float32)

        def matrix(name: str) -> np.ndarray:  # (out, in) -> contiguous (in, out)
            return np.ascontiguousarray(tensors[name].T, dtype=np.float32)

        self.wte = weight("wte.weight")  # (V, C), for the embedding lookup
        self.head = np.ascontiguousarray(self.wte.T)  # (C, V): the tied output head
        self.norm = weight("norm.weight")
        # per block: attn_norm, qkv (C, 3C), proj (C, C), mlp_norm, gate_up (C, 2 hidden), down (hidden, C)
        self.layers = block_weights(config, weight, matrix)
        # RoPE (apply_rope in gpt.py): out = x * cos + swap_halves(x) * (-sin, +sin)
        half = config.head_dim // 2
        freqs = rope_angles(config)  # (block_size, D/2)
        self.rope_cos = np.concatenate((np.cos(freqs), np.cos(freqs)), axis=-1).astype(np.float32)  # (block_size, D)
        self.rope_sin = np.concatenate((-np.sin(freqs), np.sin(freqs)), axis=-1).astype(np.float32)
        self.swap_halves = np.concatenate((np.arange(half, 2 * half), np.arange(half)))

    def num_params(self) -> int:
        return self._num_params

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights under their checkpoint names and layouts (matrices (out, in) again), float32."""
        tensors = {"wte.weight": self.wte}
        for i, layer in enumerate(self.layers):
            tensors |= {f"blocks.{i}.{name}": w if w.ndim == 1 else w.T for name, w in zip(BLOCK_WEIGHTS, layer)}
        return tensors | {"norm.weight": self.norm}  # in the order of config.param_shapes

    @staticmethod
    def set_num_threads(threads: int) -> None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")  # process-wide, like torch.set_num_threads

    inference_mode = staticmethod(contextlib.nullcontext)

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> NumpyKVCache:
        return NumpyKVCache(self.config, batch_size, max_len or self.config.block_size)

    def _rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x * (weight / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps))

    def step(self, idx, cache: NumpyKVCache, all_positions: bool = False) -> np.ndarray:
        """idx (B, T) token ids continue the cached positions; returns the last position's
        logits (B, V) float32, or with all_positions the logits of every position (B, T, V)."""
        idx = np.asarray(idx, dtype=np.int64)
        B, T = idx.shape
        C = self.n_embd
        start = cache.length
        end = start + T
        if end > cache.max_len or end > self.config.block_size:
            raise ValueError(
                f"sequence of {end} tokens exceeds the cache ({cache.max_len}) or block_size {self.config.block_size}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        # New queries sit after `start` cached positions: a causal mask shifted by `start`.
        mask = np.triu(np.full((T, end), -np.inf, dtype=np.float32), k=start + 1) if T > 1 else None
        x = self.wte[idx.reshape(-1)]  # (B*T, C)
        with np.errstate(
            over="ignore"
        ):  # exp(-gate) overflows to inf for a very negative gate: silu is then 0, as it should be
            x = self._blocks(x, B, T, start, cache, mask)
        cache.length = end
        out = x if all_positions else x.reshape(B, T, C)[:, -1]  # (B*T or B, C)
        logits = matmul(self._rms_norm(out, self.norm), self.head)
        return logits.reshape(B, T, -1) if all_positions else logits

    def _blocks(
        self, x: np.ndarray, B: int, T: int, start: int, cache: NumpyKVCache, mask: np.ndarray | None
    ) -> np.ndarray:
        H, D, C = self.n_head, self.head_dim, self.n_embd
        end = start + T
        cos = self.rope_cos[start:end, None, :]  # (T, 1, D)
        sin = self.rope_sin[start:end, None, :]
        for layer, (attn_norm, qkv_w, proj_w, mlp_norm, gate_up_w, down_w) in enumerate(self.layers):
            qkv = matmul(self._rms_norm(x, attn_norm), qkv_w).reshape(B, T, 3 * H, D)
            qk = qkv[:, :, : 2 * H]  # q and k rotated together
            qk = qk * cos + qk[..., self.swap_halves] * sin  # (B, T, 2H, D)
            cache.k[layer, :, :, start:end] = qk[:, :, H:].transpose(0, 2, 1, 3)
            cache.v[layer, :, :, start:end] = qkv[:, :, 2 * H :].transpose(0, 2, 1, 3)
            q = qk[:, :, :H].transpose(0, 2, 1, 3)  # (B, H, T, D)
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]  # (B, H, end, D)
            scores = (q @ k.transpose(0, 1, 3, 2)) * self.scale  # (B, H, T, end)
            if mask is not None:
                scores += mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            y = (scores @ v).transpose(0, 2, 1, 3).reshape(B * T, C)  # (B*T, C)
            x = x + matmul(y, proj_w)
            gate_up = matmul(self._rms_norm(x, mlp_norm), gate_up_w)  # (B*T, 2 hidden)
            gate = gate_up[:, : self.hidden]
            x = x + matmul(gate / (1.0 + np.exp(-gate)) * gate_up[:, self.hidden :], down_w)  # SwiGLU
        return x
