"""The bashlsp transformer: a small decoder-only language model for shell scripts.

RoPE positions, RMSNorm, SwiGLU MLP, `F.scaled_dot_product_attention`, tied
input/output embeddings and a preallocated KV cache for incremental decoding.
Kept deliberately small and plain, in the spirit of nanoGPT's model.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PRESETS, GPTConfig, param_shapes, preset_config  # noqa: F401 (re-exported)
from .forward import rope_angles


class KVCache:
    """Keys and values of every layer for a batch of streams, preallocated to `max_len`.

    `length` is how many positions are filled; shrinking it (e.g. when the user
    edits the end of the prefix) drops the tail without copying anything.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, dtype) -> None:
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.head_dim)
        # empty, not zeros: positions past `length` are never read, and zero-filling a cache for
        # sampled alternatives cost more than their decoding (79 us per fill, measured)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def expand(self, batch_size: int) -> KVCache:
        """A copy with batch row 0 repeated: one prefix, several samples."""
        new = KVCache.__new__(KVCache)
        new.k = self.k[:, :1].repeat(1, batch_size, 1, 1, 1)
        new.v = self.v[:, :1].repeat(1, batch_size, 1, 1, 1)
        new.max_len, new.length = self.max_len, self.length
        return new

    def resized(self, batch_size: int, max_len: int) -> KVCache:
        """forward.KVCache.resized: a new cache of `max_len` positions holding the first
        `length` positions of batch row 0 in each of `batch_size` rows."""
        new = KVCache.__new__(KVCache)
        shape = (self.k.shape[0], batch_size, self.k.shape[2], max_len, self.k.shape[4])
        new.k = torch.empty(shape, device=self.k.device, dtype=self.k.dtype)
        new.v = torch.empty(shape, device=self.v.device, dtype=self.v.dtype)
        new.k[:, :, :, : self.length] = self.k[:, :1, :, : self.length]
        new.v[:, :, :, : self.length] = self.v[:, :1, :, : self.length]
        new.max_len, new.length = max_len, self.length
        return new


def rope_tables(config: GPTConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of forward.rope_angles, (block_size, head_dim / 2) float32."""
    freqs = rope_angles(config)  # float64, so every implementation rounds the same
    return (
        torch.tensor(np.cos(freqs), dtype=torch.float32, device=device),
        torch.tensor(np.sin(freqs), dtype=torch.float32, device=device),
    )


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, D); cos/sin: (T, D/2). Rotates pairs (x1, x2) of the two halves.
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.layer_index = layer_index
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None, start: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(2)  # each (B, T, H, D)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        else:
            end = start + T
            cache.k[self.layer_index, :, :, start:end] = k
            cache.v[self.layer_index, :, :, start:end] = v
            k = cache.k[self.layer_index, :, :, :end]  # (B, H, end, D)
            v = cache.v[self.layer_index, :, :, :end]
            if T == 1:
                y = F.scaled_dot_product_attention(q, k, v)
            elif start == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                # New queries sit after `start` cached positions: a causal mask shifted by `start`.
                mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y)


class SwiGLU(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.hidden = config.mlp_hidden
        self.gate_up = nn.Linear(config.n_embd, 2 * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)  # each (B, T, hidden)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.attn = Attention(config, layer_index)
        self.mlp_norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, cache, start):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, start)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, init_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(self.make_block(config, i) for i in range(config.n_layer))
        self.norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        cos, sin = rope_tables(config)
        # Not parameters and not saved: rebuilt from the config.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if init_weights:
            self._init_all()

    @staticmethod
    def make_block(config: GPTConfig, layer_index: int) -> nn.Module:
        """Layer `layer_index`; the other architectures (moe.py, mamba.py) build theirs."""
        return Block(config, layer_index)

    def _init_all(self) -> None:
        config = self.config
        self.apply(self._init_weights)
        # Residual projections start small so deep stacks begin near the identity (GPT-2).
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        p = self.wte.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, p.device, p.dtype)

    # -- forward.Forward: what the engine and the benchmarks call (fast_gpt.FastForward serves faster)

    @torch.inference_mode()
    def step(self, idx, cache: KVCache, all_positions: bool = False) -> np.ndarray:
        """forward.Forward.step: ids in (list, array or tensor), numpy float32 logits out."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.wte.weight.device)
        logits = self(idx, cache=cache, last_only=not all_positions)
        return (logits if all_positions else logits[:, -1]).cpu().numpy()

    set_num_threads = staticmethod(torch.set_num_threads)
    inference_mode = staticmethod(torch.inference_mode)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ):
        """idx: (B, T) token ids. With `targets` returns the mean cross-entropy loss
        (ignore_index -1). Otherwise returns logits (B, T, V), or (B, 1, V) with
        `last_only`. With `cache`, idx continues the cached positions and the cache grows."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]  # (T, D/2)
        x = self.wte(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin, cache, start)
        if cache is not None:
            cache.length = start + T
        x = self.norm(x)
        if targets is not None:
            logits = F.linear(x, self.wte.weight).float()  # (B, T, V), tied embeddings
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if last_only:
            x = x[:, -1:, :]
        return F.linear(x, self.wte.weight).float()  # (B, T or 1, V)

    def flops_per_token(self, context: int | None = None) -> float:
        """Training FLOPs per token (forward + backward = 3x forward), attention included (PaLM appendix B)."""
        n = self.num_params()
        c = self.config
        t = context or c.block_size
        return 6 * n + 6 * c.n_layer * c.n_embd * t
