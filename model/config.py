"""The model's shape: `GPTConfig`, the named sizes, and the weight tensors a config implies.

`arch` names the architecture (issue 17): "dense" (the transformer of gpt.py, the default, so a
config.json without it is dense), "moe" (moe.py: top-k routing over expert MLPs), "mamba"
(mamba.py: selective state-space layers) or "hybrid" (mamba.py: Mamba layers with an attention
block every `attn_every` layers). Only the settings of the config's own arch are stored and
accepted: a dense config.json is exactly what it was before architectures existed.

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
    arch: str = "dense"  # one of ARCHS
    # moe: every block's MLP is n_experts SwiGLU MLPs of mlp_hidden each, top_k of them per token
    n_experts: int = 4
    top_k: int = 2
    aux_loss_weight: float = 0.01  # of the load-balancing loss added to the training loss (Switch)
    # mamba and hybrid: the selective state-space layer (Mamba-1)
    d_state: int = 16  # SSM state per channel
    d_conv: int = 4  # causal depthwise convolution width
    expand: int = 2  # d_inner = expand * n_embd
    # hybrid: layer i is an attention block (gpt.Block) when (i + 1) % attn_every == 0, else Mamba
    attn_every: int = 2

    def __post_init__(self) -> None:
        if self.mlp_hidden == 0:
            self.mlp_hidden = 64 * math.ceil(8 * self.n_embd / 3 / 64)
        self.validate()

    def validate_arch(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"model config: unknown arch {self.arch!r}; choose one of: {', '.join(ARCHS)}")
        for name in ARCH_FIELDS[self.arch]:
            value = getattr(self, name)
            if name == "aux_loss_weight":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                    raise ConfigError(f"model config: aux_loss_weight must be a number >= 0, got {value!r}")
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.arch == "moe" and not 1 <= self.top_k <= self.n_experts:
            raise ConfigError(f"model config: top_k={self.top_k} must be between 1 and n_experts={self.n_experts}")
        if self.arch == "moe" and self.n_experts < 2:
            raise ConfigError(f"model config: a mixture of experts needs n_experts >= 2, got {self.n_experts}")
        if self.arch in ("mamba", "hybrid") and self.d_conv < 2:
            raise ConfigError(f"model config: d_conv must be at least 2, got {self.d_conv}")
        if self.arch == "hybrid" and not 2 <= self.attn_every <= self.n_layer:
            raise ConfigError(
                f"model config: attn_every={self.attn_every} must be between 2 and n_layer={self.n_layer} "
                "(1 would make every layer attention: that is arch dense)"
            )

    def validate(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError("model config: head dimension must be even for RoPE")
        self.validate_arch()

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def d_inner(self) -> int:
        return self.expand * self.n_embd

    @property
    def dt_rank(self) -> int:
        return math.ceil(self.n_embd / 16)  # Mamba's default rank of the dt projection

    def is_attention(self, layer: int) -> bool:
        """Whether layer `layer` has attention (a KV cache): all of dense and moe, some of hybrid."""
        if self.arch == "hybrid":
            return (layer + 1) % self.attn_every == 0
        return self.arch != "mamba"

    def describe(self) -> str:
        """The arch and its settings in a few words, e.g. "moe (4 experts, top 2)"."""
        if self.arch == "moe":
            return f"moe ({self.n_experts} experts, top {self.top_k})"
        if self.arch == "mamba":
            return f"mamba (d_state {self.d_state}, expand {self.expand})"
        if self.arch == "hybrid":
            attention = [i for i in range(self.n_layer) if self.is_attention(i)]
            return f"hybrid (attention in layers {', '.join(map(str, attention))} of {self.n_layer})"
        return "dense"

    def to_dict(self) -> dict:
        """The fields of this config's arch only (a dense config has no `arch` key: older
        readers, and a resumed run's saved state, see the dict they always saw)."""
        data = asdict(self)
        own = set(ARCH_FIELDS[self.arch]) | ({"arch"} if self.arch != "dense" else set())
        return {k: v for k, v in data.items() if k in BASE_FIELDS or k in own}

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys: {', '.join(unknown)}")
        arch = data.get("arch", "dense")
        if arch not in ARCHS:
            raise ConfigError(f"model config: unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
        foreign = sorted(set(data) - BASE_FIELDS - {"arch"} - set(ARCH_FIELDS[arch]))
        if foreign:
            raise ConfigError(f"model config: {', '.join(foreign)} do not apply to arch {arch}")
        missing = sorted(BASE_FIELDS - set(data) - {"mlp_hidden", "rope_theta", "norm_eps"})
        if missing:
            raise ConfigError(f"model config is missing keys: {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"model config is invalid: {exc}") from exc


ARCHS = ("dense", "moe", "mamba", "hybrid")
# The settings each arch reads (and stores); the rest of a config is every arch's.
ARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "dense": (),
    "moe": ("n_experts", "top_k", "aux_loss_weight"),
    "mamba": ("d_state", "d_conv", "expand"),
    "hybrid": ("d_state", "d_conv", "expand", "attn_every"),
}
BASE_FIELDS = {
    "vocab_size",
    "block_size",
    "n_layer",
    "n_head",
    "n_embd",
    "mlp_hidden",
    "rope_theta",
    "norm_eps",
}


# Named sizes. "nano" is the default: it decodes fast enough on 2 CPU cores for
# completion while typing; the larger ones are for GPUs and for the quality study.
PRESETS: dict[str, dict] = {
    "nano": dict(n_layer=4, n_head=4, n_embd=256),  # ~2M + embeddings, for fast CPU completion
    "tiny": dict(n_layer=6, n_head=6, n_embd=384),
    "small": dict(n_layer=12, n_head=12, n_embd=768),
    "medium": dict(n_layer=16, n_head=16, n_embd=1024),
}


def preset_config(name: str, vocab_size: int, block_size: int = 1024, arch: str = "dense", **settings) -> GPTConfig:
    """The named size in architecture `arch`, with that arch's `settings` (e.g. n_experts=8).
    A Mamba layer has about half the parameters of a transformer block (Mamba paper, section
    4.2), so mamba gets twice the size's layers and hybrid one and a half times (attention every
    third layer by default): the four archs of one size have similar parameter counts, apart from
    moe, whose extra experts add parameters but not compute per token."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model size {name!r}; choose one of: {', '.join(PRESETS)}")
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    foreign = sorted(set(settings) - set(ARCH_FIELDS[arch]))
    if foreign:
        raise ConfigError(f"{', '.join(foreign)} do not apply to arch {arch}")
    size = dict(PRESETS[name])
    if arch == "mamba":
        size["n_layer"] *= 2
    elif arch == "hybrid":
        size["n_layer"] = size["n_layer"] * 3 // 2
        settings = {"attn_every": 3} | settings
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, arch=arch, **size, **settings)


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
    """Name and shape of every weight tensor of the model of `config` (its state dict), in order:
    `GPT(config)` for dense, architectures.build_model(config) for every arch."""
    C, hidden, E = config.n_embd, config.mlp_hidden, config.n_experts
    block = dict(zip(BLOCK_WEIGHTS, [(C,), (3 * C, C), (C, C), (C,), (2 * hidden, C), (C, hidden)]))
    if config.arch == "moe":  # the MLP becomes a router and E stacked expert MLPs (moe.py)
        block = {k: v for k, v in block.items() if not k.startswith("mlp.")}
        block |= {"moe.router.weight": (E, C), "moe.gate_up": (E, 2 * hidden, C), "moe.down": (E, C, hidden)}
    d_inner, N, R = config.d_inner, config.d_state, config.dt_rank
    mamba = {  # mamba.py's MambaBlock
        "norm.weight": (C,),
        "mixer.in_proj.weight": (2 * d_inner, C),
        "mixer.conv1d.weight": (d_inner, 1, config.d_conv),
        "mixer.conv1d.bias": (d_inner,),
        "mixer.x_proj.weight": (R + 2 * N, d_inner),
        "mixer.dt_proj.weight": (d_inner, R),
        "mixer.dt_proj.bias": (d_inner,),
        "mixer.A_log": (d_inner, N),
        "mixer.D": (d_inner,),
        "mixer.out_proj.weight": (C, d_inner),
    }
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (config.vocab_size, C)}
    for i in range(config.n_layer):
        layer = block if config.is_attention(i) else mamba
        shapes |= {f"blocks.{i}.{name}": shape for name, shape in layer.items()}
    shapes["norm.weight"] = (C,)
    return shapes
