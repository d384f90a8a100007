"""Pre-training the base model: `bashlsp-train --pretrain CORPUS --out RUN`.

Runs in one process or under `torchrun --nproc_per_node N` (DistributedDataParallel:
NCCL on GPUs, gloo on CPUs); rank 0 trains the tokenizer, writes state and checkpoints.
A run directory holds everything needed to resume after a kill: tokenizer.json, state/
(weights, optimizer, step, history) and, at the end, final/ (a checkpoint).

CORPUS is a directory written by the corpus builders (training/corpus/: manifest.jsonl and
tldr.jsonl, split into train/holdout by package) or any folder of shell scripts (then a
hash of each path puts ~5% in the holdout). Several are concatenated, in the order given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ..model.architectures import build_model
from ..model.checkpoint import (
    CHECKPOINT_FILES,
    META_FILE,
    CheckpointStore,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from ..model.config import ARCHS
from ..model.device import AMP_MODES, resolve_device
from ..model.errors import BashlspError, TrainingError
from ..model.gpt import GPT, PRESETS, preset_config
from ..model.tokenizer import TOKENIZER_KINDS, BashTokenizer
from .loop import TrainConfig, Trainer, is_main_process

STAGES = ("language", "code")


# The architectures' settings (model/config.py): given only for their arch; unset, the config's defaults.
ARCH_OPTIONS = (
    ("n_experts", int, "moe", "expert MLPs per block (default 4)"),
    ("top_k", int, "moe", "experts per token (default 2)"),
    ("aux_loss_weight", float, "moe", "weight of the load-balancing loss (default 0.01)"),
    ("d_state", int, "mamba/hybrid", "SSM state per channel (default 16)"),
    ("d_conv", int, "mamba/hybrid", "causal conv width (default 4)"),
    ("expand", int, "mamba/hybrid", "inner width / model width (default 2)"),
    ("attn_every", int, "hybrid", "every Nth layer is attention (default 3)"),
)


def load_documents(corpus: Path) -> tuple[list[str], list[str], dict]:
    """(train texts, holdout texts, summary) from a built corpus or a plain folder of scripts."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise TrainingError(f"corpus directory {corpus} does not exist")
    if is_built_corpus(corpus):
        from .corpus import load_corpus

        train = load_corpus(corpus, "train")
        holdout = load_corpus(corpus, "holdout")
        summary = {
            "corpus": str(corpus),
            "train_docs": len(train),
            "holdout_docs": len(holdout),
            "train_bytes": sum(len(d.text.encode()) for d in train),
            "sources": sorted({d.source for d in train}),
        }
        return [d.text for d in train], [d.text for d in holdout], summary
    from ..model.redact import redact
    from .collect import collect_scripts, holdout_split

    collected = collect_scripts([corpus])
    train_scripts, holdout_scripts = holdout_split(collected.scripts, fraction=0.05, max_files=200)
    train = [redact(s.text)[0] for s in train_scripts]
    holdout = [redact(s.text)[0] for s in holdout_scripts]
    if not train:
        raise TrainingError(f"no shell scripts found under {corpus}")
    return (
        train,
        holdout,
        {"corpus": str(corpus), "train_docs": len(train), "holdout_docs": len(holdout), **collected.summary()},
    )


def is_built_corpus(corpus: Path) -> bool:
    return (Path(corpus) / "manifest.jsonl").is_file() or (Path(corpus) / "tldr.jsonl").is_file()


def load_corpora(corpora: list[Path]) -> tuple[list[str], list[str], dict]:
    """load_documents of each corpus, concatenated in the order given (the Debian corpus and,
    say, the few-shot documents of training/corpus/examples.py); the summary of one corpus, or
    each corpus's summary under `corpora` with the totals."""
    if len(corpora) == 1:
        return load_documents(corpora[0])
    train, holdout, summaries = [], [], []
    for corpus in corpora:
        more_train, more_holdout, summary = load_documents(corpus)
        train += more_train
        holdout += more_holdout
        summaries.append(summary)
    summary = {
        "corpora": summaries,
        "train_docs": len(train),
        "holdout_docs": len(holdout),
        "train_bytes": sum(s.get("train_bytes", 0) for s in summaries),
        "sources": sorted({source for s in summaries for source in s.get("sources", [])}),
    }
    return train, holdout, summary


def repo_context(corpora: list[Path], train: list[str]):
    """Neighbour chunks for the train documents of built corpora (the same order as
    load_corpora's), grouped by package: training/corpus/dataset.RepoContext."""
    from .corpus import load_corpus
    from .corpus.dataset import RepoContext

    if not any((Path(corpus) / "manifest.jsonl").is_file() for corpus in corpora):
        raise TrainingError("--context-rate needs a built corpus (its manifest groups scripts by package)")
    if not all(is_built_corpus(corpus) for corpus in corpora):
        raise TrainingError("--context-rate with several corpora needs every one of them built (training/corpus)")
    docs = [doc for corpus in corpora for doc in load_corpus(corpus, "train")]
    return RepoContext.for_corpus(docs, texts=train)


def setup_distributed(device_name: str) -> torch.device:
    """Join the process group when started by torchrun; pick this process's device."""
    if "RANK" not in os.environ:
        return resolve_device(device_name)
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_parser(prog: str = "bashlsp-train --pretrain") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Pre-train the base model on a corpus (resumable; torchrun-capable)."
    )
    p.add_argument(
        "corpus",
        type=Path,
        nargs="+",
        help="corpus directories (training/corpus builders) or folders of scripts; several are concatenated",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="run directory (tokenizer, resumable state, final checkpoint)"
    )
    p.add_argument(
        "--init",
        help="start from this checkpoint (its tokenizer and weights; --size/--vocab-size/--block-size are ignored)",
    )
    p.add_argument(
        "--export", type=Path, help="also write the final checkpoint here with float16 weights (e.g. model/weights)"
    )
    p.add_argument("--export-id", help="the exported checkpoint's id (e.g. default-nano-4 for the bundled model)")
    p.add_argument("--size", default="nano", choices=list(PRESETS))
    p.add_argument(
        "--arch",
        choices=ARCHS,
        help="dense transformer (the default), moe (top-k routed expert MLPs), mamba (selective state space) "
        "or hybrid (Mamba layers, attention every --attn-every); see model/architectures.py",
    )
    for name, kind, arch, what in ARCH_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"{arch}: {what}")
    p.add_argument(
        "--tokenizer",
        choices=TOKENIZER_KINDS,
        help="bpe: a --vocab-size BPE trained on the corpus (the default); char: one token a byte (261 tokens)",
    )
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size (ignored with --tokenizer char)")
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (pre-training; fine-tuning uses less)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--fim-rate", type=float, help="share of FIM examples (default 0.5; 0 with --stage language)")
    p.add_argument(
        "--context-rate",
        type=float,
        default=0.0,
        help="share of a corpus's package scripts trained with chunks of the package's other files ahead (repo-level)",
    )
    p.add_argument(
        "--stage",
        choices=STAGES,
        help="two-stage recipe: language (English prose: python -m bashlsp.training.corpus.language), "
        "then code from that checkpoint (--init); recorded in meta.json",
    )
    p.add_argument(
        "--amp",
        choices=AMP_MODES,
        default="auto",
        help="autocast: auto (bf16 where fast, the default), on (also fp16 on MPS; says so where slow and "
        "stays fp32), force (even where slow), off",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (falls back with a warning)")
    p.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="recompute each block's activations in backward: less memory for ~1/3 more compute",
    )
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--max-eval-docs", type=int, default=64, help="holdout documents scored at each evaluation")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--publish", action="store_true", help="also publish the final checkpoint to the store")
    p.add_argument("--store", type=Path, help="checkpoint store for --publish")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_pretraining(args) -> Path:
    device = setup_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, holdout, summary = load_corpora(args.corpus)
    out = Path(args.out)
    tokenizer_path = out / "tokenizer.json"
    init = load_checkpoint(resolve_checkpoint(args.init)) if args.init else None
    if args.stage == "code" and init is None:
        raise TrainingError("--stage code continues a language-stage checkpoint: give it with --init")
    kind = args.tokenizer or (init.tokenizer.kind if init is not None else "bpe")
    if init is not None and kind != init.tokenizer.kind:
        raise TrainingError(f"--tokenizer {kind}: --init {init.path} has a {init.tokenizer.kind} tokenizer")
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        if init is not None and not tokenizer_path.is_file():
            init.tokenizer.save(tokenizer_path)
        if not tokenizer_path.is_file() and kind == "char":
            BashTokenizer.char().save(tokenizer_path)
        if not tokenizer_path.is_file():
            print(f"training a {args.vocab_size}-token BPE tokenizer on {len(train)} documents", flush=True)
            BashTokenizer.train(train, vocab_size=args.vocab_size).save(tokenizer_path)
    if dist.is_initialized():
        dist.barrier()
    tokenizer = BashTokenizer.from_file(tokenizer_path)
    if args.tokenizer and tokenizer.kind != args.tokenizer:  # a resumed run keeps its tokenizer
        raise TrainingError(f"{tokenizer_path} is a {tokenizer.kind} tokenizer, not {args.tokenizer}; use a new --out")
    fim_rate = args.fim_rate if args.fim_rate is not None else (0.0 if args.stage == "language" else 0.5)
    if init is not None:
        if init.tokenizer.to_str() != tokenizer.to_str():
            raise TrainingError(f"{tokenizer_path} differs from the tokenizer of --init {init.path}; use a new --out")
        if args.arch and args.arch != init.config.arch:
            raise TrainingError(f"--arch {args.arch}: --init {init.path} is arch {init.config.arch}")
        model = init.model.train()
        summary["init"] = {
            "path": str(init.path),
            "id": init.id,
            "steps_before": init.meta.get("training", {}).get("total_steps"),
        }
    else:
        settings = {name: getattr(args, name) for name, *_ in ARCH_OPTIONS if getattr(args, name) is not None}
        arch = args.arch or "dense"
        model = build_model(preset_config(args.size, tokenizer.vocab_size, args.block_size, arch, **settings))
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup,
        fim_rate=fim_rate,
        context_rate=args.context_rate,
        amp=args.amp,
        compile=args.compile,
        grad_checkpointing=args.grad_checkpointing,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        progress=not args.no_progress,
    )
    eval_docs = holdout[: args.max_eval_docs]
    trainer = Trainer(
        model,
        tokenizer,
        train,
        config,
        device,
        state_dir=out,
        holdout_texts=eval_docs,
        on_eval=lambda step, r: print(f"step {step}: holdout bpb {r['bpb']:.4f}", flush=True),
        context=repo_context(args.corpus, train) if args.context_rate > 0 else None,
    )
    if trainer.load_state() and is_main_process():
        print(f"resumed at step {trainer.step} from {out / 'state'}", flush=True)
    if is_main_process():
        print(
            f"model {args.size}, {model.config.describe()}: {model.num_params() / 1e6:.2f}M parameters; "
            f"{trainer.data.num_tokens:,} training tokens; "
            f"{len(train)} train / {len(holdout)} holdout documents; device {device}",
            flush=True,
        )
    started = time.time()
    result = trainer.train()
    final = out / "final"
    if is_main_process():
        metrics = trainer.evaluate()
        meta = {
            "kind": "base",
            "size": args.size if init is None else init.meta.get("size", "custom"),
            "arch": model.config.arch,
            "data": summary,
            "training": {
                "steps": result.steps_done,
                "tokens_seen": result.tokens_seen,
                "seq_len": args.seq_len,
                "batch_size": args.batch_size,
                "grad_accum": args.grad_accum,
                "lr": args.lr,
                "fim_rate": fim_rate,
                "context_rate": args.context_rate,
                "tokenizer": tokenizer.kind,
                "stage": args.stage,
                "amp": args.amp,
                "compile": args.compile,
                "grad_checkpointing": args.grad_checkpointing,
                "skipped_nonfinite": result.skipped_nonfinite,
                "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                "seconds_this_run": round(time.time() - started, 1),
                "device": str(device),
                "total_steps": result.steps_done
                + ((init.meta.get("training", {}).get("total_steps") or 0) if init else 0),
            },
            "metrics": {
                "holdout_bpb": metrics.get("bpb"),
                "holdout_docs": len(eval_docs),
                "final_train_loss": result.final_loss,
            },
            "credits": "Includes data derived from tldr-pages, © the tldr-pages team and contributors, CC BY 4.0.",
        }
        shutil.rmtree(final, ignore_errors=True)
        save_checkpoint(final, model, tokenizer, meta)
        if args.export:
            export_checkpoint(args.export, model, tokenizer, shipped_meta(meta, init, args.export_id))
            print(f"exported float16 checkpoint to {args.export}", flush=True)
        (out / "history.json").write_text(json.dumps(result.history, indent=1))
        print(f"final checkpoint: {final}  holdout bpb {metrics.get('bpb', float('nan')):.4f}", flush=True)
        if args.publish:
            store = CheckpointStore(args.store) if args.store else CheckpointStore()
            print(f"published {store.publish(model, tokenizer, meta)} to {store.root}", flush=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return final


def shipped_meta(meta: dict, init, export_id: str | None) -> dict:
    """The run's meta for a checkpoint that leaves this machine: no local paths, the id, and the
    training totals over the runs it continues."""
    shipped = json.loads(json.dumps(meta))
    shipped["data"].pop("corpus", None)
    for summary in shipped["data"].get("corpora", []):
        summary.pop("corpus", None)
    shipped["data"].get("init", {}).pop("path", None)
    if export_id:
        shipped["id"] = export_id
    training = shipped["training"]
    before = init.meta.get("training", {}) if init is not None else {}
    training["steps_before"] = before.get("total_steps") or 0
    training["tokens_seen_total"] = training["tokens_seen"] + (
        before.get("tokens_seen_total") or before.get("tokens_seen") or 0
    )
    return shipped


def export_checkpoint(directory: Path, model: GPT, tokenizer: BashTokenizer, meta: dict) -> None:
    """Replace the checkpoint files in `directory` (other files there, such as the model card
    and the holdout, stay) with float16 weights, validating the result before it counts. Where
    `directory` holds a general holdout (the bundled model's `holdout/`), the exported weights'
    bits per byte on it go into meta.json for the trainer's forgetting check."""
    from .holdouts import general_gate_meta

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        staged = save_checkpoint(Path(tmp) / "ckpt", model, tokenizer, meta, dtype=torch.float16)
        loaded = load_checkpoint(staged)
        if (directory / "holdout").is_dir():
            meta = {
                **loaded.meta,
                **general_gate_meta(loaded, directory / "holdout"),
            }  # loaded.meta: with created, num_params
            (staged / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            load_checkpoint(staged, check_forward=False)
        for name in CHECKPOINT_FILES:
            os.replace(staged / name, directory / name)


def main(argv: list[str] | None = None, prog: str = "bashlsp-train --pretrain") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        run_pretraining(args)
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
