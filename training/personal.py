"""Personal fine-tuning: `bashlsp-train DIR [DIR...]`.

One round:
 1. collect the scripts under the folders (read-only), redact secrets, split a holdout by file;
 2. load the checkpoint to start from (--base, else the store's current one, else the bundled
    model; in later rounds the newest checkpoint this trainer published);
 3. measure bits per byte on the user's holdout and on the general holdout shipped with the
    default model;
 4. fine-tune with the shared loop (training/loop.py) at a low learning rate;
 5. measure again and let the quality gate (training/gate.py) decide; publish through the
    checkpoint store only if it passes. The decision and the figures are printed, stored in the
    checkpoint's meta.json and appended to `<store>/trainer-history.jsonl`.
Then, unless --once, watch the folders: after edits settle, train again on the changed scripts
plus a replay of the others, starting from the newest checkpoint.

One trainer per store (training/lock.py). Ctrl-C stops at the next step boundary; the partial
model is not published and the last good checkpoint stays current. The resumable state lives in
`<store>/trainer-state/`, so a killed round resumes where it stopped when run again on the same
data and base.

Why ~670 lines: the round's steps, the best-step publishing and the watch loop share one
trainer's state (PersonalTrainer); what stands alone lives beside it (holdouts.py, gate.py,
personal_examples.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..model.checkpoint import BUNDLED_DIR, CheckpointStore, LoadedModel, load_checkpoint, resolve_checkpoint
from ..model.device import resolve_device
from ..model.errors import BashlspError, TrainingError
from ..model.examples import personal_index_path
from .collect import DEFAULT_MAX_FILE_BYTES, Script, collect_scripts
from .gate import DEFAULT_MAX_GENERAL_LOSS, GateDecision, decide
from .holdouts import (
    MAX_GENERAL_BYTES,
    PreparedData,
    bpb_text,
    context_gain,
    describe_dry_run,
    holdout_bpb,
    kb_text,
    load_general_holdout,
    prepare,
    read_documents,
    texts_digest,
)
from .lock import StoreLock
from .personal_examples import publish_personal_examples

REPLAY_DIR = BUNDLED_DIR / "replay"  # training/corpus/replay.py writes it
STATE_DIR_NAME = "trainer-state"
HISTORY_FILE = "trainer-history.jsonl"


@dataclass
class PersonalOptions:
    dirs: list[Path]
    store: Path | None = None
    base: str | None = None  # checkpoint for the first round (dir, store id, "default")
    device: str = "auto"
    steps: int | None = None  # fixed optimizer steps per round; None: from epochs
    # Passes over the round's training tokens, so the folder's size sets the round's length: one
    # pass (or a fixed 80 steps) left a test suite and a mixed bag short of what two give
    # (docs/benchmarks.md, "Personal training").
    epochs: float = 2.0
    # At most this many steps (None: no cap), so a big folder's round still ends in reasonable
    # time; 400 x 4 rows x 256 tokens is two passes over about 800 KB of scripts.
    max_steps: int | None = 400
    lr: float = 2e-4  # pre-training uses 1e-3 to 2e-3; a lower rate keeps what the model knows
    warmup_steps: int = 5
    batch_size: int = 8
    seq_len: int = 256
    fim_rate: float = 0.5
    save_every: int = 10  # steps between resumable state saves
    seed: int = 0
    once: bool = False
    dry_run: bool = False
    report: Path | None = None
    holdout_fraction: float = 0.1
    max_holdout_bytes: int = (
        64 * 1024
    )  # the gate measures your holdout in ~2 s; 24 KB held only 3 files of 3-9 KB: too noisy
    max_general_bytes: int = MAX_GENERAL_BYTES
    max_general_loss: float = DEFAULT_MAX_GENERAL_LOSS
    general_holdout: Path | None = None  # default: the holdout shipped with the default model
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    replay_ratio: float = 3.0  # later rounds: bytes of unchanged scripts replayed per changed byte
    # General bash mixed into every batch (the base model's training data that ships with it),
    # so one folder's style does not make the model forget the rest; chosen by measurement
    # (docs/benchmarks.md, "Personal training"): with distillation a quarter keeps the forgetting
    # in bounds, and the other six rows cover two passes in fewer (cheaper) steps than four would.
    replay_share: float = 0.25
    replay: Path | None = None  # default: the sample shipped with the default model
    # Low-rank adapters (model/lora.py) on every block's projections instead of fine-tuning all
    # the weights: 0 fine-tunes the whole model. Merged into the weights when published.
    adapter_rank: int = 0
    adapter_alpha: float = 16.0
    # Weight of the pull towards the start model's predictions on the replayed rows (KL divergence,
    # training/distill.py); 0: the replayed rows are trained on their text alone. Chosen, with the
    # replay share, by measurement (docs/benchmarks.md, "Personal training"); 2 since default-nano-10,
    # which under 1 lost general bash to one folder's style before its holdout had gained enough.
    replay_distill: float = 2.0
    # Both holdouts are scored at this many points of the round, each twice the steps of the one
    # before (eval_steps); each point that passes the gate and beats the last published one is
    # published at once. The round stops when your holdout gains less than min_improvement
    # (relative) over its best point so far, or when a point forgets more than allowed and more
    # than the point before it.
    eval_points: int = 6
    min_improvement: float = 0.002
    # Points in a row that may gain less than min_improvement before the round stops (0: it runs
    # to its last step): one dip, often a long file of the holdout the folder's style does not
    # help, is no sign that later steps cannot gain.
    patience: int = 2
    # Your holdout's figure is the mean of its files' own bits per byte, so each held-out script
    # counts the same: byte-weighted, one long data table (a test's expected output, say) can make
    # up half the figure and hide what training does for the scripts you type. False: bytes weigh.
    holdout_files_equal: bool = True
    debounce_s: float = 2.0
    progress: bool = True


# -- one round -----------------------------------------------------------------------------------


@dataclass
class RoundResult:
    decision: GateDecision | None
    published_id: str | None
    stopped: bool
    steps: int
    history: list[dict]
    meta: dict


@dataclass
class Baseline:
    """What a round measures before training, and on which texts."""

    holdout_texts: list[str]
    general_texts: list[str]
    general_note: str | None  # why there is no general holdout, when there is none
    user_digest: str
    general_digest: str
    user_before: float | None
    general_before: float | None
    general_reference: float | None  # forgetting is judged against this (the line's first model)


def eval_steps(steps: int, points: int) -> list[int]:
    """The steps at which a round of `steps` is scored: the last step and `points - 1` before it,
    each half the one after (80 steps, 5 points: 5, 10, 20, 40, 80). The first checkpoint can so
    come after a few steps, and the first steps, where a folder's style pulls the model furthest
    from general bash, are looked at closely (docs/benchmarks.md, "Personal training")."""
    return sorted({max(1, round(steps / 2**k)) for k in range(max(1, points))})


class BestStep:
    """A round's evaluation points. At each, your holdout is scored; when it is the best so far,
    the general holdout too, and if the gate passes that step is published at once, so the first
    checkpoint comes early and every later one is better than the last. `evaluate` answers whether
    the round should stop: your holdout gained less than min_improvement over its best point at
    `patience` points in a row, or the model forgets more and more."""

    def __init__(self, owner: PersonalTrainer, loaded: LoadedModel, baseline: Baseline, config, changed, meta, started):
        self.owner, self.loaded, self.baseline, self.config = owner, loaded, baseline, config
        self.changed, self.base_meta, self.started = changed, meta, started
        self.points = eval_steps(config.steps, owner.options.eval_points)
        self.last_step: int | None = None
        self.best_user: float | None = None  # the lowest user-holdout figure measured this round
        self.decision: GateDecision | None = None  # the published step's, else the last refusal
        self.published_id: str | None = None
        self.step: int | None = None  # the published step
        self.meta: dict = {}
        self.converged = False
        self.without_gain = 0  # points in a row that gained less than min_improvement
        self.first_published_s: float | None = None
        self.last_general: float | None = None  # the general holdout at the last point it was scored

    def due(self, step: int) -> bool:
        return step in self.points and step != self.last_step

    def where(self, last_step: int) -> str:
        step = self.step if self.step is not None else last_step
        return f"step {step} of {self.config.steps}"

    def evaluate(self, step: int, trainer) -> bool:
        o, b = self.owner.options, self.baseline
        self.last_step = step
        user = holdout_bpb(self.loaded, b.holdout_texts, files_equal=o.holdout_files_equal)
        previous_best = self.best_user
        gained = previous_best is None or (user is not None and user < previous_best * (1 - o.min_improvement))
        if user is not None and (previous_best is None or user < previous_best):
            self.best_user = user
        said = f"step {step}/{self.config.steps}: your holdout {bpb_text(user)}"
        forgetting_grows = False
        beats_published = self.decision is None or not self.decision.publish or user < self.decision.user_bpb_after
        if user is not None and user < (b.user_before or float("inf")) and beats_published:
            general = holdout_bpb(self.loaded, b.general_texts) if b.general_texts else None
            decision = decide(
                b.user_before,
                user,
                b.general_reference,
                general,
                max_general_loss=o.max_general_loss,
                missing_general_note=b.general_note,
            )
            said += f", general holdout {bpb_text(general)}"
            # Refused for forgetting, and more than at the last point: later steps only go further.
            forgetting_grows = (
                general is not None
                and b.general_reference is not None
                and general > b.general_reference * (1 + o.max_general_loss)
                and self.last_general is not None
                and general >= self.last_general
            )
            self.last_general = general
            if decision.publish:
                self._publish(decision, step, trainer)
                said += f": published {self.published_id}"
            else:
                said += f": not published ({decision.reason})"
                if self.decision is None or not self.decision.publish:
                    self.decision = decision
        elif user is not None and user >= (b.user_before or float("inf")):
            said += ": no better than before the round"
        else:
            said += ": no better than the published step"
        self.owner.say(said)
        self.without_gain = 0 if gained else self.without_gain + 1
        stalled = o.patience > 0 and self.without_gain >= o.patience
        if stalled or forgetting_grows:
            self.converged = True
            if step < self.config.steps:
                why = "your holdout stopped improving" if stalled else "the model forgets more general bash"
                self.owner.say(f"{why}: the round ends at step {step} of {self.config.steps}")
        return self.converged

    def gate_record(self, decision: GateDecision, step: int | None) -> dict:
        """The gate's decision with what it was measured on, for meta.json and the history."""
        b = self.baseline
        gate = decision.to_dict()
        gate.update(
            user_holdout_digest=b.user_digest,
            user_holdout_files_equal=self.owner.options.holdout_files_equal,
            general_holdout_digest=b.general_digest if b.general_texts else None,
            general_reference_bpb=b.general_reference,
            general_bpb_start=b.general_before,
            user_holdout_files=len(b.holdout_texts),
            general_holdout_docs=len(b.general_texts),
            step=step,
        )
        return gate

    def _publish(self, decision: GateDecision, step: int, trainer) -> None:
        gate = self.gate_record(decision, step)
        seconds = time.perf_counter() - self.started
        meta = {
            **self.base_meta,
            "training": self.owner._training_meta(trainer, self.config, seconds, self.changed),
            "metrics": {
                "user_holdout_bpb": decision.user_bpb_after,
                "general_holdout_bpb": decision.general_bpb_after,
                "final_train_loss": next((h["loss"] for h in reversed(trainer.history) if "loss" in h), None),
            },
            "gate": gate,
        }
        meta["summary"] = self.owner.with_personalisation(
            decision.headline(f"step {step} of {self.config.steps}", seconds, self.owner.holdout_note(self.baseline))
        )
        adapter = self.owner.adapter
        model = adapter.merged(self.loaded.model) if adapter is not None else self.loaded.model
        self.published_id = self.owner.store.publish(model, self.loaded.tokenizer, meta)
        self.owner.latest = self.owner.store.path_of(self.published_id)
        self.decision, self.step, self.meta = decision, step, meta
        if self.first_published_s is None:
            self.first_published_s = seconds
        self.owner.say(
            f"published checkpoint {self.published_id} to {self.owner.store.root}; running servers pick it up"
        )

    def final_decision(self) -> GateDecision:
        if self.decision is not None:
            return self.decision
        b = self.baseline
        best = self.best_user
        return GateDecision(
            publish=False,
            reason="no step improved your holdout",
            user_bpb_before=b.user_before,
            user_bpb_after=best,
            general_bpb_before=b.general_reference,
            general_bpb_after=None,
            max_general_loss=self.owner.options.max_general_loss,
        )


class PersonalTrainer:
    def __init__(self, options: PersonalOptions, out=None) -> None:
        self.options = options
        self.store = CheckpointStore(options.store) if options.store else CheckpointStore()
        self.device = resolve_device(options.device)
        self.stop_event = threading.Event()
        self.latest: Path | None = None  # newest checkpoint this trainer published
        self.out = out or (lambda text: print(text, flush=True))
        self.rounds = 0
        # What covers the folder before any training: the personal example index and the
        # project context (what each gave; every round's report says it).
        self.personalisation: dict = {}
        self.adapter = None  # the round's low-rank adapters (model/lora.py), when options.adapter_rank
        self._watcher = None

    def say(self, text: str) -> None:
        self.out(text)

    def collect(self) -> PreparedData:
        collection = collect_scripts(self.options.dirs, self.options.max_file_bytes, exclude=[self.store.root])
        return prepare(collection, self.options.holdout_fraction, self.options.max_holdout_bytes)

    def start_checkpoint(self) -> Path:
        """Round 1: --base, else the store's current checkpoint, else the bundled model. Once this
        trainer has published: the store's current checkpoint (normally its own newest; if the
        user switched models meanwhile, their choice)."""
        if self.latest is not None:
            return self.store.current_path() or self.latest
        return resolve_checkpoint(self.options.base, self.store)

    # steps and config

    def _steps_for(self, num_tokens: int, rows: int) -> int:
        o = self.options
        if o.steps is not None:
            return o.steps
        steps = max(1, math.ceil(o.epochs * num_tokens / (rows * o.seq_len)))
        return steps if o.max_steps is None else min(steps, o.max_steps)

    def _state_dir(self, key: str) -> Path:
        root = self.store.root / STATE_DIR_NAME
        # One round's state at a time: older rounds' leftovers are of no use.
        if root.is_dir():
            for old in root.iterdir():
                if old.name != key:
                    shutil.rmtree(old, ignore_errors=True)
        return root / key

    def train_round(self, prepared: PreparedData, changed: set[str] | None = None) -> RoundResult | None:
        """Fine-tune once and publish if the gate passes. `changed`: names of scripts edited since
        the last round (None: the first round, all scripts)."""
        self.rounds += 1
        train_scripts = self._round_scripts(prepared, changed)
        if train_scripts is None:
            return None
        start_path = self.start_checkpoint()
        loaded = load_checkpoint(start_path, device=self.device)
        self.say(f"starting from {loaded.id} ({start_path})")
        texts = [s.text for s in train_scripts]
        config, num_tokens = self._train_config(loaded, texts)
        baseline = self._measure_before(loaded, prepared)
        if changed is None:
            self.measure_context(loaded, prepared)
        if self.stop_event.is_set():
            return RoundResult(None, None, True, 0, [], {})
        started = time.perf_counter()

        replay_texts = self._replay_texts(config)
        self.adapter = self._attach_adapter(loaded)
        trainer = self._make_trainer(start_path, loaded, texts, config, replay_texts)
        rows = config.replay_rows()
        distill = self._attach_distillation(loaded, rows if replay_texts else 0)
        trained = (
            f"rank-{self.adapter.config.rank} adapters ({sum(p.numel() for p in self.adapter.parameters()) / 1e6:.2f}M "
            f"parameters) of the {loaded.model.num_params() / 1e6:.2f}M-parameter model"
            if self.adapter is not None
            else f"{loaded.model.num_params() / 1e6:.2f}M parameters"
        )
        self.say(
            f"fine-tuning {trained} on {len(train_scripts)} scripts "
            f"({num_tokens:,} tokens): {config.steps} steps of {config.batch_size}x{config.seq_len} tokens"
            + (f" ({rows} of {config.batch_size} rows general bash replayed)" if rows else "")
            + (f", distilled from the start model (weight {distill.weight:g})" if distill is not None else "")
            + f", lr {config.lr:g}, device {self.device}"
        )
        base_meta = {
            "kind": "personal",
            "base": {"id": loaded.id, "path": str(start_path)},
            "data": {
                **prepared.collection.summary(),
                "train_files": len(prepared.train),
                "round_train_files": len(train_scripts),
                "holdout_files": len(prepared.holdout),
                "redactions": prepared.num_redactions,
                "tokens": num_tokens,
                "replay_docs": len(replay_texts),
            },
            "personalisation": self.personalisation,
        }
        best = BestStep(self, loaded, baseline, config, changed, base_meta, started)
        try:
            result = self._fine_tune(trainer, config.steps, best)
        finally:
            if distill is not None:
                distill.detach()
        if result.stopped_early and not best.converged:
            kept = (
                f"checkpoint {best.published_id} (step {best.step}) stays published"
                if best.published_id
                else ("nothing published, the current checkpoint stays")
            )
            self.say(f"stopped at step {result.steps_done} of {config.steps}; {kept}")
            return RoundResult(best.decision, best.published_id, True, result.steps_done, result.history, best.meta)
        if best.last_step != trainer.step:
            best.evaluate(trainer.step, result)  # the last step, unless an evaluation point was it
        decision = best.final_decision()
        headline = best.meta.get("summary") or self.with_personalisation(
            decision.headline(best.where(trainer.step), time.perf_counter() - started, self.holdout_note(baseline))
        )
        self.say(decision.summary())
        self.say(headline)
        meta = best.meta or {
            **base_meta,
            "training": self._training_meta(trainer, config, time.perf_counter() - started, changed),
            "gate": best.gate_record(decision, None),
        }
        meta["summary"] = headline
        self._log_round(meta, best.published_id, result.history)
        shutil.rmtree(trainer.state_dir, ignore_errors=True)  # the round is decided: nothing to resume
        if self.options.report is not None:
            from .report import write_report

            self.say(write_report(self.options.report, result.history, decision))
        return RoundResult(decision, best.published_id, False, result.steps_done, result.history, meta)

    # the steps of a round

    def _round_scripts(self, prepared: PreparedData, changed: set[str] | None) -> list[Script] | None:
        """What this round trains on: every training script in the first round; later, the changed
        ones plus a replay of the others (replay_ratio times their bytes). None: nothing new."""
        o = self.options
        train_scripts = prepared.train
        if changed is not None:
            fresh = [s for s in prepared.train if s.name in changed]
            if not fresh:
                self.say("the changed scripts are all held out for measuring; nothing new to train on")
                return None
            rest = [s for s in prepared.train if s.name not in changed]
            random.Random(f"{o.seed}-{self.rounds}").shuffle(rest)
            budget, replay, replayed = o.replay_ratio * sum(s.num_bytes for s in fresh), [], 0
            for script in rest:
                if replayed >= budget:
                    break
                replay.append(script)
                replayed += script.num_bytes
            train_scripts = fresh + replay
            self.say(f"training on {len(fresh)} changed scripts and a replay of {len(replay)} others")
        if not train_scripts:
            raise TrainingError("no scripts to train on (need at least 2: one is held out to measure improvement)")
        return train_scripts

    def _train_config(self, loaded: LoadedModel, texts: list[str]):
        """(TrainConfig, tokens in `texts`): steps from the options and the data's size."""
        from .loop import TrainConfig

        o = self.options
        num_tokens = sum(len(ids) + 1 for ids in loaded.tokenizer.encode_batch(texts))
        seq_len = min(o.seq_len, loaded.config.block_size, num_tokens - 1)
        if seq_len < 8:
            raise TrainingError(f"too little to train on: {num_tokens} tokens")
        config = TrainConfig(
            batch_size=o.batch_size, seq_len=seq_len, lr=o.lr, replay_share=o.replay_share if o.replay_share else 0.0
        )
        # Steps from your tokens alone: the replayed rows come on top of them.
        steps = self._steps_for(num_tokens, o.batch_size - config.replay_rows())
        config = TrainConfig(
            steps=steps,
            batch_size=o.batch_size,
            seq_len=seq_len,
            lr=o.lr,
            warmup_steps=min(o.warmup_steps, max(1, steps // 10)),
            fim_rate=o.fim_rate,
            replay_share=o.replay_share,
            save_every=o.save_every,
            log_every=1,
            seed=o.seed,
            progress=o.progress,
        )
        return config, num_tokens

    def _measure_before(self, loaded: LoadedModel, prepared: PreparedData) -> Baseline:
        """Figures before training, reused from the start checkpoint's own gate when the texts match."""
        o = self.options
        holdout_texts = [s.text for s in prepared.holdout]
        general_texts, general_note = load_general_holdout(o.general_holdout, o.max_general_bytes)
        user_digest, general_digest = texts_digest(holdout_texts), texts_digest(general_texts)
        previous = loaded.meta.get("gate", {}) if isinstance(loaded.meta.get("gate"), dict) else {}
        measuring_started = time.perf_counter()
        same_user = previous.get("user_holdout_digest") == user_digest and bool(
            previous.get("user_holdout_files_equal")
        ) == bool(o.holdout_files_equal)
        if same_user and previous.get("user_bpb_after") is not None:
            user_before = previous["user_bpb_after"]
        else:
            user_before = holdout_bpb(loaded, holdout_texts, files_equal=o.holdout_files_equal)
        same_general = previous.get("general_holdout_digest") == general_digest
        general_before = None
        if general_texts:
            if same_general and previous.get("general_bpb_after") is not None:
                general_before = previous["general_bpb_after"]
            else:
                general_before = holdout_bpb(loaded, general_texts)
        # Forgetting is judged against the first model of this line of checkpoints, so many small
        # allowed losses cannot add up round after round.
        if same_general and previous.get("general_reference_bpb") is not None:
            general_reference = previous["general_reference_bpb"]
        else:
            general_reference = general_before
        self.say(
            f"before: your holdout {bpb_text(user_before)}, general holdout {bpb_text(general_before)} "
            f"({len(holdout_texts)} + {len(general_texts)} files, {time.perf_counter() - measuring_started:.1f} s)"
        )
        return Baseline(
            holdout_texts=holdout_texts,
            general_texts=general_texts,
            general_note=general_note,
            user_digest=user_digest,
            general_digest=general_digest,
            user_before=user_before,
            general_before=general_before,
            general_reference=general_reference,
        )

    def _replay_texts(self, config) -> list[str]:
        """General bash to mix into every batch (the sample of the base model's training data that
        ships with it); none when the share is 0 or the model ships none (said once)."""
        if not config.replay_rows():
            return []
        texts, note = read_documents(self.options.replay or REPLAY_DIR, max_bytes=None)
        if note:
            self.say(f"{note}; training without replay")
            config.replay_share = 0.0
        return texts

    def _attach_adapter(self, loaded: LoadedModel):
        """Low-rank adapters on the loaded model when the options ask for them, else None."""
        if not self.options.adapter_rank:
            return None
        from ..model.lora import LoRA, LoRAConfig

        return LoRA(loaded.model, LoRAConfig(rank=self.options.adapter_rank, alpha=self.options.adapter_alpha))

    def _attach_distillation(self, loaded: LoadedModel, rows: int):
        """Replay distillation (training/distill.py) when the options ask for it and rows are
        replayed, else None. The teacher is the start model: the same model with its adapters
        off, or a frozen copy when all the weights train."""
        if not (self.options.replay_distill and rows):
            return None
        from .distill import ReplayDistillation

        adapter = self.adapter
        if adapter is not None:

            def teacher(idx):
                with adapter.disabled():
                    return loaded.model(idx)

        else:
            import copy

            teacher = copy.deepcopy(loaded.model).eval().requires_grad_(False)
        return ReplayDistillation(loaded.model, teacher, rows, self.options.replay_distill)

    def _make_trainer(self, start_path: Path, loaded: LoadedModel, texts: list[str], config, replay_texts=()):
        """The shared loop's Trainer, resumed from a saved state of this very round if there is one:
        same start checkpoint, data and settings."""
        from .loop import Trainer

        settings = {k: v for k, v in asdict(config).items() if k != "progress"}
        key = hashlib.sha256(
            json.dumps(
                [
                    str(start_path),
                    loaded.meta.get("id"),
                    loaded.meta.get("created"),
                    texts_digest(texts),
                    texts_digest(list(replay_texts)),
                    settings,
                    self.adapter.config.rank if self.adapter is not None else 0,
                    self.adapter.config.alpha if self.adapter is not None else None,
                    self.options.replay_distill,
                ]
            ).encode()
        ).hexdigest()[:16]
        trainer = Trainer(
            loaded.model,
            loaded.tokenizer,
            texts,
            config,
            self.device,
            state_dir=self._state_dir(key),
            replay_texts=replay_texts,
            adapter=self.adapter,
        )
        if trainer.load_state():
            self.say(f"resumed from step {trainer.step} of {config.steps} (saved state in {trainer.state_dir})")
        return trainer

    def _fine_tune(self, trainer, steps: int, best: BestStep):
        """Run the loop to the end, to a stop request or until your holdout stops improving at an
        evaluation point (`best`); log lines when there is no progress bar."""
        reported = [len(trainer.history)]

        def between_steps() -> bool:
            # Called before every step: log lines when there is no progress bar, and the stop flag.
            if not self.options.progress:
                for entry in trainer.history[reported[0] :]:
                    if "loss" in entry:
                        self.say(
                            f"step {entry['step']}/{steps} loss {entry['loss']:.4f} {entry['tokens_per_second']:,.0f} tok/s"
                        )
                reported[0] = len(trainer.history)
            if self.stop_event.is_set():
                return True
            return best.due(trainer.step) and best.evaluate(trainer.step, trainer)

        result = trainer.train(should_stop=between_steps)
        between_steps()
        return result

    def _training_meta(self, trainer, config, train_seconds: float, changed: set[str] | None) -> dict:
        return {
            "steps": trainer.step,
            "planned_steps": config.steps,  # the round's length: a step may be published before its end
            "tokens_seen": trainer.tokens_seen,
            "seq_len": config.seq_len,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "fim_rate": config.fim_rate,
            "replay_share": config.replay_share,
            "adapter_rank": self.adapter.config.rank if self.adapter is not None else 0,
            "replay_distill": self.options.replay_distill if config.replay_share else 0.0,
            "skipped_nonfinite": trainer.skipped,
            "tokens_per_second": round(trainer.tokens_per_second(), 1),
            "seconds": round(train_seconds, 1),
            "device": str(self.device),
            "round": self.rounds,
            "changed_files": None if changed is None else len(changed),
        }

    def _log_round(self, meta: dict, published: str | None, history: list[dict]) -> None:
        self.store.root.mkdir(parents=True, exist_ok=True)
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "published": published, **meta, "history": history}
        with open(self.store.root / HISTORY_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def publish_examples(self, prepared: PreparedData) -> None:
        """The scripts' comment -> code blocks (redacted) into the store's personal example index,
        which the server searches for Generate script from comment (issue 13)."""
        count = publish_personal_examples(prepared.train + prepared.holdout, self.store.root)
        self.personalisation["examples"] = count
        self.say(f"personal examples: {count} comment -> code blocks in {personal_index_path(self.store.root)}")

    def measure_context(self, loaded: LoadedModel, prepared: PreparedData) -> None:
        """What the project context gives the start model on your holdout: the server puts chunks
        of your other scripts ahead of every prompt from the first minute (holdouts.context_gain)."""
        started = time.perf_counter()
        gain = context_gain(loaded, prepared.holdout, prepared.train)
        if gain is None:
            return
        self.personalisation["context"] = gain
        self.say(
            f"project context: your holdout {gain['plain_bpb']:.4f} -> {gain['context_bpb']:.4f} bpb "
            f"({(gain['context_bpb'] - gain['plain_bpb']) / gain['plain_bpb']:+.1%}) with chunks of your other scripts "
            f"ahead, as the server puts them, before training ({gain['with_chunks']} of {gain['segments']} segments "
            f"found some, {time.perf_counter() - started:.1f} s)"
        )

    def holdout_note(self, baseline: Baseline) -> str:
        """How your holdout's figure is made, for the round's one line."""
        n = len(baseline.holdout_texts)
        if self.options.holdout_files_equal and n > 1:
            return f"each of {n} held-out scripts weighed equally"
        return f"{n} held-out script{'s' if n != 1 else ''}, weighed by bytes" if n > 1 else "1 held-out script"

    def with_personalisation(self, headline: str) -> str:
        """The round's one line, with what covered the folder before training."""
        parts = []
        context = self.personalisation.get("context")
        if context:
            change = (context["context_bpb"] - context["plain_bpb"]) / context["plain_bpb"]
            parts.append(f"your other scripts as context {change:+.1%} bpb")
        if "examples" in self.personalisation:
            parts.append(f"{self.personalisation['examples']} personal examples for generate-from-comment")
        return headline + (f" (before training: {', '.join(parts)})" if parts else "")

    # the whole run

    def collect_and_report(self) -> PreparedData:
        prepared = self.collect()
        c = prepared.collection
        self.say(
            f"found {len(c.scripts)} scripts ({kb_text(c.num_bytes)}) under {', '.join(str(d) for d in self.options.dirs)}; "
            f"skipped {sum(c.skipped.values())} files"
            + (" (" + ", ".join(f"{r}: {n}" for r, n in sorted(c.skipped.items())) + ")" if c.skipped else "")
            + f"; redacted {prepared.num_redactions} secrets"
        )
        return prepared

    def run(self) -> int:
        from .watch import FolderWatcher

        o = self.options
        if o.dry_run:
            prepared = self.collect_and_report()
            try:
                base = str(self.start_checkpoint())
            except Exception as exc:  # noqa: BLE001 - a dry run reports the problem instead of failing
                base = f"(none: {exc})"
            general, note = load_general_holdout(o.general_holdout, o.max_general_bytes)
            self.say(describe_dry_run(prepared, base, note, len(general)))
            return 0
        with StoreLock(self.store.root) as lock:
            note = lock.stale_note()
            if note:
                self.say(note)
            self.store.clean_staging()  # leftovers of a trainer killed mid-publish (we hold the lock)
            # Watch from before the first collection, so edits made during the first round count.
            watcher = None if o.once else FolderWatcher(o.dirs, o.debounce_s, ignore=[self.store.root]).start()
            self._watcher = watcher
            try:
                prepared = self.collect_and_report()
                self.publish_examples(prepared)
                if prepared.train and prepared.holdout:
                    self.train_round(prepared)
                else:
                    self.say("need at least 2 scripts to train (one is held out to check the model improved)")
                    if o.once:
                        raise TrainingError(f"found {len(prepared.collection.scripts)} scripts; need at least 2")
                if watcher is None or self.stop_event.is_set():
                    return 0
                return self.watch(prepared, watcher)
            finally:
                if watcher is not None:
                    watcher.stop()

    def watch(self, prepared: PreparedData, watcher) -> int:
        trained = prepared.digests()
        self.say(f"watching {', '.join(str(d) for d in self.options.dirs)} for changes (Ctrl-C to stop)")
        while not self.stop_event.is_set():
            if not watcher.wait_for_changes():
                continue
            prepared = self.collect()
            self.publish_examples(prepared)
            now = prepared.digests()
            changed = {name for name, digest in now.items() if trained.get(name) != digest}
            if not changed:
                continue  # a file that is not a script, or a save without changes
            self.say(
                f"{len(changed)} scripts changed: {', '.join(sorted(changed)[:5])}{' ...' if len(changed) > 5 else ''}"
            )
            if not (prepared.train and prepared.holdout):
                self.say("need at least 2 scripts to train")
                continue
            try:
                outcome = self.train_round(prepared, changed)
            except BashlspError as exc:
                # One failed round (a checkpoint removed meanwhile, too little text) must not end
                # the watch: say why and wait for the next edit.
                self.say(f"this round failed: {exc}")
                outcome = None
            if outcome is None or not outcome.stopped:
                trained = now  # trained on (published or not): wait for the next edit
        return 0

    def request_stop(self) -> None:
        self.stop_event.set()
        if self._watcher is not None:
            self._watcher.stop()


def run_personal_training(options: PersonalOptions) -> int:
    """The `bashlsp-train DIR...` command. First Ctrl-C: stop at the next step boundary; second: now."""
    trainer = PersonalTrainer(options)
    previous = None

    def on_interrupt(signum, frame):
        if trainer.stop_event.is_set():
            raise KeyboardInterrupt
        print(
            "\nbashlsp-train: stopping at the next step boundary (Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )
        trainer.request_stop()

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_interrupt)
        signal.signal(signal.SIGTERM, on_interrupt)
    try:
        return trainer.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
