"""Ship a trained checkpoint as the bundled model: `python -m bashlsp.training.export CKPT --out DIR`.

A pre-training run writes `final/` (or, when stopped early, only its resumable `state/`); this
writes its weights as float16 into DIR (model/weights for the bundled model) with the meta a
checkpoint that leaves the machine carries (pretrain.shipped_meta: no local paths, training totals
over the runs it continues from `--parent`) and the prompt formats it was trained on, which the
server reads to decide what goes ahead of the document (model/examples.uses_examples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model.checkpoint import load_checkpoint
from ..model.errors import BashlspError, TrainingError
from .loop import read_saved_state
from .pretrain import export_checkpoint, shipped_meta

PROMPT_FORMATS = ("fim", "examples", "repo")  # FIM documents, few-shot example prompts, repo-level chunks


def from_state(run: Path, base: Path):
    """The weights of a run's resumable state (`run/state`), on the model and tokenizer of the
    checkpoint the run started from, with a meta that says where training stopped."""
    loaded = load_checkpoint(base)
    saved = read_saved_state(run, loaded.config)
    if saved is None:
        raise TrainingError(f"{run} has no saved state (no state/trainer.json)")
    _, info, weights = saved
    loaded.model.load_state_dict(weights)
    config = info["config"]
    meta = {
        "kind": "base",
        "size": loaded.meta.get("size", "custom"),
        "data": {"init": {"id": loaded.id, "steps_before": loaded.meta.get("training", {}).get("total_steps")}},
        "training": {
            "steps": info["step"],
            "planned_steps": config["steps"],
            "tokens_seen": info["tokens_seen"],
            "seq_len": config["seq_len"],
            "batch_size": config["batch_size"],
            "grad_accum": config["grad_accum"],
            "lr": config["lr"],
            "fim_rate": config["fim_rate"],
            "context_rate": config.get("context_rate", 0.0),
            "skipped_nonfinite": info["skipped"],
            "total_steps": info["step"] + (loaded.meta.get("training", {}).get("total_steps") or 0),
        },
        "metrics": {"history": info["history"][-8:]},
    }
    return loaded.model, loaded.tokenizer, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bashlsp.training.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a checkpoint directory (a run's final/), or a run with --state")
    p.add_argument("--out", type=Path, required=True, help="where the shipped checkpoint goes (e.g. model/weights)")
    p.add_argument("--id", required=True, help="the shipped checkpoint's id (e.g. default-nano-5)")
    p.add_argument("--parent", type=Path, help="the checkpoint the run started from (training totals; --state's model)")
    p.add_argument("--state", action="store_true", help="CHECKPOINT is a run directory: ship its saved state")
    p.add_argument("--prompt-formats", nargs="+", choices=PROMPT_FORMATS, default=["fim"])
    p.add_argument("--credits", help="the data credits line (default: the checkpoint's, else tldr-pages')")
    args = p.parse_args(argv)
    try:
        if args.state:
            if args.parent is None:
                raise TrainingError("--state needs --parent (the checkpoint the run started from)")
            model, tokenizer, meta = from_state(args.checkpoint, args.parent)
        else:
            loaded = load_checkpoint(args.checkpoint)
            model, tokenizer, meta = loaded.model, loaded.tokenizer, dict(loaded.meta)
            if not isinstance(meta.get("training"), dict) or not isinstance(meta.get("data"), dict):
                raise TrainingError(
                    f"{args.checkpoint} has no training record in meta.json: export a pre-training run's final/ "
                    "(or its state with --state)"
                )
        parent = load_checkpoint(args.parent, check_forward=False) if args.parent else None
        shipped = shipped_meta(meta, parent, args.id)
        shipped["prompt_formats"] = list(args.prompt_formats)
        shipped["credits"] = (
            args.credits
            or meta.get("credits")
            or ("Includes data derived from tldr-pages, © the tldr-pages team and contributors, CC BY 4.0.")
        )
        export_checkpoint(args.out, model, tokenizer, shipped)
    except BashlspError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {args.id} to {args.out} (prompt formats: {', '.join(args.prompt_formats)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
