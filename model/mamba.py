"""Selective state-space models (arch "mamba") and Mamba + attention hybrids (arch "hybrid").

A Mamba-1 layer (Gu and Dao, 2023) in plain PyTorch, after the reference code of mamba_ssm:
in_proj to two streams x and z, a causal depthwise conv1d and SiLU on x, input-dependent
dt, B and C from x (x_proj, dt_proj, softplus), the selective scan
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,    y_t = C_t h_t + D x_t
gated by SiLU(z), then out_proj. The hybrid is the same stack with gpt.py's attention block
(Attention + SwiGLU, RoPE) at every `attn_every`-th layer (config.is_attention).

The scan runs sequentially over time, vectorised over batch, channels and state
(`scan_implementation` says which one runs): on a CPU a loop of T fused multiply-adds per layer is fast at
these sizes and needs no kernel. Training on CUDA with `mamba_ssm` and `causal_conv1d`
installed uses their fused kernels (selective_scan_fn, causal_conv1d_fn) instead; decoding
always takes the plain path (one step is a few small ops).

The decoding cache (`StateCache`) holds, per Mamba layer, the conv window (the last d_conv - 1
inputs) and the SSM state, and per attention layer keys and values as gpt.KVCache does.
A recurrent state cannot be cut back: the engine lowers `cache.length` to drop a tail (an edit
before the cursor, a rejected draft), so the cache also keeps the token ids it consumed and a
snapshot of every Mamba layer's state every `SNAPSHOT_EVERY` positions. The next forward after
`length` was lowered restores the last snapshot at or before it and re-runs the ids from there
(at most SNAPSHOT_EVERY - 1 positions; `recomputed` counts them). docs/benchmarks.md measures
what that costs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .gpt import GPT, Block

try:  # fused CUDA kernels, where installed (pip install mamba-ssm causal-conv1d)
    from causal_conv1d import causal_conv1d_fn
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:
    causal_conv1d_fn = selective_scan_fn = None

SNAPSHOT_EVERY = 32  # positions between state snapshots: the most a lowered length re-runs is this - 1
# States of the last RECENT positions are kept too: the engine's usual cut (the healed partial word
# at the cursor, a rejected draft of up to 7 tokens) restores one of them and re-runs nothing.
RECENT = 8


def scan_implementation(device: torch.device) -> str:
    """The scan a forward without a cache runs on `device`: "mamba_ssm" (the fused kernels, on
    CUDA where installed) or "sequential" (this file's, everywhere else and for every decode)."""
    return "mamba_ssm" if selective_scan_fn is not None and device.type == "cuda" else "sequential"


def layer_slots(config: GPTConfig) -> list[int]:
    """Each layer's index among the layers of its kind (attention or Mamba): its row in the cache."""
    slots, counts = [], [0, 0]
    for i in range(config.n_layer):
        kind = int(config.is_attention(i))
        slots.append(counts[kind])
        counts[kind] += 1
    return slots


class StateCache:
    """Decoding state of a batch of streams: forward.KVCache's `length`, `max_len`, `batch_size`
    and `resized`, with Mamba states and their snapshots (see the module doc)."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, dtype) -> None:
        n_attn = sum(config.is_attention(i) for i in range(config.n_layer))
        n_mamba = config.n_layer - n_attn
        d, w, n = config.d_inner, config.d_conv - 1, config.d_state
        self.conv = torch.zeros(n_mamba, batch_size, d, w, device=device, dtype=dtype)  # last w conv inputs
        self.ssm = torch.zeros(n_mamba, batch_size, d, n, device=device, dtype=dtype)  # h
        # snapshot i: the states after position (i + 1) * SNAPSHOT_EVERY
        snapshots = max_len // SNAPSHOT_EVERY
        self.snap_conv = torch.empty(snapshots, *self.conv.shape, device=device, dtype=dtype)
        self.snap_ssm = torch.empty(snapshots, *self.ssm.shape, device=device, dtype=dtype)
        # recent[p % RECENT]: the states after position p, for p in [recent_from, state_length]
        self.recent_conv = torch.zeros(RECENT, *self.conv.shape, device=device, dtype=dtype)
        self.recent_ssm = torch.zeros(RECENT, *self.ssm.shape, device=device, dtype=dtype)
        self.recent_from = 0  # entry 0 holds the empty state of position 0
        kv = (n_attn, batch_size, config.n_head, max_len, config.head_dim)
        self.k = torch.empty(kv, device=device, dtype=dtype)  # gpt.Attention writes and reads these
        self.v = torch.empty(kv, device=device, dtype=dtype)
        self.ids = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)  # what was fed, to re-run
        self.max_len = max_len
        self.length = 0  # positions the cache holds; the engine lowers it to drop a tail
        self.fed = 0  # positions of `ids` fed since the last lowering (length may not go past it)
        self.state_length = 0  # positions the live Mamba states have consumed
        self.recomputed = 0  # positions re-run after a lowered length, in all

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    def resized(self, batch_size: int, max_len: int) -> StateCache:
        """forward.KVCache.resized (the states are those of row 0; snapshots past `length` are dropped)."""
        new = StateCache.__new__(StateCache)
        keep = self.length
        self._restore_to(keep)  # states at or before `keep` (the first forward re-runs the rest)
        new.conv = self.conv[:, :1].repeat(1, batch_size, 1, 1)
        new.ssm = self.ssm[:, :1].repeat(1, batch_size, 1, 1)
        snapshots = max_len // SNAPSHOT_EVERY
        new.snap_conv = self.snap_conv.new_empty(snapshots, *new.conv.shape)
        new.snap_ssm = self.snap_ssm.new_empty(snapshots, *new.ssm.shape)
        valid = min(keep // SNAPSHOT_EVERY, snapshots)
        new.snap_conv[:valid] = self.snap_conv[:valid, :, :1]
        new.snap_ssm[:valid] = self.snap_ssm[:valid, :, :1]
        new.recent_conv = self.recent_conv[:, :, :1].repeat(1, 1, batch_size, 1, 1)
        new.recent_ssm = self.recent_ssm[:, :, :1].repeat(1, 1, batch_size, 1, 1)
        new.recent_from = self.recent_from
        kv = (self.k.shape[0], batch_size, self.k.shape[2], max_len, self.k.shape[4])
        new.k, new.v = self.k.new_empty(kv), self.v.new_empty(kv)
        new.k[:, :, :, :keep] = self.k[:, :1, :, :keep]
        new.v[:, :, :, :keep] = self.v[:, :1, :, :keep]
        new.ids = self.ids.new_zeros(batch_size, max_len)
        new.ids[:, :keep] = self.ids[:1, :keep]
        new.max_len, new.length, new.fed, new.recomputed = max_len, keep, keep, 0
        new.state_length = self.state_length  # <= keep: the next forward re-runs the rest
        return new

    def _restore_to(self, length: int) -> None:
        """Put the live states back at `length` if a recent state is kept for it, else at the
        last snapshot before it (or at the start), if they are past it. The snapshots up to `fed`
        are those of the ids fed."""
        if self.state_length <= length:
            return
        if length >= self.recent_from:
            self.conv.copy_(self.recent_conv[length % RECENT])
            self.ssm.copy_(self.recent_ssm[length % RECENT])
            self.state_length = length
            return
        i = min(length // SNAPSHOT_EVERY, self.snap_conv.shape[0])
        if i == 0:
            self.conv.zero_()
            self.ssm.zero_()
        else:
            self.conv.copy_(self.snap_conv[i - 1])
            self.ssm.copy_(self.snap_ssm[i - 1])
        self.state_length = i * SNAPSHOT_EVERY
        # the recent states start again from here (the re-run refills them)
        self.recent_conv[self.state_length % RECENT] = self.conv
        self.recent_ssm[self.state_length % RECENT] = self.ssm
        self.recent_from = self.state_length


def selective_scan(x, dt, A, B, C, D, h):
    """The sequential scan. x, dt: (b, T, d); A: (d, n); B, C: (b, T, n); D: (d,); h: (b, d, n)
    the state before the first position. Returns y (b, T, d) and every state, (b, T, d, n)."""
    decay = torch.exp(dt.unsqueeze(-1) * A)  # (b, T, d, n)
    push = (dt * x).unsqueeze(-1) * B.unsqueeze(2)  # (b, T, d, n): dt_t B_t x_t
    states = []
    for t in range(x.shape[1]):
        h = torch.addcmul(push[:, t], decay[:, t], h)  # exp(dt A) h + dt B x
        states.append(h)
    states = torch.stack(states, dim=1)  # (b, T, d, n)
    y = (states @ C.unsqueeze(-1)).squeeze(-1)  # (b, T, d): C_t h_t
    return y + x * D, states


class MambaMixer(nn.Module):
    def __init__(self, config: GPTConfig, slot: int) -> None:
        super().__init__()
        C, d, n, R = config.n_embd, config.d_inner, config.d_state, config.dt_rank
        self.slot, self.d_inner, self.d_state, self.dt_rank, self.d_conv = slot, d, n, R, config.d_conv
        self.in_proj = nn.Linear(C, 2 * d, bias=False)
        self.conv1d = nn.Conv1d(d, d, config.d_conv, groups=d, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(d, R + 2 * n, bias=False)
        self.dt_proj = nn.Linear(R, d, bias=True)
        self.A_log = nn.Parameter(torch.empty(d, n))
        self.D = nn.Parameter(torch.empty(d))
        self.out_proj = nn.Linear(d, C, bias=False)

    def reset_parameters(self) -> None:
        """Mamba's initialisation: A = -(1..n) per channel (S4D-real), D = 1, and dt_proj's bias
        such that softplus(bias) is log-uniform in [0.001, 0.1]."""
        with torch.no_grad():
            self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
            self.D.fill_(1.0)
            nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus
            bound = 1 / math.sqrt(self.d_conv)  # nn.Conv1d's default for a depthwise filter
            nn.init.uniform_(self.conv1d.weight, -bound, bound)
            nn.init.uniform_(self.conv1d.bias, -bound, bound)

    def forward(self, u: torch.Tensor, cache: StateCache | None, start: int) -> torch.Tensor:
        b, T, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)  # each (b, T, d)
        A = -torch.exp(self.A_log.float())  # (d, n), negative: the state decays
        if cache is None and scan_implementation(u.device) == "mamba_ssm":
            x = causal_conv1d_fn(x.transpose(1, 2), self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
            dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
            y = selective_scan_fn(
                x,  # (b, d, T)
                (dt @ self.dt_proj.weight.t()).transpose(1, 2),  # (b, d, T), bias and softplus in the kernel
                A,
                B.transpose(1, 2).contiguous(),  # (b, n, T)
                C.transpose(1, 2).contiguous(),
                self.D.float(),
                z=z.transpose(1, 2).contiguous(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )  # (b, d, T), gated by SiLU(z)
            return self.out_proj(y.transpose(1, 2))
        x = x.transpose(1, 2)  # (b, d, T)
        w = self.d_conv - 1
        if cache is None:
            x = self.conv1d(x)[..., :T]  # causal: padded w on both sides, the right side cut
            h = x.new_zeros(b, self.d_inner, self.d_state)
        else:
            window = torch.cat((cache.conv[self.slot], x), dim=-1)  # (b, d, w + T): position start - w on
            # The convolution as a product and a sum over each position's window: for the few
            # positions of a decode step, F.conv1d's depthwise kernel cost ~0.9 ms a call here.
            taps = window.unfold(-1, self.d_conv, 1)  # (b, d, T, d_conv)
            x = (taps * self.conv1d.weight[:, None, 0]).sum(-1) + self.conv1d.bias[:, None]  # (b, d, T)
            h = cache.ssm[self.slot]
        x = F.silu(x).transpose(1, 2)  # (b, T, d)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (b, T, d)
        y, states = selective_scan(x, dt, A, B, C, self.D, h)
        if cache is not None:
            cache.conv[self.slot] = window[..., T:]
            cache.ssm[self.slot] = states[:, -1]
            # the recent states: after each of the chunk's last m positions
            if T == 1:  # a decode step: two copies
                cache.recent_conv[(start + 1) % RECENT, self.slot] = cache.conv[self.slot]
                cache.recent_ssm[(start + 1) % RECENT, self.slot] = cache.ssm[self.slot]
            else:
                m = min(T, RECENT)
                slots = torch.arange(start + T - m + 1, start + T + 1, device=u.device) % RECENT
                windows = window.unfold(-1, w, 1)[..., T - m + 1 :, :]  # (b, d, m, w)
                cache.recent_conv[slots, self.slot] = windows.permute(2, 0, 1, 3)
                cache.recent_ssm[slots, self.slot] = states[:, T - m :].transpose(0, 1)
            # snapshots at the multiples p of SNAPSHOT_EVERY in (start, start + T]
            first = start // SNAPSHOT_EVERY + 1
            for i in range(first, min((start + T) // SNAPSHOT_EVERY, cache.snap_conv.shape[0]) + 1):
                p = i * SNAPSHOT_EVERY - start  # positions of this chunk before the snapshot
                cache.snap_conv[i - 1, self.slot] = window[..., p : p + w]
                cache.snap_ssm[i - 1, self.slot] = states[:, p - 1]
        return self.out_proj(y * F.silu(z))


class MambaBlock(nn.Module):
    def __init__(self, config: GPTConfig, slot: int) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.mixer = MambaMixer(config, slot)

    def forward(self, x, cos, sin, cache, start):  # the signature of gpt.Block; no positions needed
        return x + self.mixer(self.norm(x), cache, start)


class Mamba(GPT):
    """A stack of MambaBlocks (arch mamba) or of MambaBlocks and gpt.Blocks (arch hybrid), with
    GPT's embeddings, final norm, tied head, `step` and `forward` around them."""

    @staticmethod
    def make_block(config: GPTConfig, layer_index: int) -> nn.Module:
        slot = layer_slots(config)[layer_index]
        return Block(config, slot) if config.is_attention(layer_index) else MambaBlock(config, slot)

    def __init__(self, config: GPTConfig, init_weights: bool = True) -> None:
        if config.arch not in ("mamba", "hybrid"):
            raise ValueError(f"Mamba needs a config of arch mamba or hybrid, not {config.arch}")
        super().__init__(config, init_weights)

    def _init_all(self) -> None:
        super()._init_all()
        for name, p in self.named_parameters():
            if name.endswith("mixer.out_proj.weight"):  # a residual projection, as attn.proj
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
        for block in self.blocks:
            if isinstance(block, MambaBlock):
                block.mixer.reset_parameters()

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> StateCache:
        p = self.wte.weight
        return StateCache(self.config, batch_size, max_len or self.config.block_size, p.device, p.dtype)

    def forward(self, idx, targets=None, cache: StateCache | None = None, last_only: bool = False):
        if cache is not None:
            end = cache.length + idx.shape[1]
            if end > cache.max_len:
                raise ValueError(f"sequence of {end} tokens exceeds the cache's {cache.max_len} positions")
            if cache.length > cache.fed:
                raise ValueError(f"a state cache's length can be lowered, not raised ({cache.length} > {cache.fed})")
            cache._restore_to(cache.length)
            if cache.state_length < cache.length:  # re-run the ids between the snapshot and `length`
                rerun, length = cache.ids[:, cache.state_length : cache.length].clone(), cache.length
                cache.length = cache.state_length
                cache.recomputed += rerun.shape[1]
                super().forward(rerun, cache=cache, last_only=True)
                cache.state_length = cache.length = length
            cache.ids[:, cache.length : end] = idx
        out = super().forward(idx, targets=targets, cache=cache, last_only=last_only)
        if cache is not None:
            cache.state_length = cache.fed = cache.length
            cache.recent_from = max(cache.recent_from, cache.length - RECENT + 1)
        return out

    def flops_per_token(self, context: int | None = None) -> float:
        """Training FLOPs per token: 6 per parameter, the attention layers' scores over
        `context` (hybrid), and the scan's ~9 per state element (negligible here)."""
        c = self.config
        attention = sum(c.is_attention(i) for i in range(c.n_layer))
        scan = 9 * c.d_inner * c.d_state * (c.n_layer - attention)
        return 6 * self.num_params() + 6 * attention * c.n_embd * (context or c.block_size) + 3 * scan
