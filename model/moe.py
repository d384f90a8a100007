"""Mixture of experts (arch "moe"): the transformer of gpt.py with each block's SwiGLU MLP
replaced by `n_experts` SwiGLU MLPs and a router that sends every token to its `top_k` best.

Routing as in Mixtral: softmax over the top-k router logits weighs the chosen experts' outputs.
Load balancing as in Switch Transformer: aux = E * sum_e f_e * P_e, where f_e is the share of
the token-to-expert assignments that went to expert e and P_e the mean router probability of
e; it is 1 when routing is uniform and grows as it collapses. `forward(targets=...)` returns
cross-entropy + aux_loss_weight * aux (the training loss); `aux_loss` keeps the last forward's
aux (the mean over blocks), detached, for logging and tests.

Attention, RoPE, the KV cache, the embeddings and `step` are gpt.py's (MoE subclasses GPT).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .gpt import GPT, Attention


class MoEMLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        E, C, hidden = config.n_experts, config.n_embd, config.mlp_hidden
        self.n_experts, self.top_k, self.hidden = E, config.top_k, hidden
        self.router = nn.Linear(C, E, bias=False)
        # The experts' weights stacked, (out, in) per expert as nn.Linear's.
        self.gate_up = nn.Parameter(torch.empty(E, 2 * hidden, C))
        self.down = nn.Parameter(torch.empty(E, C, hidden))
        self.aux_loss = torch.zeros(())
        self.last_choice: torch.Tensor | None = None  # (N, top_k) expert ids of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.reshape(B * T, C)  # (N, C): routing is per token
        logits = self.router(x)  # (N, E)
        top_logits, choice = logits.topk(self.top_k, dim=-1)  # (N, k) each
        weights = F.softmax(top_logits, dim=-1, dtype=torch.float32).to(x.dtype)  # (N, k)
        y = torch.zeros_like(x)
        # One expert at a time over the tokens routed to it: E small matmuls, no padding. (The
        # experts' weights are stacked tensors, so an expert no token chose still gets a gradient,
        # zero, as DistributedDataParallel expects of every parameter at every step.)
        for e in range(self.n_experts):
            token, slot = (choice == e).nonzero(as_tuple=True)  # which tokens chose e, at which rank
            if token.numel() == 0:
                continue
            gate, up = F.linear(x[token], self.gate_up[e]).split(self.hidden, dim=-1)  # (n_e, hidden)
            out = F.linear(F.silu(gate) * up, self.down[e])  # (n_e, C)
            y.index_add_(0, token, out * weights[token, slot, None])
        # Switch's load-balancing loss over the top-k assignments.
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)  # (N, E)
        share = F.one_hot(choice, self.n_experts).float().sum(dim=(0, 1)) / choice.numel()  # (E,) f_e
        self.aux_loss = self.n_experts * (share * probs.mean(dim=0)).sum()
        self.last_choice = choice.detach()
        return y.view(B, T, C)


class MoEBlock(nn.Module):
    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.attn = Attention(config, layer_index)
        self.mlp_norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.moe = MoEMLP(config)

    def forward(self, x, cos, sin, cache, start):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, start)
        return x + self.moe(self.mlp_norm(x))


class MoE(GPT):
    """GPT with MoEBlocks: the same KV cache (gpt.KVCache), `step`, `new_cache` and checkpoint
    names apart from each block's `moe.*` (config.param_shapes)."""

    make_block = staticmethod(MoEBlock)

    def __init__(self, config: GPTConfig, init_weights: bool = True) -> None:
        if config.arch != "moe":
            raise ValueError(f"MoE needs a config of arch moe, not {config.arch}")
        super().__init__(config, init_weights)
        self.aux_loss = torch.zeros(())

    def _init_all(self) -> None:
        super()._init_all()
        for block in self.blocks:
            nn.init.normal_(block.moe.gate_up, mean=0.0, std=0.02)
            # a residual projection, small like gpt.py's mlp.down
            nn.init.normal_(block.moe.down, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def active_params(self) -> int:
        """Parameters one token's forward uses: all but the experts it was not routed to."""
        c = self.config
        unused = (c.n_experts - c.top_k) * 3 * c.n_embd * c.mlp_hidden * c.n_layer
        return self.num_params() - unused

    def forward(self, idx, targets=None, cache=None, last_only=False):
        out = super().forward(idx, targets=targets, cache=cache, last_only=last_only)
        aux = torch.stack([block.moe.aux_loss for block in self.blocks]).mean()
        self.aux_loss = aux.detach()
        if targets is not None:
            return out + self.config.aux_loss_weight * aux
        return out

    def flops_per_token(self, context: int | None = None) -> float:
        """As GPT.flops_per_token with the parameters a token uses (the router's top_k experts)."""
        c = self.config
        return 6 * self.active_params() + 6 * c.n_layer * c.n_embd * (context or c.block_size)
