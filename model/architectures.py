"""The one model factory: the torch model of a config's architecture (config.ARCHS).

    dense   gpt.GPT      the transformer (served on a CPU by numpy_gpt.NumpyGPT, without torch)
    moe     moe.MoE      its blocks' MLPs replaced by top-k routed experts
    mamba   mamba.Mamba  selective state-space layers
    hybrid  mamba.Mamba  Mamba layers with an attention block every `attn_every` layers

Every one has GPT's interface (forward with targets for training, `step` and `new_cache` for the
engine: forward.Forward) and the checkpoint names of config.param_shapes. Pre-training builds
its model here, and checkpoint.load_checkpoint loads every arch through it.
"""

from __future__ import annotations

from .config import GPTConfig
from .gpt import GPT


def build_model(config: GPTConfig, init_weights: bool = True) -> GPT:
    if config.arch == "moe":
        from .moe import MoE

        return MoE(config, init_weights)
    if config.arch in ("mamba", "hybrid"):
        from .mamba import Mamba

        return Mamba(config, init_weights)
    return GPT(config, init_weights)


def describe(config: GPTConfig) -> str:
    """The arch and its settings in a few words, e.g. "moe (4 experts, top 2)"."""
    c = config
    if c.arch == "moe":
        return f"moe ({c.n_experts} experts, top {c.top_k})"
    if c.arch == "mamba":
        return f"mamba (d_state {c.d_state}, expand {c.expand})"
    if c.arch == "hybrid":
        attention = [i for i in range(c.n_layer) if c.is_attention(i)]
        return f"hybrid (attention in layers {', '.join(map(str, attention))} of {c.n_layer})"
    return "dense"
