"""The `bashlsp-train` command: personal fine-tuning (`bashlsp-train DIR...`) and pre-training
(`bashlsp-train --pretrain CORPUS ...`, handled by `bashlsp.training.pretrain`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model.device import torch_installed, torch_missing
from ..model.errors import BashlspError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .personal import PersonalOptions

    defaults = PersonalOptions(dirs=[])
    parser = argparse.ArgumentParser(
        prog="bashlsp-train",
        description="Fine-tune the bashlsp model on your own shell scripts, publish the result if it is "
        "better (a quality gate), then keep watching the folders and train again after edits. "
        "Your folders are only read, never written. Pre-training a base model: bashlsp-train --pretrain CORPUS "
        "(see bashlsp-train --pretrain --help).",
    )
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="folders of your scripts (read, never written)")
    parser.add_argument("--pretrain", metavar="CORPUS", help="pre-train a base model instead (see --pretrain X --help)")
    what = parser.add_argument_group("what to do")
    what.add_argument("--once", action="store_true", help="train and publish once, then exit (default: keep watching)")
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be trained on, what is skipped and what is redacted (kinds and "
        "places, never the values); train nothing, write nothing",
    )
    what.add_argument(
        "--report",
        type=Path,
        metavar="PNG",
        help="write a PNG of the loss curves and the before/after bits per byte (needs matplotlib)",
    )
    where = parser.add_argument_group("models")
    where.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="checkpoint store (default: $BASHLSP_STORE or the platform data folder)",
    )
    where.add_argument(
        "--base",
        metavar="CHECKPOINT",
        help="checkpoint to fine-tune first: a directory, a store id or 'default' "
        "(default: the store's current checkpoint, else the bundled model)",
    )
    where.add_argument("--device", default=defaults.device, help="auto|cpu|cuda|mps (default: %(default)s)")
    train = parser.add_argument_group("training")
    length = train.add_mutually_exclusive_group()
    length.add_argument(
        "--steps", type=_positive_int, help="optimizer steps per round (default: from --epochs, capped)"
    )
    length.add_argument(
        "--epochs",
        type=_positive_float,
        help=f"passes over the round's training scripts (default: {defaults.epochs:g}, at most {defaults.max_steps} "
        "steps; given, no cap)",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=defaults.lr,
        help="peak learning rate (default: %(default)s, lower than pre-training so the model keeps what it knows)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.batch_size,
        help="sequences per optimizer step (default: %(default)s)",
    )
    train.add_argument(
        "--seq-len",
        type=_positive_int,
        default=defaults.seq_len,
        help="tokens per training sequence (default: %(default)s)",
    )
    train.add_argument(
        "--save-every",
        type=_positive_int,
        default=defaults.save_every,
        help="steps between saves of the resumable state (default: %(default)s)",
    )
    train.add_argument(
        "--replay-share",
        type=_fraction,
        default=defaults.replay_share,
        help="share of each batch that replays general bash shipped with the model, so it does not forget "
        "(default: %(default)s; 0: none)",
    )
    train.add_argument(
        "--adapter-rank",
        type=_non_negative_int,
        default=defaults.adapter_rank,
        help="train low-rank adapters of this rank on every block's projections instead of all the weights, "
        "merged into the published checkpoint (default: %(default)s; 0: fine-tune all the weights)",
    )
    train.add_argument(
        "--replay-distill",
        type=_non_negative_float,
        default=defaults.replay_distill,
        help="weight of the pull towards the start model's predictions on the replayed rows, so the model "
        "keeps general bash (default: %(default)s; 0: none)",
    )
    train.add_argument(
        "--eval-points",
        type=_positive_int,
        default=defaults.eval_points,
        help="points of a round at which both holdouts are scored; the best step that passes the gate is "
        "published (default: %(default)s)",
    )
    train.add_argument(
        "--patience",
        type=_non_negative_int,
        default=defaults.patience,
        help="evaluation points in a row without gain on your holdout before the round stops "
        "(default: %(default)s; 0: run every step)",
    )
    train.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")
    gate = parser.add_argument_group("data and quality gate")
    gate.add_argument(
        "--holdout",
        type=_fraction,
        default=defaults.holdout_fraction,
        help="share of your scripts held out to measure improvement (default: %(default)s)",
    )
    gate.add_argument(
        "--max-general-loss",
        type=_fraction,
        default=defaults.max_general_loss,
        help="how much worse (relative) the general bash holdout may get (default: %(default)s)",
    )
    gate.add_argument(
        "--holdout-by-bytes",
        action="store_true",
        help="weigh your held-out scripts by their bytes (default: each counts the same, so one long data "
        "table cannot make up most of the figure)",
    )
    gate.add_argument(
        "--general-holdout",
        type=Path,
        metavar="DIR",
        help="folder of general bash scripts for the forgetting check "
        "(default: the holdout shipped with the default model)",
    )
    gate.add_argument(
        "--max-file-kb",
        type=_positive_int,
        default=defaults.max_file_bytes // 1024,
        help="skip files larger than this (default: %(default)s)",
    )
    gate.add_argument(
        "--debounce",
        type=_positive_float,
        default=defaults.debounce_s,
        help="seconds without edits before training again (default: %(default)s)",
    )
    return parser


def options_from_args(args: argparse.Namespace):
    from .personal import PersonalOptions

    return PersonalOptions(
        dirs=[Path(d) for d in args.dirs],
        store=args.store,
        base=args.base,
        device=args.device,
        steps=args.steps,
        **({} if args.epochs is None else {"epochs": args.epochs, "max_steps": None}),
        save_every=args.save_every,
        lr=args.lr,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        replay_share=args.replay_share,
        eval_points=args.eval_points,
        patience=args.patience,
        holdout_files_equal=not args.holdout_by_bytes,
        adapter_rank=args.adapter_rank,
        replay_distill=args.replay_distill,
        seed=args.seed,
        once=args.once,
        dry_run=args.dry_run,
        report=args.report,
        holdout_fraction=args.holdout,
        max_general_loss=args.max_general_loss,
        general_holdout=args.general_holdout,
        max_file_bytes=args.max_file_kb * 1024,
        debounce_s=args.debounce,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not torch_installed():
            raise torch_missing("bashlsp-train", "train")
        if any(a == "--pretrain" or a.startswith("--pretrain=") for a in argv):
            from . import pretrain

            # `--pretrain CORPUS` becomes pretrain's positional CORPUS; the rest are its options.
            rest = [a.split("=", 1)[1] if a.startswith("--pretrain=") else a for a in argv if a != "--pretrain"]
            return int(pretrain.main(rest, prog="bashlsp-train --pretrain") or 0)
        args = build_parser().parse_args(argv)
        if not args.dirs:
            raise BashlspError("give at least one folder of scripts (see --help)")
        from .personal import run_personal_training

        return int(run_personal_training(options_from_args(args)) or 0)
    except BashlspError as exc:
        print(f"bashlsp-train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bashlsp-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
