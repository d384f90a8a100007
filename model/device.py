"""Device choice: `auto` prefers Apple's MPS, then CUDA, then the CPU.

torch is imported inside the functions that need it: the server on a CPU runs without it
(see serving_device).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _check_choice(name: str) -> None:
    if name not in DEVICE_CHOICES:
        raise ConfigError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")


def torch_installed() -> bool:
    """Whether PyTorch can be imported, without importing it. `pip install bashlsp` leaves it
    out (serving on a CPU runs in numpy); the extras `train` and `gpu` bring it."""
    return importlib.util.find_spec("torch") is not None


def torch_missing(what: str, extra: str) -> ConfigError:
    """The error for something that needs PyTorch where it is not installed: it names the extra."""
    return ConfigError(f"{what} needs PyTorch, which `pip install bashlsp` leaves out: pip install 'bashlsp[{extra}]'")


def may_have_gpu() -> bool:
    """False where this machine surely has no GPU torch could use: not Apple silicon and no
    NVIDIA driver. Cheap: torch is not imported to find out (that alone takes seconds on a
    small machine; docs/benchmarks.md)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return (
        os.path.exists("/proc/driver/nvidia/version")
        or os.path.exists("/dev/dxg")
        or shutil.which("nvidia-smi") is not None
    )


def serving_device(name: str = "auto") -> tuple[str, str | torch.device]:
    """Where the server runs the model: ("numpy", "cpu") on a CPU, where torch is never
    imported, or ("torch", device) on a GPU. Raises ConfigError for an unknown or unavailable device."""
    _check_choice(name)
    if name == "cpu" or (name == "auto" and not (may_have_gpu() and torch_installed())):
        return "numpy", "cpu"
    if not torch_installed():
        raise torch_missing(f"serving on device {name!r}", "gpu")
    device = resolve_device(name)
    return ("numpy", "cpu") if device.type == "cpu" else ("torch", device)


def resolve_device(name: str = "auto") -> torch.device:
    import torch

    _check_choice(name)
    if name == "auto":
        if _mps_available():
            return torch.device("mps")
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available")
    if name == "mps" and not _mps_available():
        raise ConfigError("device 'mps' was asked for but MPS is not available")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has bf16 matrix instructions (AVX512-BF16 or AMX). Without them
    PyTorch's CPU bf16 matmul is emulated, two orders of magnitude slower than fp32 on the
    development machine (`bashlsp bench train` measures both; docs/benchmarks.md), so autocast
    would slow training down instead of speeding it up."""
    import torch

    cpu = getattr(torch._C, "_cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks) if cpu else False


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the device runs it fast; None means stay in fp32."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


AMP_MODES = ("auto", "on", "off", "force")


def amp_dtype(device: torch.device, mode: str = "auto") -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype for training (None: fp32) and a message for the user, or None.

    auto: bf16 where the device runs it fast (autocast_dtype), silently fp32 elsewhere.
    on: also fp16 on Apple's MPS and on CUDA GPUs without bf16 (trained with a gradient scaler);
        where the device is slow at both (a CPU without AVX512-BF16 or AMX) it says so and
        trains in fp32.
    force: autocast even there (bf16 on such a CPU: slower, for checking numerics only).
    off: fp32."""
    import torch

    if mode not in AMP_MODES:
        raise ConfigError(f"unknown amp mode {mode!r}; choose one of: {', '.join(AMP_MODES)}")
    if mode == "off":
        return None, None
    if mode == "auto":
        return autocast_dtype(device), None
    dtype = autocast_dtype(device)
    if dtype is None and device.type in ("cuda", "mps"):
        dtype = torch.float16
    if dtype is not None:
        return dtype, None
    if mode == "force":
        return torch.bfloat16, (
            f"--amp force: bf16 autocast on {device.type}, which has no fast bf16 (no AVX512-BF16 or AMX): "
            "expect it to be slower than fp32"
        )
    return None, (
        f"--amp: this {device.type} has no fast bf16 or fp16 (a CPU without AVX512-BF16 or AMX emulates bf16, "
        "slower than fp32: docs/benchmarks.md); training in fp32 (--amp force runs bf16 anyway)"
    )
