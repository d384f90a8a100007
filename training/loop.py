"""The training core shared by pre-training and personal fine-tuning.

Documents (already redacted text) become one token stream per epoch: documents in a
shuffled order, each followed by <|eof|>, a share of them turned into fill-in-the-middle
examples (model/fim.py). The stream is cut into windows of `seq_len + 1` tokens; a
(distributed) sampler hands windows to each process. AdamW with warmup and cosine
decay, gradient clipping and accumulation, bf16 autocast where the device runs it fast
(`amp`), non-finite losses skipped and counted; optionally torch.compile (`compile`) and
activation checkpointing per block (`grad_checkpointing`). State (weights, optimizer, step, history) is saved
as safetensors + JSON so a killed run resumes where it stopped, never through pickle.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, RandomSampler

from ..model.checkpoint import LoadedModel, fsync_dir, read_weights, validate_weights, write_file_synced
from ..model.context import CONTEXT_SHARE, QUERY_LINES, context_ids, query_text
from ..model.device import AMP_MODES, amp_dtype
from ..model.errors import TrainingError
from ..model.fim import fim_training_ids
from ..model.gpt import GPT
from ..model.tokenizer import BashTokenizer


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps (each = grad_accum micro-batches)
    batch_size: int = 16  # sequences per micro-batch (per process)
    seq_len: int = 256  # tokens per training sequence
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate (fine-tuning uses a lower one)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    fim_rate: float = 0.5  # share of documents turned into fill-in-the-middle examples
    context_rate: float = 0.0  # share of documents with neighbours that get them ahead (repo-level, model/context.py)
    # Share of each micro-batch's sequences drawn from the replay texts (personal rounds: general
    # bash the base model was trained on, so fine-tuning on one folder does not forget it).
    replay_share: float = 0.0
    eval_every: int = 0  # steps between holdout evaluations (0: only at the end)
    save_every: int = 0  # steps between resumable state saves (0: only at the end)
    log_every: int = 10
    seed: int = 0
    amp: str = "auto"  # autocast: auto | on | off | force (model/device.amp_dtype says what each does)
    compile: bool = False  # torch.compile the training forward; eager with one warning where it cannot
    grad_checkpointing: bool = False  # recompute each block's activations in backward: less memory, ~1/3 more compute
    progress: bool = True  # a tqdm bar on rank 0

    def validate(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "grad_accum"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1")
        if not 0 < self.lr < 1:
            raise TrainingError(f"learning rate {self.lr} is out of range (0, 1)")
        if not 0 <= self.fim_rate <= 1:
            raise TrainingError("fim_rate must be between 0 and 1")
        if not 0 <= self.context_rate <= 1:
            raise TrainingError("context_rate must be between 0 and 1")
        if not 0 <= self.replay_share < 1:
            raise TrainingError("replay_share must be at least 0 and below 1")
        if self.amp not in AMP_MODES:
            raise TrainingError(f"amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")

    def replay_rows(self) -> int:
        """Sequences of each micro-batch taken from the replay texts (at least one when sharing)."""
        if self.replay_share <= 0:
            return 0
        return min(self.batch_size - 1, max(1, round(self.batch_size * self.replay_share)))


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


# -- data ----------------------------------------------------------------------------------------


class TokenWindows(Dataset):
    """Windows of seq_len + 1 tokens over one epoch's stream; `set_epoch` rebuilds the stream.

    Plain documents are tokenized once; FIM examples are drawn anew each epoch (split points
    at random characters, the three pieces tokenized separately, as the server does).

    Repo-level examples: with `context` (training/corpus/dataset.RepoContext: `has_neighbours(i)`,
    `choose(i, query)`), a share `context_rate` of the documents that have neighbours get the
    chunks of other files chosen for them ahead, in the format the server writes into its prompts
    (model/context.py), within 1/CONTEXT_SHARE of a sequence: a FIM example's are chosen by the
    lines before its middle (the server's cursor), a plain document's by its first lines."""

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: BashTokenizer,
        seq_len: int,
        fim_rate: float,
        seed: int,
        context=None,
        context_rate: float = 0.0,
    ) -> None:
        if not texts:
            raise TrainingError("no training documents")
        self.texts = list(texts)
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.fim_rate = fim_rate
        self.seed = seed
        self.context, self.context_rate = context, context_rate if context is not None else 0.0
        self.plain_ids = [
            np.asarray(ids + [tokenizer.eof_id], dtype=np.int32) for ids in tokenizer.encode_batch(self.texts)
        ]
        self.num_tokens = sum(len(ids) for ids in self.plain_ids)
        if self.num_tokens < seq_len + 1:
            raise TrainingError(
                f"the training data has {self.num_tokens} tokens, fewer than one sequence of {seq_len + 1}"
            )
        self.epoch = -1
        self.set_epoch(0)

    def _fim_pieces(self, text: str, rng: np.random.Generator, room: int | None = None) -> tuple[str, str, str]:
        # A window of text short enough that the example fits in `room` tokens (~3 chars a token).
        max_chars = (room or self.seq_len) * 3
        if len(text) > max_chars:
            start = int(rng.integers(0, len(text) - max_chars + 1))
            text = text[start : start + max_chars]
        a, b = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
        return text[:a], text[a:b], text[b:]

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.texts))
        use_fim = rng.random(len(self.texts)) < self.fim_rate
        fim_docs = [i for i in order if use_fim[i] and len(self.texts[i]) >= 16]
        # (drawn only with a context, so runs without one keep their streams)
        with_context = set()
        if self.context_rate > 0:
            drawn = rng.random(len(self.texts)) < self.context_rate
            with_context = {i for i in range(len(self.texts)) if drawn[i] and self.context.has_neighbours(i)}
        budget = self.seq_len // CONTEXT_SHARE
        pieces = [
            self._fim_pieces(self.texts[i], rng, self.seq_len - budget if i in with_context else None) for i in fim_docs
        ]
        flat = self.tokenizer.encode_batch([p for triple in pieces for p in triple])
        fim_ids = {}
        for n, i in enumerate(fim_docs):
            prefix, middle, suffix = flat[3 * n : 3 * n + 3]
            fim_ids[i] = np.asarray(fim_training_ids(self.tokenizer, prefix, middle, suffix), dtype=np.int32)
        fim_prefix = {i: pieces[n][0] for n, i in enumerate(fim_docs)}
        examples = []
        for i in order:
            ids = fim_ids.get(i, self.plain_ids[i])
            if i in with_context:
                query = query_text(fim_prefix[i]) if i in fim_ids else _head(self.texts[i], QUERY_LINES)
                chunks = context_ids(self.tokenizer, self.context.choose(i, query), budget)
                ids = np.concatenate([np.asarray(chunks, dtype=np.int32), ids]) if chunks else ids
            examples.append(ids)
        stream = np.concatenate(examples)
        offset = int(rng.integers(0, self.seq_len))  # windows start at a different place each epoch
        self.stream = torch.from_numpy(stream[offset:].astype(np.int64))
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, (len(self.stream) - 1) // self.seq_len)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.seq_len
        chunk = self.stream[start : start + self.seq_len + 1]
        if len(chunk) < self.seq_len + 1:  # a short stream: wrap around
            chunk = torch.cat([chunk, self.stream[: self.seq_len + 1 - len(chunk)]])
        return chunk[:-1], chunk[1:]


def _head(text: str, lines: int) -> str:
    """The first `lines` lines of `text` (with their line breaks)."""
    end = -1
    for _ in range(lines):
        end = text.find("\n", end + 1)
        if end < 0:
            return text
    return text[: end + 1]


# -- state on disk (no pickle) -------------------------------------------------------------------


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in info["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})


@dataclass
class TrainResult:
    steps_done: int
    tokens_seen: int
    skipped_nonfinite: int
    final_loss: float
    tokens_per_second: float
    stopped_early: bool
    history: list[dict] = field(default_factory=list)


# -- the trainer ---------------------------------------------------------------------------------


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def read_saved_state(state_dir: Path, config) -> tuple[Path, dict, dict] | None:
    """The saved state under `state_dir` (its folder, trainer.json and validated model weights), or
    None where there is none; a state for another model config than `config` is a TrainingError."""
    for name in ("state", "state.old"):  # state.old survives a kill in the middle of a swap
        folder = Path(state_dir) / name
        if (folder / "trainer.json").is_file():
            break
    else:
        return None
    info = json.loads((folder / "trainer.json").read_text())
    if info["model_config"] != config.to_dict():
        raise TrainingError(f"the saved state in {folder} is for a different model config; remove it to start afresh")
    weights = read_weights(folder / "model.safetensors")
    validate_weights(config, weights, folder)
    return folder, info, weights


class Trainer:
    def __init__(
        self,
        model: GPT,
        tokenizer: BashTokenizer,
        train_texts: Sequence[str],
        config: TrainConfig,
        device: torch.device,
        state_dir: Path | None = None,
        holdout_texts: Sequence[str] = (),
        on_eval: Callable[[int, dict], None] | None = None,
        context=None,
        replay_texts: Sequence[str] = (),
        adapter: torch.nn.Module | None = None,
    ) -> None:
        """context: neighbour chunks for repo-level examples (see TokenWindows; config.context_rate).
        replay_texts: documents mixed into every micro-batch, config.replay_rows() sequences of it.
        adapter: low-rank adapters attached to `model` (model/lora.py): only they are trained, and
        they are saved beside the (frozen) weights in the resumable state."""
        config.validate()
        if config.seq_len > model.config.block_size:
            raise TrainingError(f"seq_len {config.seq_len} exceeds the model's block_size {model.config.block_size}")
        self.config, self.device, self.tokenizer = config, device, tokenizer
        self.model = model.to(device)
        self.state_dir = Path(state_dir) if state_dir else None
        self.holdout_texts = list(holdout_texts)
        self.on_eval = on_eval
        self.data = TokenWindows(
            train_texts, tokenizer, config.seq_len, config.fim_rate, config.seed, context, config.context_rate
        )
        self.replay = None
        if config.replay_rows():
            if not replay_texts:
                raise TrainingError("replay_share is set but there are no replay texts")
            self.replay = TokenWindows(replay_texts, tokenizer, config.seq_len, config.fim_rate, config.seed + 1)
        self.distributed = dist.is_initialized()
        self.ddp_model = model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.adapter = adapter
        self.trainable = list((adapter if adapter is not None else model).parameters())
        decay = [p for p in self.trainable if p.dim() >= 2]
        no_decay = [p for p in self.trainable if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
            betas=(config.beta1, config.beta2),
            # Fused on the CPU too: measured on nano (5.3M parameters, 2 shared cores), the
            # optimizer step alone took ~0.5 CPU-s with the default foreach AdamW, 0.02-0.2 fused.
            fused=device.type in ("cuda", "cpu"),
        )
        self.step = 0
        self.skipped = 0
        self.tokens_seen = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict] = []
        dtype, message = amp_dtype(device, config.amp)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        self.autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        # fp16 (MPS, older CUDA GPUs) underflows small gradients unless the loss is scaled.
        self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        if config.grad_checkpointing:
            checkpoint_blocks(model)
        self.compiled_model = None  # torch.compile of ddp_model; None: the loop calls ddp_model itself
        self._compiled_once = False
        if config.compile:
            reason = compile_unavailable(device)
            if reason:
                warnings.warn(f"--compile: {reason}; training without it", RuntimeWarning, stacklevel=2)
            else:
                self.compiled_model = torch.compile(self.ddp_model)

    # resumable state

    def save_state(self) -> None:
        if self.state_dir is None or not is_main_process():
            return
        from safetensors.torch import save as safetensors_save

        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / "state.tmp"
        tmp.mkdir(exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        opt_tensors, opt_info = _optimizer_tensors(self.optimizer)
        write_file_synced(tmp / "model.safetensors", safetensors_save(weights))
        write_file_synced(tmp / "optimizer.safetensors", safetensors_save(opt_tensors))
        if self.adapter is not None:
            adapter = {k: v.detach().cpu().contiguous() for k, v in self.adapter.state_dict().items()}
            write_file_synced(tmp / "adapter.safetensors", safetensors_save(adapter))
        info = {
            "step": self.step,
            "skipped": self.skipped,
            "tokens_seen": self.tokens_seen,
            "history": self.history,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "optimizer": opt_info,
            "config": asdict(self.config),
            "model_config": self.model.config.to_dict(),
        }
        write_file_synced(tmp / "trainer.json", json.dumps(info).encode())
        fsync_dir(tmp)
        # Swap in the new state whole: a kill at any moment leaves one complete state behind.
        final = self.state_dir / "state"
        old = self.state_dir / "state.old"
        _rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _rmtree(old)
        fsync_dir(self.state_dir)

    def load_state(self) -> bool:
        """Resume from state_dir if a saved state exists; returns whether it did."""
        if self.state_dir is None:
            return False
        saved = read_saved_state(self.state_dir, self.model.config)
        if saved is None:
            return False
        folder, info, weights = saved
        self.model.load_state_dict(weights)
        if self.adapter is not None:
            if not (folder / "adapter.safetensors").is_file():
                raise TrainingError(f"the saved state in {folder} has no adapter; remove it to start afresh")
            self.adapter.load_state_dict(read_weights(folder / "adapter.safetensors"))
        _restore_optimizer(self.optimizer, read_weights(folder / "optimizer.safetensors"), info["optimizer"])
        self.step, self.skipped, self.tokens_seen = info["step"], info["skipped"], info["tokens_seen"]
        self.history = info["history"]
        self.epoch, self.batch_in_epoch = info["epoch"], info["batch_in_epoch"]
        return True

    # evaluation

    def evaluate(self) -> dict:
        if not self.holdout_texts:
            return {}
        from .evaluate import evaluate_bpb

        self.model.eval()
        loaded = LoadedModel(self.model, self.tokenizer, self.model.config, {}, Path("."), self.device)
        result = evaluate_bpb(loaded, self.holdout_texts)
        self.model.train()
        return result

    # the loop

    def _batches(self):
        """Endless (x, y) micro-batches. The epoch (and its FIM draw) advances when one is used
        up; `epoch` and `batch_in_epoch` are saved, so a resumed run continues with the very
        batch the interrupted one would have taken next."""
        while True:
            self.data.set_epoch(self.epoch)
            if self.distributed:
                sampler = DistributedSampler(self.data, shuffle=True, seed=self.config.seed, drop_last=True)
                sampler.set_epoch(self.epoch)
            else:
                sampler = RandomSampler(
                    self.data, generator=torch.Generator().manual_seed(self.config.seed + self.epoch)
                )
            order = list(sampler)
            replay_rows = self.config.replay_rows() if self.replay is not None else 0
            size = self.config.batch_size - replay_rows
            while self.batch_in_epoch * size < len(order):
                chunk = order[self.batch_in_epoch * size : (self.batch_in_epoch + 1) * size]
                pairs = [self.data[i] for i in chunk]
                if replay_rows:
                    # Drawn from the batch's position, so a resumed run replays the same windows.
                    rng = np.random.default_rng([self.config.seed, 1, self.epoch, self.batch_in_epoch])
                    pairs += [self.replay[int(i)] for i in rng.integers(0, len(self.replay), size=replay_rows)]
                self.batch_in_epoch += 1
                yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            self.epoch += 1
            self.batch_in_epoch = 0

    def train(self, should_stop: Callable[[], bool] | None = None) -> TrainResult:
        config, model = self.config, self.model
        model.train()
        batches = self._batches()
        world = dist.get_world_size() if self.distributed else 1
        bar = None
        if config.progress and is_main_process():
            from tqdm import tqdm

            bar = tqdm(total=config.steps, initial=self.step, unit="step", dynamic_ncols=True)
        # Time spent in should_stop (a personal round's evaluations) is not training time.
        self._clock = {"started": time.perf_counter(), "tokens": self.tokens_seen, "paused": 0.0}
        loss_value, stopped = float("nan"), False
        while self.step < config.steps:
            if should_stop is not None:
                asked = time.perf_counter()
                stop = should_stop()
                self._clock["paused"] += time.perf_counter() - asked
                if stop:
                    stopped = True
                    break
            lr = lr_at(self.step, config)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            total = torch.zeros((), device=self.device)
            for micro in range(config.grad_accum):
                x, y = next(batches)
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                sync = nullcontext()
                if self.distributed and micro < config.grad_accum - 1:
                    sync = self.ddp_model.no_sync()  # all-reduce once per optimizer step
                with sync:
                    loss = self._forward_backward(x, y)
                total += loss
                self.tokens_seen += x.numel() * world
            if not torch.isfinite(total):
                # A bad batch or a spike: drop this step rather than poison the weights.
                self.optimizer.zero_grad(set_to_none=True)
                self.skipped += 1
                self.step += 1
                continue
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.trainable, config.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)  # skips the step if the scaled gradients overflowed
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            loss_value = total.item()
            tok_s = self.tokens_per_second()
            if self.step % config.log_every == 0 or self.step == config.steps:
                self.history.append(
                    {
                        "step": self.step,
                        "loss": loss_value,
                        "lr": lr,
                        "tokens_per_second": tok_s,
                        "tokens_seen": self.tokens_seen,
                    }
                )
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                bar.update(1)
            if config.eval_every and self.step % config.eval_every == 0 and self.step < config.steps:
                self._record_eval()
            if config.save_every and self.step % config.save_every == 0:
                self.save_state()
        if bar is not None:
            bar.close()
        self._clock["ended"] = time.perf_counter()
        tokens_per_second = self.tokens_per_second()
        self.save_state()
        return TrainResult(
            steps_done=self.step,
            tokens_seen=self.tokens_seen,
            skipped_nonfinite=self.skipped,
            final_loss=loss_value,
            tokens_per_second=tokens_per_second,
            stopped_early=stopped,
            history=self.history,
        )

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One micro-batch's loss (already divided by grad_accum), its gradients accumulated."""
        compiled = self.compiled_model
        first_compiled_call = compiled is not None and not self._compiled_once
        try:
            with self.autocast:
                model = compiled if compiled is not None else self.ddp_model
                loss = model(x, targets=y) / self.config.grad_accum
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        except Exception as exc:
            if not first_compiled_call:
                raise
            # torch.compile compiles at the first call and fails there (a broken C++ toolchain, an
            # unsupported op or platform): say so once and go on eager from clean gradients.
            warnings.warn(f"--compile: torch.compile failed ({exc}); training without it", RuntimeWarning, stacklevel=2)
            self.optimizer.zero_grad(set_to_none=True)
            self.compiled_model = None
            return self._forward_backward(x, y)
        self._compiled_once = True
        return loss.detach()

    def tokens_per_second(self) -> float:
        """Training tokens per second of the current (or last) train() call, pauses excluded."""
        clock = getattr(self, "_clock", None)
        if clock is None:
            return 0.0
        elapsed = clock.get("ended", time.perf_counter()) - clock["started"] - clock["paused"]
        return (self.tokens_seen - clock["tokens"]) / max(elapsed, 1e-9)

    def _record_eval(self) -> dict:
        if not is_main_process():
            return {}
        result = self.evaluate()
        if result:
            entry = {"step": self.step, "eval": {k: result[k] for k in ("bpb", "mean_file_bpb")}}
            self.history.append(entry)
            if self.on_eval:
                self.on_eval(self.step, result)
        return result


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None. Inductor writes C++ for the CPU (it needs a
    C++ compiler on PATH, or CXX) and Triton kernels for CUDA (the triton package)."""
    if device.type == "cpu":
        if not (os.environ.get("CXX") and shutil.which(os.environ["CXX"])) and not any(
            shutil.which(c) for c in ("g++", "c++", "clang++")
        ):
            return "no C++ compiler on PATH (torch.compile's CPU code needs g++ or clang++)"
    elif device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "the triton package is not installed (torch.compile's CUDA code needs it)"
    elif device.type != "mps":
        return f"torch.compile does not support device {device.type}"
    return None


def checkpoint_blocks(model: torch.nn.Module) -> None:
    """Activation checkpointing per block: each of `model.blocks` keeps only its input in the
    forward pass and recomputes the rest in backward. The block's own forward stays as it is
    (the weights and their names do not change); without gradients (evaluation) it runs plainly."""
    from torch.utils.checkpoint import checkpoint

    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise TrainingError(f"grad checkpointing needs a model with a .blocks list; {type(model).__name__} has none")
    for block in blocks:
        forward = block.forward

        def run(*args, forward=forward, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(forward, *args, use_reentrant=False, **kwargs)
            return forward(*args, **kwargs)

        block.forward = run


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
