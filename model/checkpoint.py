"""Checkpoints and the checkpoint store: the one way bashlsp saves and loads a model.

A checkpoint is a directory holding four files:
    model.safetensors  weights (never pickle: a pickle can run code when loaded)
    config.json        {"format": 1, "model": GPTConfig} (its `arch`, absent for dense, names the model)
    tokenizer.json     the tokenizer (its vocab size must equal the model's)
    meta.json          parent, created, data summary, metrics

The store is a directory:
    checkpoints/<id>/  published checkpoints (complete, never modified)
    staging/           checkpoints being written (ignored by readers)
    current            pointer: {"id": ..., "history": [older ids, newest first]}
Publishing writes into staging/, fsyncs, renames into checkpoints/, then replaces the
pointer with os.replace. Readers only follow the pointer, so they never see half a
checkpoint, whatever moment a writer dies at.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import GPTConfig, param_shapes
from .errors import CheckpointError, ConfigError, StoreError, TokenizerError
from .tokenizer import BashTokenizer

if TYPE_CHECKING:  # torch is imported only where a torch model is built or saved (see load_checkpoint)
    import torch

    from .gpt import GPT
    from .numpy_gpt import NumpyGPT

FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE, META_FILE = "model.safetensors", "config.json", "tokenizer.json", "meta.json"
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE, META_FILE)
STORE_ENV = "BASHLSP_STORE"
BUNDLED_DIR = Path(__file__).resolve().parent / "weights"
_MAX_JSON_BYTES = 16 * 1024 * 1024
BACKENDS = ("torch", "numpy")
_FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A validated checkpoint, ready to run: a torch `GPT` on a torch device, or (backend
    "numpy", for serving on a CPU without torch) a `NumpyGPT` with device "cpu"."""

    model: GPT | NumpyGPT
    tokenizer: BashTokenizer
    config: GPTConfig
    meta: dict
    path: Path
    device: torch.device | str

    @property
    def backend(self) -> str:
        return "numpy" if isinstance(self.device, str) else "torch"

    def on_numpy(self) -> LoadedModel:
        """The same model on the numpy backend (a float32 copy of the weights), as the server
        runs it on a CPU; itself for an arch numpy does not run (load_checkpoint)."""
        if self.backend == "numpy" or self.config.arch != "dense":
            return self
        from .numpy_gpt import NumpyGPT

        tensors = {name: t.detach().float().cpu().numpy() for name, t in self.model.state_dict().items()}
        return LoadedModel(NumpyGPT(self.config, tensors), self.tokenizer, self.config, self.meta, self.path, "cpu")

    @property
    def id(self) -> str:
        return self.meta.get("id") or self.path.name


# -- writing -------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """fsync a directory, so the entries written or renamed in it survive a crash (the trainer's state uses it too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    directory: Path, model: GPT, tokenizer: BashTokenizer, meta: dict | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write a complete checkpoint into `directory` (created; must not exist or be empty), fsynced.
    `dtype` (e.g. torch.float16 for the shipped model) stores the weights smaller; loading
    always casts them back to the model's float32 parameters."""
    from safetensors.torch import save as safetensors_save

    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(
            f"tokenizer vocab size {tokenizer.vocab_size} != model vocab size {model.config.vocab_size}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype=dtype or v.dtype).contiguous() for k, v in model.state_dict().items()}
    write_file_synced(directory / WEIGHTS_FILE, safetensors_save(tensors))
    config = {"format": FORMAT_VERSION, "model": model.config.to_dict()}
    write_file_synced(directory / CONFIG_FILE, json.dumps(config, indent=2).encode())
    write_file_synced(directory / TOKENIZER_FILE, tokenizer.to_str().encode())
    meta = dict(meta or {})
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    meta["num_params"] = model.num_params()
    write_file_synced(directory / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
    fsync_dir(directory)
    return directory


# -- loading and validation ----------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict:
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise CheckpointError(f"{what} {path} is too large ({path.stat().st_size} bytes)")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path.parent} is missing {path.name}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what} {path} is unreadable or not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path} must hold a JSON object")
    return data


def _describe_non_safetensors(path: Path) -> str:
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (a torch.save pickle?), which bashlsp never loads"
    if head[:1] == b"\x80":
        return "it looks like a Python pickle, which bashlsp never loads"
    return "it is truncated or corrupt"


def read_weights(path: Path, framework: str = "pt") -> dict:
    """Read a safetensors file as torch tensors (framework "pt") or numpy arrays ("numpy"),
    turning every failure into a CheckpointError that says what is wrong."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.parent} is missing {path.name}")
    try:
        with safe_open(str(path), framework=framework, device="cpu") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path.name} in {path.parent} is not a valid safetensors file: {_describe_non_safetensors(path)} ({exc})"
        ) from exc
    except TypeError as exc:  # numpy has no bfloat16
        raise CheckpointError(
            f"{path.name} in {path.parent} holds tensors numpy cannot read ({exc}); store float16 or float32 weights"
        ) from exc


def _all_finite(tensor) -> bool:
    # NaN and inf propagate through a sum, which is ~100x cheaper than isfinite() on CPU
    # (a float32 sum of weights cannot overflow unless they are ~1e38: broken anyway).
    if isinstance(tensor, np.ndarray):
        return math.isfinite(float(tensor.sum(dtype=np.float32)))
    return math.isfinite(float(tensor.float().sum()))


def validate_weights(config: GPTConfig, tensors: dict, where: Path) -> None:
    """The tensors (torch or numpy) are exactly the weights of a model of `config`: names,
    shapes, float dtypes, finite values."""
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"{where}: weights are missing tensors: {', '.join(missing[:5])}")
    if unexpected:
        raise CheckpointError(f"{where}: weights have unexpected tensors: {', '.join(unexpected[:5])}")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != expected[name]:
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(tensor.shape)}, the config needs {expected[name]}"
            )
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{where}: tensor {name} has non-float dtype {dtype}")
        if not _all_finite(tensor):
            raise CheckpointError(f"{where}: tensor {name} contains NaN or infinite values")


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", check_forward: bool = True, backend: str = "torch"
) -> LoadedModel:
    """Load and validate a checkpoint directory. Raises CheckpointError naming what is wrong.

    backend "torch" builds the config's model (architectures.build_model: a `GPT` for dense) on
    `device` (training, evaluation, serving on a GPU); "numpy" builds a `NumpyGPT` (serving on a
    CPU: torch is never imported), which exists for dense only: a checkpoint of another arch
    loads with torch on the CPU instead (logged; LoadedModel.backend says "torch")."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "numpy" and str(device) != "cpu":
        raise ConfigError(f"the numpy backend runs on the CPU only, not on {device}")
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    for name in CHECKPOINT_FILES:
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is missing {name}")
    config_data = _read_json(path / CONFIG_FILE, "config")
    if config_data.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format {config_data.get('format')!r} (expected {FORMAT_VERSION})"
        )
    try:
        config = GPTConfig.from_dict(config_data.get("model"))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    try:
        tokenizer = BashTokenizer.from_file(path / TOKENIZER_FILE)
    except TokenizerError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{path}: vocab mismatch: tokenizer has {tokenizer.vocab_size} tokens, model config has {config.vocab_size}"
        )
    meta = _read_json(path / META_FILE, "meta")
    if serving_backend(config.arch, backend) != backend:
        from .device import torch_installed, torch_missing

        if not torch_installed():
            raise torch_missing(f"serving {path} (arch {config.arch})", "train")
        logger.info(
            "%s is arch %s, which the numpy backend does not run: serving it with torch on the CPU", path, config.arch
        )
        backend = "torch"
    tensors = read_weights(path / WEIGHTS_FILE, framework="numpy" if backend == "numpy" else "pt")
    validate_weights(config, tensors, path)
    probe = [tokenizer.encode("#!/bin/bash\necho ok\n")[: config.block_size]]
    if backend == "numpy":
        from .numpy_gpt import NumpyGPT

        model = NumpyGPT(config, tensors)
        finite = not check_forward or bool(np.isfinite(model.step(probe, model.new_cache(1, len(probe[0])))).all())
        device = "cpu"
    else:
        import torch

        from .architectures import build_model

        model = build_model(config, init_weights=False)
        model.load_state_dict(tensors, strict=True)  # copies, casting float16 weights to float32
        device = torch.device(device)
        model.to(device).eval()
        finite = True
        if check_forward:
            with torch.inference_mode():
                finite = bool(torch.isfinite(model(torch.tensor(probe, device=device))).all())
    if not finite:
        raise CheckpointError(f"{path}: a forward pass produced NaN or infinite logits")
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, meta=meta, path=path, device=device)


def serving_backend(arch: str, backend: str) -> str:
    """The backend a checkpoint of `arch` loads on when `backend` is asked for: numpy_gpt runs the
    dense transformer only, so the other archs run with torch on the CPU instead."""
    return "torch" if backend == "numpy" and arch != "dense" else backend


# -- the store -----------------------------------------------------------------------------------


def default_store_dir() -> Path:
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("bashlsp", appauthor=False))


def bundled_checkpoint() -> Path | None:
    """The default model shipped inside the package, or None if this build has none."""
    return BUNDLED_DIR if (BUNDLED_DIR / WEIGHTS_FILE).is_file() else None


@dataclass
class CheckpointInfo:
    id: str
    path: Path
    meta: dict = field(default_factory=dict)
    current: bool = False
    arch: str = "dense"  # config.json's (model/architectures.py)


def new_checkpoint_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class CheckpointStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        self.checkpoints_dir = self.root / "checkpoints"
        self.staging_dir = self.root / "staging"
        self.pointer_path = self.root / "current"

    def _ensure_dirs(self) -> None:
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    # pointer

    def read_pointer(self) -> dict:
        """{"id": str | None, "history": [ids]}. A missing pointer means nothing published yet."""
        try:
            raw = self.pointer_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"id": None, "history": []}
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read the store pointer {self.pointer_path}: {exc}") from exc
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StoreError(f"the store pointer {self.pointer_path} is corrupt: {exc}") from exc
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("id"), str)
            or not isinstance(data.get("history", []), list)
        ):
            raise StoreError(f"the store pointer {self.pointer_path} is malformed")
        return {"id": data["id"], "history": [h for h in data.get("history", []) if isinstance(h, str)]}

    def _write_pointer(self, checkpoint_id: str, history: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".current.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        write_file_synced(tmp, json.dumps({"id": checkpoint_id, "history": history[:50]}).encode())
        os.replace(tmp, self.pointer_path)
        fsync_dir(self.root)

    # queries

    def current_id(self) -> str | None:
        return self.read_pointer()["id"]

    def path_of(self, checkpoint_id: str) -> Path:
        if not checkpoint_id or "/" in checkpoint_id or checkpoint_id in (".", ".."):
            raise StoreError(f"invalid checkpoint id {checkpoint_id!r}")
        return self.checkpoints_dir / checkpoint_id

    def current_path(self) -> Path | None:
        checkpoint_id = self.current_id()
        return None if checkpoint_id is None else self.path_of(checkpoint_id)

    def list(self) -> list[CheckpointInfo]:
        if not self.checkpoints_dir.is_dir():
            return []
        current = self.current_id()
        infos = []
        for path in sorted(self.checkpoints_dir.iterdir()):
            if not path.is_dir():
                continue
            try:
                meta = _read_json(path / META_FILE, "meta")
                model = _read_json(path / CONFIG_FILE, "config").get("model")
                arch = model.get("arch", "dense") if isinstance(model, dict) else "?"
            except CheckpointError as exc:
                meta, arch = {"error": str(exc)}, "?"
            infos.append(
                CheckpointInfo(id=path.name, path=path, meta=meta, current=path.name == current, arch=str(arch))
            )
        return infos

    # changes

    def publish(self, model: GPT, tokenizer: BashTokenizer, meta: dict | None = None) -> str:
        """Write a new checkpoint and make it current, atomically. Returns its id."""
        self._ensure_dirs()
        checkpoint_id = new_checkpoint_id()
        meta = dict(meta or {})
        meta["id"] = checkpoint_id
        meta.setdefault("parent", self.current_id())
        staging = self.staging_dir / f"{checkpoint_id}.partial"
        try:
            save_checkpoint(staging, model, tokenizer, meta)
            final = self.path_of(checkpoint_id)
            os.rename(staging, final)
            fsync_dir(self.checkpoints_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.use(checkpoint_id, validate=False)
        return checkpoint_id

    def use(self, checkpoint_id: str, validate: bool = True) -> None:
        """Point `current` at an existing checkpoint (validated first unless told otherwise)."""
        path = self.path_of(checkpoint_id)
        if not path.is_dir():
            raise StoreError(f"no checkpoint {checkpoint_id!r} in {self.checkpoints_dir}")
        if validate:
            load_checkpoint(path, check_forward=True)
        pointer = self.read_pointer()
        history = pointer["history"]
        if pointer["id"] and pointer["id"] != checkpoint_id:
            history = [pointer["id"]] + [h for h in history if h != checkpoint_id]
        self._write_pointer(checkpoint_id, history)

    def rollback(self) -> str:
        """Make the previous current checkpoint current again; returns its id."""
        pointer = self.read_pointer()
        history = list(pointer["history"])
        while history:
            candidate = history.pop(0)
            if self.path_of(candidate).is_dir():
                self._write_pointer(candidate, history)
                return candidate
        raise StoreError("nothing to roll back to: the store has no earlier checkpoint")

    def clean_staging(self) -> int:
        """Remove leftovers of writers that died mid-publish; returns how many."""
        if not self.staging_dir.is_dir():
            return 0
        leftovers = [p for p in self.staging_dir.iterdir()]
        for p in leftovers:
            shutil.rmtree(p, ignore_errors=True)
        return len(leftovers)


def resolve_checkpoint(spec: str | Path | None = None, store: CheckpointStore | None = None) -> Path:
    """Where to load a model from: an explicit directory, a store id, "default" (the bundled
    model), or None: the store's current checkpoint, falling back to the bundled model."""
    store = store or CheckpointStore()
    if spec is not None and str(spec) not in ("", "current"):
        if str(spec) in ("default", "bundled"):
            bundled = bundled_checkpoint()
            if bundled is None:
                raise CheckpointError("this installation has no bundled default model")
            return bundled
        as_path = Path(spec).expanduser()
        if as_path.is_dir():
            return as_path
        by_id = store.path_of(str(spec)) if "/" not in str(spec) else None
        if by_id is not None and by_id.is_dir():
            return by_id
        raise CheckpointError(f"no checkpoint directory or store id {str(spec)!r}")
    current = store.current_path()
    if current is not None:
        return current
    bundled = bundled_checkpoint()
    if bundled is None:
        raise CheckpointError(
            f"no model available: the store {store.root} is empty and this installation has no bundled default model"
        )
    return bundled
