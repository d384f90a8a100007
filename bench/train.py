"""`bashlsp bench train`: how fast personal training is on this machine.

Prints three things:
 1. the machine's matrix-multiply rate in bf16 (and fp32, for context), measured now;
 2. training throughput of the default model size with the personal-training defaults, through
    the real training loop (training/loop.py), in tokens/s, and as a share of the bf16 matmul
    rate: tokens/s x the model's training FLOPs per token (forward + backward, attention
    included: GPT.flops_per_token) / matmul FLOP/s;
 3. the time from starting `bashlsp-train FOLDER --once` on a folder of 100 scripts (~500 KB)
    to its first published checkpoint, with the command's default options.

The folder is --scripts DIR, or 100 shell scripts of 3-9 KB picked from this system's own
folders (/usr/bin, /etc, /usr/share, ...), copied into a temporary folder. The base model is
--base, else the bundled default model; without one, a stand-in of the default size (random
weights, a tokenizer trained on the folder) is used: the work per step is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..model.errors import BashlspError

SYSTEM_SCRIPT_DIRS = ("/usr/bin", "/usr/sbin", "/etc", "/usr/share", "/usr/lib")
TARGET_RATIO = 0.60
TARGET_FIRST_CHECKPOINT_S = 120.0


def matmul_gflops(dtype: torch.dtype, n: int = 512, min_seconds: float = 1.0) -> dict:
    """Sustained n x n x n matmul rate (2 n^3 FLOPs each) after a warm-up, in GFLOP per second of
    wall time ("wall") and per second of this process's CPU time ("cpu": all threads together;
    on a machine shared with other work it changes much less than the wall-time rate)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    count, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while True:
        a @ b
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and count >= 3:
            flops = 2 * n**3 * count / 1e9
            return {"wall": flops / elapsed, "cpu": flops / max(time.process_time() - cpu_started, 1e-9)}


def machine_matmul_gflops(dtype: torch.dtype) -> dict:
    """The best of 512^3 and 1024^3 (1024 only where one 512 product is quick: emulated bf16 is
    so slow that 1024^3 would take seconds a product and the rate does not depend on size)."""
    rate = matmul_gflops(dtype, 512)
    if 2 * 512**3 / (rate["wall"] * 1e9) < 0.05:
        bigger = matmul_gflops(dtype, 1024)
        rate = {key: max(rate[key], bigger[key]) for key in rate}
    return rate


def pick_system_scripts(count: int = 100, min_bytes: int = 3000, max_bytes: int = 9000) -> list[Path]:
    """`count` distinct UTF-8 shell scripts of min..max bytes from this system's folders."""
    from ..model.shell import HEAD_BYTES, shell_reason

    found: list[Path] = []
    seen: set[bytes] = set()
    for root in SYSTEM_SCRIPT_DIRS:
        for directory, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(directory) / name
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or not min_bytes <= info.st_size <= max_bytes:
                        continue
                    data = path.read_bytes()
                    data.decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                # Judged by the name it will have in the bench folder: its own folder (a completion
                # directory, say) is not copied along.
                if data in seen or shell_reason(Path(f"{len(found):03}-{name}"), data[:HEAD_BYTES]) is None:
                    continue
                seen.add(data)
                found.append(path)
                if len(found) == count:
                    return found
    raise BashlspError(
        f"found only {len(found)} shell scripts of {min_bytes}-{max_bytes} bytes on this system; use --scripts DIR"
    )


def make_stand_in_base(texts: list[str], directory: Path) -> Path:
    """A checkpoint of the default size with random weights and a tokenizer trained on `texts`."""
    from ..model.checkpoint import save_checkpoint
    from ..model.gpt import GPT, preset_config
    from ..model.tokenizer import BashTokenizer

    torch.manual_seed(0)
    tokenizer = BashTokenizer.train(texts, vocab_size=8192)
    model = GPT(preset_config("nano", tokenizer.vocab_size))
    return save_checkpoint(directory, model, tokenizer, {"kind": "bench stand-in", "note": "random weights"})


def training_throughput(base: Path, texts: list[str], steps: int, batch_size: int, seq_len: int) -> dict:
    """Tokens/s of the real training loop on `base`, timing steps after the first two (warm-up)."""
    from ..model.checkpoint import load_checkpoint
    from ..model.device import autocast_dtype
    from ..training.loop import TrainConfig, Trainer

    loaded = load_checkpoint(base, device="cpu")
    config = TrainConfig(
        steps=steps, batch_size=batch_size, seq_len=seq_len, lr=3e-4, warmup_steps=1, progress=False, log_every=1
    )
    trainer = Trainer(loaded.model, loaded.tokenizer, texts, config, torch.device("cpu"))
    marks: list[tuple[int, float, float]] = []

    def mark() -> bool:
        marks.append((trainer.tokens_seen, time.perf_counter(), time.process_time()))
        return False

    trainer.train(should_stop=mark)
    mark()
    warm = min(2, len(marks) - 2)
    tokens = marks[-1][0] - marks[warm][0]
    seconds = marks[-1][1] - marks[warm][1]
    cpu_seconds = marks[-1][2] - marks[warm][2]
    dtype = autocast_dtype(torch.device("cpu"))
    return {
        "tokens_per_second": tokens / seconds,
        "tokens_per_cpu_second": tokens / cpu_seconds,
        "flops_per_token": loaded.model.flops_per_token(seq_len),
        "params": loaded.model.num_params(),
        "timed_steps": len(marks) - 1 - warm,
        "dtype": str(dtype or torch.float32).replace("torch.", ""),
    }


def _worth_showing(line: str) -> bool:
    """The trainer's lines, its per-step lines thinned to every fifth step."""
    if not line.startswith("step "):
        return True
    done = line.split()[1].split("/")[0]
    return done.isdigit() and (int(done) == 1 or int(done) % 5 == 0)


def time_to_first_checkpoint(folder: Path, base: Path | None, work: Path) -> dict:
    """Run `bashlsp-train FOLDER --once` (default options) as a user would; time it to the publish."""
    store = work / "store"
    command = [
        sys.executable,
        "-m",
        "bashlsp.training.cli",
        str(folder),
        "--once",
        "--store",
        str(store),
        "--no-progress",
    ]
    if base is not None:
        command += ["--base", str(base)]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    published_at, lines = None, []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if _worth_showing(line):
            print(f"  | {line.rstrip()}", flush=True)
        if line.startswith("published checkpoint"):
            published_at = time.perf_counter() - started
    process.wait()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "seconds_to_publish": published_at,
        "seconds_total": time.perf_counter() - started,
        # CPU time of the whole run: on a machine shared with other work, wall time stretches
        # but this does not (much); / 2 cores is what the run needs of a quiet 2-core machine.
        "cpu_seconds": cpu_seconds,
        "returncode": process.returncode,
        "command": " ".join(command),
        "output": lines,
    }


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Training throughput and time to the first personal checkpoint.")
    p.add_argument(
        "--scripts", type=Path, help="folder of scripts to train on (default: 100 scripts picked from this system)"
    )
    p.add_argument("--base", type=Path, help="checkpoint to start from (default: the bundled model, else a stand-in)")
    p.add_argument("--steps", type=int, default=8, help="training steps timed for throughput (default: %(default)s)")
    p.add_argument("--skip-first-checkpoint", action="store_true", help="only measure throughput")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    return p


def main(argv: list[str] | None = None, prog: str = "bashlsp bench train") -> int:
    args = build_parser(prog).parse_args(argv)
    from ..model.checkpoint import bundled_checkpoint
    from ..training.collect import collect_scripts
    from ..training.personal import PersonalOptions

    defaults = PersonalOptions(dirs=[])
    work = Path(tempfile.mkdtemp(prefix="bashlsp-bench-train-"))
    figures: dict = {
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg()[0],
    }
    try:
        if args.scripts is not None:
            folder = args.scripts
        else:
            print("picking 100 shell scripts from this system ...", flush=True)
            folder = work / "scripts"
            folder.mkdir()
            for i, path in enumerate(pick_system_scripts()):
                shutil.copyfile(path, folder / f"{i:03}-{path.name}")
        collection = collect_scripts([folder])
        texts = [s.text for s in collection.scripts]
        figures["folder"] = {"path": str(folder), "scripts": len(texts), "bytes": collection.num_bytes}
        print(f"folder: {len(texts)} scripts, {collection.num_bytes / 1024:.0f} KB ({folder})", flush=True)

        base = args.base or bundled_checkpoint()
        stand_in = base is None
        if stand_in:
            print(
                "no bundled model in this installation: using a stand-in of the default size (random weights)",
                flush=True,
            )
            base = make_stand_in_base(texts, work / "stand-in")
        figures["base"] = {"path": str(base), "stand_in": stand_in}

        # The matmul rates are measured just before and just after the training run and the higher
        # figure kept: on a shared machine the load changes, and the ratio should not flatter.
        bf16 = machine_matmul_gflops(torch.bfloat16)
        fp32 = machine_matmul_gflops(torch.float32)
        train = training_throughput(base, texts, args.steps, defaults.batch_size, defaults.seq_len)
        bf16 = {k: max(v, machine_matmul_gflops(torch.bfloat16)[k]) for k, v in bf16.items()}
        fp32 = {k: max(v, machine_matmul_gflops(torch.float32)[k]) for k, v in fp32.items()}
        figures["matmul_gflops"] = {"bf16": bf16, "fp32": fp32}
        print(
            f"matmul on {torch.get_num_threads()} threads: bf16 {bf16['wall']:.1f} GFLOP/s, fp32 {fp32['wall']:.1f} GFLOP/s "
            f"(per CPU-second: bf16 {bf16['cpu']:.1f}, fp32 {fp32['cpu']:.1f})",
            flush=True,
        )
        achieved = train["tokens_per_second"] * train["flops_per_token"] / 1e9
        achieved_cpu = train["tokens_per_cpu_second"] * train["flops_per_token"] / 1e9
        train.update(
            achieved_gflops=achieved,
            ratio_to_bf16_matmul=achieved / bf16["wall"],
            ratio_to_fp32_matmul=achieved / fp32["wall"],
            cpu_time_ratio_to_bf16_matmul=achieved_cpu / bf16["cpu"],
            cpu_time_ratio_to_fp32_matmul=achieved_cpu / fp32["cpu"],
        )
        figures["training"] = train
        verdict = "meets" if train["ratio_to_bf16_matmul"] >= TARGET_RATIO else "misses"
        print(
            f"training ({train['params'] / 1e6:.2f}M parameters, batch {defaults.batch_size} x {defaults.seq_len} tokens, "
            f"{train['dtype']}): {train['tokens_per_second']:,.0f} tokens/s = {achieved:.1f} GFLOP/s "
            f"({train['flops_per_token'] / 1e6:.1f} MFLOP/token)",
            flush=True,
        )
        print(
            f"  = {train['ratio_to_bf16_matmul']:.0%} of the bf16 matmul rate ({verdict} the {TARGET_RATIO:.0%} target), "
            f"{train['ratio_to_fp32_matmul']:.0%} of the fp32 rate; by CPU time (steadier on a busy machine): "
            f"{train['cpu_time_ratio_to_bf16_matmul']:.0%} of bf16, {train['cpu_time_ratio_to_fp32_matmul']:.0%} of fp32",
            flush=True,
        )

        if not args.skip_first_checkpoint:
            print("bashlsp-train FOLDER --once, timed to its first published checkpoint:", flush=True)
            first = time_to_first_checkpoint(folder, None if (not stand_in and args.base is None) else base, work)
            figures["first_checkpoint"] = {k: v for k, v in first.items() if k != "output"}
            if first["seconds_to_publish"] is None:
                print(
                    f"time to first published checkpoint: none published (exit {first['returncode']}, "
                    f"{first['seconds_total']:.1f} s)",
                    flush=True,
                )
            else:
                verdict = "meets" if first["seconds_to_publish"] <= TARGET_FIRST_CHECKPOINT_S else "misses"
                print(
                    f"time to first published checkpoint: {first['seconds_to_publish']:.1f} s "
                    f"({verdict} the {TARGET_FIRST_CHECKPOINT_S:.0f} s target); the run used {first['cpu_seconds']:.0f} CPU seconds "
                    f"(= {first['cpu_seconds'] / 2:.0f} s of 2 busy cores); load average now {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                print(f"  command: {first['command']}", flush=True)
        figures["load_average_end"] = os.getloadavg()[0]
        if args.json:
            print(json.dumps(figures, indent=2))
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
