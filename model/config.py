"""The model's shape: `GPTConfig`, the named sizes, and the weight tensors a config implies.

Torch-free, so that the server can validate and run a checkpoint on a CPU without importing
torch (see `bashlsp.model.numpy_gpt`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .errors import ConfigError


@dataclass
class GPTConfig:
    vocab_size: int = 8192  # must equal the tokenizer's vocabulary size (checked on load)
    block_size: int = 1024  # longest context the model is trained for and the cache holds
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads; head_dim = n_embd // n_head
    n_embd: int = 256  # residual stream width
    mlp_hidden: int = 0  # SwiGLU hidden width; 0 means ~8/3 * n_embd rounded up to 64
    rope_theta: float = 10000.0  # RoPE base frequency
    norm_eps: float = 1e-5  # RMSNorm epsilon

    def __post_init__(self) -> None:
        if self.mlp_hidden == 0:
            self.mlp_hidden = 64 * math.ceil(8 * self.n_embd / 3 / 64)
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError("model config: head dimension must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys: {', '.join(unknown)}")
        missing = sorted(known - set(data) - {"mlp_hidden", "rope_theta", "norm_eps"})
        if missing:
            raise ConfigError(f"model config is missing keys: {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"model config is invalid: {exc}") from exc


# Named sizes. "nano" is the default: it decodes fast enough on 2 CPU cores for
# completion while typing; the larger ones are for GPUs and for the quality study.
PRESETS: dict[str, dict] = {
    "nano": dict(n_layer=4, n_head=4, n_embd=256),  # ~2M + embeddings, for fast CPU completion
    "tiny": dict(n_layer=6, n_head=6, n_embd=384),
    "small": dict(n_layer=12, n_head=12, n_embd=768),
    "medium": dict(n_layer=16, n_head=16, n_embd=1024),
}


def preset_config(name: str, vocab_size: int, block_size: int = 1024) -> GPTConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown model size {name!r}; choose one of: {', '.join(PRESETS)}")
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, **PRESETS[name])


# The weights of one transformer block (`blocks.{i}.<name>` in a checkpoint), in the order every
# forward pass uses them (see forward.block_weights). Matrices are stored (out, in), as nn.Linear's.
BLOCK_WEIGHTS = (
    "attn_norm.weight",
    "attn.qkv.weight",
    "attn.proj.weight",
    "mlp_norm.weight",
    "mlp.gate_up.weight",
    "mlp.down.weight",
)


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every weight tensor of `GPT(config)` (its state dict), in order."""
    C, hidden = config.n_embd, config.mlp_hidden
    block = dict(zip(BLOCK_WEIGHTS, [(C,), (3 * C, C), (C, C), (C,), (2 * hidden, C), (C, hidden)]))
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (config.vocab_size, C)}
    for i in range(config.n_layer):
        shapes |= {f"blocks.{i}.{name}": shape for name, shape in block.items()}
    shapes["norm.weight"] = (C,)
    return shapes
