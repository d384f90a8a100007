"""Low-rank adapters (LoRA, Hu et al. 2021) for personal fine-tuning.

Each adapted projection W (out x in) of the model keeps its weights frozen and learns a low-rank
change B @ A (B: out x rank, zero at the start; A: rank x in), scaled by alpha / rank:

    y = x W^T + scale * (x A^T) B^T

The adapter lives outside the model, in its own module, and reaches the projections through
forward hooks: the model's own parameters and state-dict names never change, so evaluation,
saving a resumable state and the rest of bashlsp see the same GPT. A published checkpoint
carries the adapter merged into its weights (`merged`): the server needs nothing new.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from .errors import ConfigError
from .gpt import GPT

# The projections of every block an adapter can reach (names inside a Block).
TARGETS = ("attn.qkv", "attn.proj", "mlp.gate_up", "mlp.down")


@dataclass
class LoRAConfig:
    rank: int = 8  # rank of each learned change; 0: no adapter (the whole model is fine-tuned)
    alpha: float = 16.0  # the change is scaled by alpha / rank, so the learning rate suits any rank
    targets: tuple[str, ...] = TARGETS  # which projections of each block are adapted

    def validate(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"adapter rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise ConfigError(f"adapter alpha must be positive, got {self.alpha!r}")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ConfigError(
                f"adapter targets must be some of {', '.join(TARGETS)}, got {', '.join(unknown) or 'none'}"
            )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRA(nn.Module):
    """The adapters of one model: an (A, B) pair for each target projection of each block."""

    def __init__(self, model: GPT, config: LoRAConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.names: list[str] = []  # module names in the model, e.g. "blocks.0.attn.qkv"
        self.a = nn.ParameterList()
        self.b = nn.ParameterList()
        modules = dict(model.named_modules())
        weight = model.wte.weight
        for i in range(len(model.blocks)):
            for target in config.targets:
                name = f"blocks.{i}.{target}"
                linear = modules.get(name)
                if not isinstance(linear, nn.Linear):  # another architecture's block (issue 17)
                    continue
                out_features, in_features = linear.weight.shape
                a = torch.empty(config.rank, in_features, device=weight.device, dtype=weight.dtype)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as nn.Linear initialises; B = 0 keeps W at first
                self.names.append(name)
                self.a.append(nn.Parameter(a))
                self.b.append(nn.Parameter(torch.zeros(out_features, config.rank, device=a.device, dtype=a.dtype)))
        if not self.names:
            raise ConfigError(f"this model ({model.config.arch}) has none of the projections an adapter reaches")
        self.enabled = True  # off: the model computes as it did before the adapter (the start model)
        self._handles: list = []
        self.attach(model)

    def attach(self, model: GPT) -> None:
        """Freeze the model's own weights and add the adapters' changes to the projections' outputs."""
        self.detach()
        for p in model.parameters():
            p.requires_grad_(False)
        modules = dict(model.named_modules())
        for index, name in enumerate(self.names):
            self._handles.append(modules[name].register_forward_hook(self._hook(index)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, index: int):
        def add_change(module, inputs, output):
            if not self.enabled:
                return None
            x = inputs[0]  # (B, T, in)
            a, b = self.a[index], self.b[index]
            return output + (x @ a.to(x.dtype).t() @ b.to(x.dtype).t()) * self.config.scale  # (B, T, out)

        return add_change

    @contextmanager
    def disabled(self):
        """The start model, for as long as the block runs (the adapter's changes are left out)."""
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def delta(self, index: int) -> torch.Tensor:
        """The change to projection `index`'s weight, (out, in)."""
        return (self.b[index] @ self.a[index]) * self.config.scale

    @torch.no_grad()
    def merged(self, model: GPT) -> GPT:
        """A plain copy of `model` with every change folded into its weights (no hooks, no adapter):
        what a checkpoint publishes."""
        copied = GPT(model.config, init_weights=False).to(model.wte.weight.device)
        copied.load_state_dict(model.state_dict())
        modules = dict(copied.named_modules())
        for index, name in enumerate(self.names):
            modules[name].weight += self.delta(index).to(modules[name].weight.dtype)
        copied.train(model.training)
        for p in copied.parameters():
            p.requires_grad_(True)
        return copied
