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
