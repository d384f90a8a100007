"""`bashlsp eval DIR`: the command line, the run, the report."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from ...model.errors import BashlspError
from .completers import COMPLETERS, make_completer
from .generation import (
    DEFAULT_GENERATIONS,
    comment_descriptions,
    generation_pass_rate,
    read_generation_pairs,
    server_generation_pass_rate,
)
from .metrics import evaluate_bpb, xz_bpb
from .tasks import (
    DEFAULT_KSR_CHARS,
    DEFAULT_LINES_PER_FILE,
    keystroke_savings,
    load_scripts,
    next_line_metrics,
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure a checkpoint on the shell scripts under DIR: bits per byte (beside xz -9e), "
        "next-line exact match and edit similarity, keystroke savings, and the share of "
        "comment-to-script generations that pass `bash -n`.",
    )
    parser.add_argument("dir", metavar="DIR", help="folder of shell scripts (read, never written)")
    parser.add_argument(
        "--checkpoint",
        help="checkpoint directory, store id, or 'default' (default: the store's current, else the bundled model)",
    )
    parser.add_argument("--store", help="checkpoint store directory (default: $BASHLSP_STORE or the platform data dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (default: auto)")
    parser.add_argument(
        "--max-files", type=int, default=0, metavar="N", help="evaluate a seeded sample of N files (default 0: all)"
    )
    parser.add_argument(
        "--lines-per-file",
        type=int,
        default=DEFAULT_LINES_PER_FILE,
        metavar="N",
        help=f"next-line positions sampled per file (default {DEFAULT_LINES_PER_FILE}; 0 skips)",
    )
    parser.add_argument(
        "--ksr-chars",
        type=int,
        default=DEFAULT_KSR_CHARS,
        metavar="N",
        help=f"keystroke simulation on the first N characters of each file, to the end of that line (default {DEFAULT_KSR_CHARS}; 0 skips)",
    )
    parser.add_argument(
        "--generations",
        type=int,
        default=DEFAULT_GENERATIONS,
        metavar="N",
        help=f"comment-to-script generations checked with bash -n (default {DEFAULT_GENERATIONS}; 0 skips)",
    )
    parser.add_argument(
        "--generations-from",
        type=Path,
        metavar="FILE",
        help="take descriptions from a tldr pairs JSON-lines file (holdout split) instead of DIR's comments",
    )
    parser.add_argument(
        "--commands",
        type=int,
        default=0,
        metavar="N",
        help="score N held-out description -> command pairs (model/data/examples_holdout.jsonl) for retrieval "
        "alone, the model alone and both: NLC2CMD score, exact match, bash -n (training/eval_commands.py; default 0 skips)",
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=0,
        metavar="N",
        help="bpb window stride in tokens for long files (default: block_size / 2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for every sampled choice (default 0)")
    parser.add_argument(
        "--completer",
        choices=COMPLETERS,
        default="reference",
        help="rest-of-line completion for next-line and keystroke figures, both through the language "
        "server's engine (token healing, prompt windows, stop rules): 'reference' without the "
        "stop-at-a-guess rule (the model's whole greedy line; default), 'server' with it (what editors get)",
    )
    parser.add_argument(
        "--min-token-prob",
        type=float,
        default=None,
        metavar="P",
        help="with --completer server: end suggestions begun mid-line before a token under this "
        "probability (default: the server's own setting, stops.MIN_TOKEN_PROB; 0 never)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="CPU threads for the bpb pass (torch) and the engine (default 0: torch's choice, the "
        "engine's own default of 1)",
    )
    return parser


def _check_arguments(args) -> None:
    for name in ("max_files", "lines_per_file", "ksr_chars", "generations", "commands", "stride", "threads"):
        if getattr(args, name) < 0:
            raise BashlspError(f"--{name.replace('_', '-')} must not be negative")


def run_eval(args) -> dict:
    from ...model.checkpoint import CheckpointStore, load_checkpoint, resolve_checkpoint
    from ...model.device import resolve_device

    _check_arguments(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    scripts = load_scripts(Path(args.dir))
    found = len(scripts.texts)
    if not scripts.texts:
        raise BashlspError(f"no readable shell scripts under {args.dir} (skipped: {scripts.skipped})")
    if args.max_files and found > args.max_files:
        keep = sorted(random.Random(args.seed).sample(range(found), args.max_files))
        scripts.paths = [scripts.paths[i] for i in keep]
        scripts.texts = [scripts.texts[i] for i in keep]
    names = [str(p) for p in scripts.paths]
    timings["collect_s"] = time.perf_counter() - started

    store = CheckpointStore(args.store) if args.store else None
    mark = time.perf_counter()
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint, store), device=resolve_device(args.device))
    loaded.model.eval()
    timings["load_s"] = time.perf_counter() - mark
    show_progress = not args.json

    mark = time.perf_counter()
    bpb = evaluate_bpb(loaded, scripts.texts, stride=args.stride or None, progress=show_progress)
    timings["bpb_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    xz_bits = [xz_bpb(text) * len(text.encode("utf-8")) for text in scripts.texts]
    total_bytes = sum(len(text.encode("utf-8")) for text in scripts.texts)
    xz_per_file = [bits / len(text.encode("utf-8")) for bits, text in zip(xz_bits, scripts.texts)]
    xz = {
        "bpb": sum(xz_bits) / total_bytes,
        "mean_file_bpb": sum(xz_per_file) / len(xz_per_file),
        "per_file": xz_per_file,
    }
    timings["xz_s"] = time.perf_counter() - mark

    result = {
        "dir": str(args.dir),
        "checkpoint": {
            "path": str(loaded.path),
            "id": loaded.id,
            "num_params": loaded.model.num_params(),
            "block_size": loaded.config.block_size,
        },
        "device": str(loaded.device),
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "files": {"found": found, "evaluated": len(scripts.texts), "bytes": total_bytes, "skipped": scripts.skipped},
        "bpb": {key: bpb[key] for key in ("bpb", "mean_file_bpb", "block_size", "stride")},
        "xz_bpb": {key: xz[key] for key in ("bpb", "mean_file_bpb")},
        "per_file": [
            {"path": name, "bytes": len(text.encode("utf-8")), "bpb": model_bpb, "xz_bpb": xz_file}
            for name, text, model_bpb, xz_file in zip(names, scripts.texts, bpb["per_file"], xz_per_file)
        ],
        "next_line": None,
        "ksr": None,
        "generation": None,
        "generation_server": None,
    }

    result["completer"] = args.completer
    if args.lines_per_file:
        mark = time.perf_counter()
        completer = make_completer(loaded, args.completer, threads=args.threads, min_token_prob=args.min_token_prob)
        result["next_line"] = next_line_metrics(
            scripts.texts, completer, args.lines_per_file, args.seed, names, progress=show_progress
        )
        timings["next_line_s"] = time.perf_counter() - mark
    if args.ksr_chars:
        mark = time.perf_counter()
        # a fresh engine: the keystrokes do not start from the next-line task's cache
        completer = make_completer(loaded, args.completer, threads=args.threads, min_token_prob=args.min_token_prob)
        result["ksr"] = keystroke_savings(scripts.texts, completer, args.ksr_chars, progress=show_progress)
        result["ksr"].update(decode_steps=completer.decode_steps, prefilled_tokens=completer.prefilled_tokens)
        timings["ksr_s"] = time.perf_counter() - mark
    if args.generations:
        if args.generations_from:
            descriptions, source = read_generation_pairs(args.generations_from)
        else:
            descriptions = [d for text in scripts.texts for d in comment_descriptions(text)]
            descriptions = list(dict.fromkeys(descriptions))  # dedupe, keep order
            source = f"comments followed by code in {args.dir}"
        available = len(descriptions)
        if available > args.generations:
            descriptions = [
                descriptions[i] for i in sorted(random.Random(args.seed).sample(range(available), args.generations))
            ]
        mark = time.perf_counter()
        generation = generation_pass_rate(loaded, descriptions, seed=args.seed, progress=show_progress)
        generation.update(source=source, available=available)
        result["generation"] = generation
        result["generation_server"] = server_generation_pass_rate(
            loaded, descriptions, seed=args.seed, progress=show_progress
        )
        timings["generation_s"] = time.perf_counter() - mark
    if args.commands:  # issue 13: what retrieval, the model and both give on held-out commands
        from ..eval_commands import evaluate_commands

        mark = time.perf_counter()
        result["commands"] = evaluate_commands(loaded, max_pairs=args.commands, seed=args.seed)
        timings["commands_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    result["timings"] = timings
    return result


def _percent(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f} %"


def format_report(result: dict) -> str:
    ckpt, files = result["checkpoint"], result["files"]
    skipped = (
        ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in files["skipped"].items() if count) or "none"
    )
    lines = [
        f"checkpoint {ckpt['id']} ({ckpt['num_params'] / 1e6:.2f} M parameters) from {ckpt['path']} "
        f"on {result['device']} ({result['threads']} threads)",
        f"scripts under {result['dir']}: {files['evaluated']} evaluated of {files['found']} found "
        f"({files['bytes']} bytes); skipped: {skipped}",
        "",
        f"bits per byte, each file read fresh (windows of {result['bpb']['block_size']} tokens, stride {result['bpb']['stride']})",
    ]
    per_file = result["per_file"]
    if len(per_file) <= 100:
        width = max(12, min(48, max(len(row["path"]) for row in per_file)))
        lines.append(f"  {'file':<{width}} {'bytes':>8} {'model':>7} {'xz -9e':>7}")
        for row in per_file:
            name = row["path"] if len(row["path"]) <= width else "..." + row["path"][-(width - 3) :]
            lines.append(f"  {name:<{width}} {row['bytes']:>8} {row['bpb']:>7.3f} {row['xz_bpb']:>7.3f}")
    else:
        width = 12
        lines.append(f"  ({len(per_file)} files: per-file figures with --json)")
    lines.append(
        f"  {'all (bits/bytes)':<{width}} {files['bytes']:>8} {result['bpb']['bpb']:>7.3f} {result['xz_bpb']['bpb']:>7.3f}"
    )
    lines.append(
        f"  {'mean of files':<{width}} {'':>8} {result['bpb']['mean_file_bpb']:>7.3f} {result['xz_bpb']['mean_file_bpb']:>7.3f}"
    )
    nl = result["next_line"]
    if nl:
        lines += [
            "",
            f"next-line completion: {nl['lines']} lines (up to {nl['lines_per_file']} per file, seed {result['seed']}), "
            f"greedy, {result['completer']} completer",
            f"  exact match      {_percent(nl['exact_match'])}",
            f"  edit similarity  {_percent(nl['edit_similarity'])}",
        ]
    ksr = result["ksr"]
    if ksr:
        lines += [
            "",
            f"keystroke savings: first {ksr['chars_per_file']} characters of {ksr['files']} files (to the line's end), "
            f"greedy rest-of-line, {result['completer']} completer",
            f"  {ksr['keystrokes']} keystrokes for {ksr['characters']} characters: KSR {_percent(ksr['ksr'])}",
        ]
    gen = result["generation"]
    if gen:
        lines += [
            "",
            f"comment-to-script generation: {gen['total']} of {gen['available']} prompts from {gen['source']}",
            f"  (T={gen['temperature']}, top-p {gen['top_p']}, up to {gen['max_new_tokens']} tokens, stop at a blank line)",
            f"  pass bash -n  {gen['passed']}/{gen['total']} = {_percent(gen['pass_rate'])}"
            f"  (no code {gen['no_code']}, cut at {gen['max_new_tokens']} tokens {gen['cut_at_max_tokens']})",
        ]
        server = result.get("generation_server")
        if server:
            lines.append(
                f"  through the server's Generate script from comment (greedy, then {server['samples']} samples at "
                f"T={server['retry_temperature']}; stop rules): a script offered for {server['offered']}/{server['total']} "
                f"= {_percent(server['pass_rate'])} ({server['greedy_passed']} on the greedy try)"
            )
    if result.get("commands"):
        from ..eval_commands import format_report as commands_report

        lines += [
            "",
            "comment -> command on held-out pairs (training/eval_commands.py)",
            commands_report(result["commands"]),
        ]
    timing = ", ".join(f"{name[:-2].replace('_', '-')} {seconds:.1f} s" for name, seconds in result["timings"].items())
    lines += ["", f"time: {timing}"]
    return "\n".join(lines)


def _json_safe(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def main(argv: list[str] | None = None, prog: str = "bashlsp eval") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        result = run_eval(args)
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_json_safe(result), indent=2))
    else:
        print(format_report(result))
    return 0
