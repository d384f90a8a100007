"""`bashlsp bench train --compare`: the architectures and tokenizers side by side (issue 17).

Trains one model a row (dense, moe, mamba and hybrid with the BPE tokenizer, dense with the char
tokenizer) with `bashlsp-train --pretrain` on a slice of a built corpus, at equal training
compute on this machine: the same CPU time for every row (--seconds, one thread), each row's
step count set from its own measured throughput so that its learning-rate schedule runs to the
end. Then it measures every row the same way, in subprocesses:

- held-out bits per byte and next-line exact match through the server's engine
  (`bashlsp eval HOLDOUT --completer server`, the stop-at-a-guess rule as editors get it);
- decode tokens/s (one stream, prefill excluded) and warm typing p95 (ghost text while typing)
  in the real server (`bashlsp bench serve --checkpoint ROW`).

BPE rows share one tokenizer (--bpe-tokenizer, default the bundled model's), so they differ only
in architecture. The runs stay in --work: a second call reuses finished rows (delete a row's
folder to redo it) and prints the table again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..model.errors import BashlspError

ROWS = {  # name: (arch, tokenizer)
    "dense": ("dense", "bpe"),
    "moe": ("moe", "bpe"),
    "mamba": ("mamba", "bpe"),
    "hybrid": ("hybrid", "bpe"),
    "dense-char": ("dense", "char"),
}
PROBE_STEPS = 1  # timed training steps (after one untimed) that set a row's step count (mamba: ~1 min each here)


def slice_corpus(corpus: Path, out: Path, megabytes: float) -> dict:
    """A manifest of about `megabytes` of the corpus's train scripts (every k-th, so all kinds of
    package are in it) pointing at the corpus's own files; the holdout stays out (eval reads its own)."""
    records = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r["split"] == "train"]
    if not train:
        raise BashlspError(f"{corpus}/manifest.jsonl has no train scripts")
    total = sum(r["bytes"] for r in train)
    every = max(1, round(total / (megabytes * 1e6)))
    chosen = [dict(r, file=str((corpus / r["file"]).resolve())) for r in train[::every]]
    chosen.append(dict(chosen[0], split="holdout"))  # load_documents wants a holdout; eval uses --holdout
    out.mkdir(parents=True, exist_ok=True)
    # Written whole and renamed: several --compare processes (one a few rows) may share a --work.
    staged = out / f"manifest.{os.getpid()}.tmp"
    staged.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    os.replace(staged, out / "manifest.jsonl")
    return {"scripts": len(chosen) - 1, "bytes": sum(r["bytes"] for r in chosen[:-1]), "every": every}


def probe_tokens_per_cpu_second(arch: str, vocab_size: int, size: str, batch: int, seq_len: int) -> float:
    """Training tokens per CPU second of this arch at this shape, on one thread (random tokens:
    the work per step does not depend on them)."""
    from ..model.architectures import build_model
    from ..model.gpt import preset_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model(preset_config(size, vocab_size, 1024, arch))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        x = torch.randint(0, vocab_size, (batch, seq_len))
        for i in range(PROBE_STEPS + 1):
            if i == 1:
                started = time.process_time()
            loss = model(x, targets=x)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return PROBE_STEPS * batch * seq_len / (time.process_time() - started)
    finally:
        torch.set_num_threads(threads)


def run(command: list[str], log: Path) -> float:
    """Run a command at nice 5 (not more: under `nice -n 5 bashlsp bench ...` it keeps that) with
    its output in `log`; return its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    nice = ["nice", "-n", str(5 - os.nice(0))] if os.nice(0) < 5 else []
    with log.open("w") as handle:
        result = subprocess.run([*nice, *command], stdout=handle, stderr=subprocess.STDOUT, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise BashlspError(f"{' '.join(command[:6])} ... failed (exit {result.returncode}); {log}:\n{tail}")
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def train_row(name: str, args, corpus: Path, work: Path) -> dict:
    arch, kind = ROWS[name]
    row = work / name
    done = row / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(row, ignore_errors=True)
    row.mkdir(parents=True)
    from ..model.tokenizer import CHAR_VOCAB_SIZE, BashTokenizer

    vocab = CHAR_VOCAB_SIZE
    if kind == "bpe":
        shutil.copyfile(args.bpe_tokenizer, row / "tokenizer.json")  # pretrain uses the one in its --out
        vocab = BashTokenizer.from_file(row / "tokenizer.json").vocab_size
    rate = probe_tokens_per_cpu_second(arch, vocab, args.size, args.batch_size, args.seq_len)
    steps = max(10, int(args.seconds * rate / (args.batch_size * args.seq_len)))
    print(f"{name}: {rate:,.0f} training tokens per CPU second (probe) -> {steps} steps", flush=True)
    command = [sys.executable, "-m", "bashlsp.training.pretrain", str(corpus), "--out", str(row)]
    command += ["--size", args.size, "--arch", arch, "--tokenizer", kind, "--steps", str(steps)]
    command += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--lr", str(args.lr)]
    command += ["--warmup", str(max(1, steps // 20)), "--eval-every", "0", "--save-every", "0", "--max-eval-docs", "1"]
    command += ["--threads", "1", "--no-progress", "--seed", "0"]
    started = time.perf_counter()
    cpu = run(command, row / "train.log")
    history = json.loads((row / "history.json").read_text())
    meta = json.loads((row / "final" / "meta.json").read_text())
    figures = {
        "row": name,
        "arch": arch,
        "tokenizer": kind,
        "params": meta["num_params"],
        "steps": steps,
        "tokens": meta["training"]["tokens_seen"],
        "train_tokens_per_cpu_s": rate,
        "train_tokens_per_s": [h for h in history if "tokens_per_second" in h][-1]["tokens_per_second"],
        "train_wall_s": time.perf_counter() - started,
        "train_cpu_s": cpu,
        "final_train_loss": meta["metrics"]["final_train_loss"],
        "command": " ".join(command[1:]),
    }
    figures.update(measure_row(row / "final", args, row))
    done.write_text(json.dumps(figures, indent=1))
    return figures


def measure_row(checkpoint: Path, args, row: Path) -> dict:
    cli = [sys.executable, "-m", "bashlsp.server.cli"]
    evaluate = cli + ["eval", str(args.holdout), "--checkpoint", str(checkpoint), "--completer", "server", "--json"]
    evaluate += ["--max-files", str(args.eval_files), "--lines-per-file", str(args.lines_per_file)]
    evaluate += ["--ksr-chars", "0", "--generations", "0", "--threads", "1", "--device", "cpu"]
    run(evaluate, row / "eval.json")
    result = json.loads((row / "eval.json").read_text())
    serve = cli + ["bench", "serve", "--checkpoint", str(checkpoint), "--chars", str(args.serve_chars)]
    serve += ["--generate", "0", "--no-swap", "--first-samples", "0", "--json", str(row / "serve.json")]
    run(serve, row / "serve.log")
    report = json.loads((row / "serve.json").read_text())
    return {
        "holdout_bpb": result["bpb"]["bpb"],
        "holdout_files": result["files"]["evaluated"],
        "next_line_em": result["next_line"]["exact_match"],
        "next_line_lines": result["next_line"]["lines"],
        "decode_tokens_per_s": (report.get("decode") or {}).get("tokens_per_second"),
        "typing_p95_s": report["latency"]["inline"]["p95"],
        "typing_p50_s": report["latency"]["inline"]["p50"],
        "serving": f"{report['model'].get('backend')} on {report['model'].get('device')}",
        "eval_command": " ".join(evaluate[2:]),
        "serve_command": " ".join(serve[2:]),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| row | parameters | training tokens/CPU-s | tokens seen | held-out bpb | next-line EM | decode tokens/s | typing p95 (ms) | served by |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        decode = f"{r['decode_tokens_per_s']:,.0f}" if r.get("decode_tokens_per_s") else "-"
        lines.append(
            f"| {r['row']} | {r['params'] / 1e6:.2f}M | {r['train_tokens_per_cpu_s']:,.0f} | {r['tokens'] / 1e6:.2f}M "
            f"| {r['holdout_bpb']:.3f} | {r['next_line_em']:.1%} | {decode} | {r['typing_p95_s'] * 1000:.0f} | {r['serving']} |"
        )
    return "\n".join(lines)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train and measure each architecture and tokenizer.")
    p.add_argument(
        "--corpus", type=Path, required=True, help="a built corpus (python -m bashlsp.training.corpus.debian)"
    )
    p.add_argument(
        "--holdout", type=Path, required=True, help="held-out scripts (python -m ...corpus.holdout --export)"
    )
    p.add_argument("--work", type=Path, required=True, help="folder for the runs (kept: a second call reuses them)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--seconds", type=float, default=180, help="CPU seconds of training a row (default %(default)s)")
    p.add_argument("--corpus-mb", type=float, default=8.0, help="megabytes of the corpus's train scripts used")
    p.add_argument("--size", default="nano")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-files", type=int, default=40, help="held-out files for bpb and next-line EM")
    p.add_argument("--lines-per-file", type=int, default=4)
    p.add_argument("--serve-chars", type=int, default=300, help="characters typed in bench serve's steady phase")
    p.add_argument("--bpe-tokenizer", type=Path, help="tokenizer.json of the BPE rows (default: the bundled model's)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    return p


def main(argv: list[str] | None = None, prog: str = "bashlsp bench train --compare") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..model.checkpoint import BUNDLED_DIR

    args.bpe_tokenizer = args.bpe_tokenizer or BUNDLED_DIR / "tokenizer.json"
    try:
        if not args.bpe_tokenizer.is_file():
            raise BashlspError(f"no BPE tokenizer at {args.bpe_tokenizer}; pass --bpe-tokenizer")
        corpus = args.work / "corpus"
        sliced = slice_corpus(args.corpus, corpus, args.corpus_mb)
        print(
            f"corpus slice: {sliced['scripts']} scripts, {sliced['bytes'] / 1e6:.1f} MB (every {sliced['every']}th train "
            f"script of {args.corpus}); {args.seconds:.0f} CPU s of training a row, one thread, nice 5; "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        rows = []
        for name in args.rows:
            rows.append(train_row(name, args, corpus, args.work))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
