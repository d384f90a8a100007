"""The one forward interface every implementation of the model serves, and what they share.

Three implementations of the same math, side by side in this package:

- `gpt.GPT`: torch, the reference and the one that trains;
- `fast_gpt.FastForward`: torch for serving on a GPU, the same math with fewer ops;
- `numpy_gpt.NumpyGPT`: numpy for serving on a CPU, without importing torch.

The engine (`bashlsp.model.engine`) and the benchmarks talk to any of them through `Forward`:
token ids in, numpy float32 logits out, a KV cache of one layout
(n_layer, batch, n_head, max_len, head_dim) for keys and values. They build their RoPE tables
from `rope_angles` and take each block's weights by the names in `config.BLOCK_WEIGHTS`
(`block_weights`). Torch-free (numpy only), like config.py.

The other architectures (architectures.py: moe.MoE, mamba.Mamba) are torch models that serve
themselves through the same interface; Mamba's cache (mamba.StateCache) holds recurrent states
beside keys and values, and the engine reaches any cache only through `length`, `max_len`,
`batch_size` and `resized`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import numpy as np

from .config import BLOCK_WEIGHTS, GPTConfig

T = TypeVar("T")


class KVCache(Protocol):
    """Keys and values of every layer for a batch of streams, preallocated to `max_len`;
    `length` positions are filled (lowering it drops the tail without copying)."""

    k: object  # (n_layer, batch, n_head, max_len, head_dim): a numpy array or a torch tensor
    v: object
    max_len: int
    length: int

    @property
    def batch_size(self) -> int: ...

    def resized(self, batch_size: int, max_len: int) -> KVCache:
        """A new cache of `max_len` positions holding the first `length` positions of batch row 0
        in each of `batch_size` rows (the engine grows a document's cache, and starts sampled
        rows from one prefix, with it)."""
        ...


class Forward(Protocol):
    config: GPTConfig

    def step(self, idx, cache: KVCache, all_positions: bool = False) -> np.ndarray:
        """idx (B, T) token ids (list, array or tensor) continue the cached positions; returns the
        last position's logits (B, V) float32, or with all_positions those of every position (B, T, V)."""
        ...

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache: ...

    def num_params(self) -> int: ...

    def set_num_threads(self, threads: int) -> None:
        """CPU threads of the library doing the arithmetic (process-wide)."""
        ...

    def inference_mode(self) -> AbstractContextManager:
        """A context to run many steps in (torch's inference mode; nothing for numpy)."""
        ...


def rope_angles(config: GPTConfig) -> np.ndarray:
    """RoPE's rotation angle of each position and frequency, (block_size, head_dim / 2) float64:
    position * theta^(-2i / head_dim). Each implementation takes cos and sin of these."""
    half = config.head_dim // 2
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(half, dtype=np.float64) / half))
    return np.outer(np.arange(config.block_size, dtype=np.float64), inv_freq)


def block_weights(config: GPTConfig, vector: Callable[[str], T], matrix: Callable[[str], T]) -> list[tuple[T, ...]]:
    """Each block's weights in the order of BLOCK_WEIGHTS, looked up by their checkpoint names:
    the norms' vectors through `vector`, the (out, in) matrices through `matrix` (where an
    implementation re-lays them out)."""
    return [
        tuple((vector if name.endswith("norm.weight") else matrix)(f"blocks.{i}.{name}") for name in BLOCK_WEIGHTS)
        for i in range(config.n_layer)
    ]
