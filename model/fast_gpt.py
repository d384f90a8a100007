"""A fast torch forward pass for serving on a GPU: the same math as `GPT.forward` with a
`KVCache`, fewer ops, behind the same interface (`forward.Forward`). (On a CPU the server runs
`numpy_gpt.py` instead, without torch.)

At serving sizes (nano: 4 x 256) one decode step is ~50 small tensor ops, and on a CPU their
dispatch and memory traffic cost more than the arithmetic. This path skips
`nn.Module.__call__` and uses fewer and cheaper ops per layer:

- weight matrices stored transposed, as contiguous (in, out) matrices, and multiplied with
  `torch.mm`/`torch.addmm`: faster than `F.linear` for the tall output head and for a whole
  decode step on a CPU (measured when this was written). The model's parameters are re-pointed
  at the same storage (a transposed view, same values), so there is no second copy in memory
  and the model's own forward still gives the same results;
- RoPE for all of q and k in one batched matmul with a per-position rotation matrix, built
  once per forward for all layers (the model rotates q and k separately, 3 ops each);
- residual additions fused into the output projections with `torch.addmm`;
- the activations stay 2-D (rows = batch x positions), so reshapes are views.

`tests/model/test_engine.py` checks that its logits match `GPT.forward` (same cache layout, so the
two can be mixed on one cache).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .forward import block_weights
from .gpt import GPT, KVCache


def _transposed(weight: nn.Parameter) -> torch.Tensor:
    """The (out, in) weight as a contiguous (in, out) matrix; the parameter becomes a view of it."""
    if weight.data.t().is_contiguous():
        return weight.data.t()  # already re-laid out (a second engine on the same model)
    matrix = weight.data.t().contiguous()
    weight.data = matrix.t()
    return matrix


class FastForward:
    def __init__(self, model: GPT) -> None:
        self.model = model
        self.config = config = model.config
        self.n_head, self.head_dim, self.n_embd = config.n_head, config.head_dim, config.n_embd
        self.hidden = config.mlp_hidden
        self.eps = config.norm_eps
        self.block_size = config.block_size
        self.head = _transposed(model.wte.weight)  # (C, V): the tied output head
        self.wte = model.wte.weight  # (V, C) view of it, for the embedding lookup
        self.norm = model.norm.weight
        parameters = dict(model.named_parameters())
        self.layers = block_weights(config, lambda name: parameters[name], lambda name: _transposed(parameters[name]))
        # RoPE as x @ R(pos): column j of R holds cos on the diagonal and +-sin in the row of
        # its partner j +- D/2 (see apply_rope in gpt.py: out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin).
        d, half = self.head_dim, self.head_dim // 2
        cos, sin = model.rope_cos, model.rope_sin  # (block_size, D/2)
        self.cos_cols = torch.cat((cos, cos), dim=-1)[:, None, :]  # (block_size, 1, D): scales column j
        self.sin_cols = torch.cat((-sin, sin), dim=-1)[:, None, :]
        device, dtype = self.head.device, self.head.dtype
        self.eye = torch.eye(d, device=device, dtype=dtype)
        self.partner = torch.zeros(d, d, device=device, dtype=dtype)
        cols = torch.arange(d, device=device)
        self.partner[(cols + half) % d, cols] = 1.0

    inference_mode = staticmethod(torch.inference_mode)
    set_num_threads = staticmethod(torch.set_num_threads)

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        return self.model.new_cache(batch_size, max_len)

    def num_params(self) -> int:
        return self.model.num_params()

    def step(self, idx, cache: KVCache, all_positions: bool = False) -> np.ndarray:
        """forward.Forward.step: idx (B, T) ids (list, array or tensor) continue the cached
        positions; the last position's logits (B, V) float32, or every position's (B, T, V)."""
        return (
            self.logits(torch.as_tensor(idx, dtype=torch.long, device=self.head.device), cache, all_positions)
            .cpu()
            .numpy()
        )

    def logits(self, idx: torch.Tensor, cache: KVCache, all_positions: bool = False) -> torch.Tensor:
        """__call__ with tensors in and out (on the model's device)."""
        B, T = idx.shape
        H, D, C = self.n_head, self.head_dim, self.n_embd
        start = cache.length
        end = start + T
        if end > cache.max_len or end > self.block_size:
            raise ValueError(
                f"sequence of {end} tokens exceeds the cache ({cache.max_len}) or block_size {self.block_size}"
            )
        # (T, D, D): 2 small ops per forward, instead of a 16 MB table for all positions
        rotation = torch.addcmul(self.eye * self.cos_cols[start:end], self.partner, self.sin_cols[start:end])
        mask = None
        if T > 1 and start > 0:
            mask = torch.ones(T, end, dtype=torch.bool, device=idx.device).tril(diagonal=start)
        x = F.embedding(idx, self.wte).view(B * T, C)
        for layer, (attn_norm, qkv_w, proj_w, mlp_norm, gate_up_w, down_w) in enumerate(self.layers):
            qkv = torch.mm(F.rms_norm(x, (C,), attn_norm, self.eps), qkv_w).view(B, T, 3 * H, D)
            qk = torch.matmul(qkv[:, :, : 2 * H], rotation)  # (B, T, 2H, D), q and k rotated together
            q = qk[:, :, :H].transpose(1, 2)  # (B, H, T, D)
            cache.k[layer, :, :, start:end] = qk[:, :, H:].transpose(1, 2)
            cache.v[layer, :, :, start:end] = qkv[:, :, 2 * H :].transpose(1, 2)
            k, v = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]
            if T == 1:
                y = F.scaled_dot_product_attention(q, k, v)
            elif start == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = torch.addmm(x, y.transpose(1, 2).reshape(B * T, C), proj_w)
            gate_up = torch.mm(F.rms_norm(x, (C,), mlp_norm, self.eps), gate_up_w)
            x = torch.addmm(x, F.silu(gate_up[:, : self.hidden]) * gate_up[:, self.hidden :], down_w)
        cache.length = end
        out = x if all_positions else x.view(B, T, C)[:, -1]  # (B*T or B, C)
        logits = torch.mm(F.rms_norm(out, (C,), self.norm, self.eps), self.head).float()
        return logits.view(B, T, -1) if all_positions else logits
