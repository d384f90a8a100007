"""`bashlsp bench train`: how fast personal training is on this machine.

Prints three things:
 1. the machine's matrix-multiply rate in bf16 (and fp32, for context), measured now;
 2. training throughput of the default model size with the personal-training defaults, through
    the real training loop (training/loop.py), in tokens/s, and as a share of the bf16 matmul
    rate: tokens/s x the model's training FLOPs per token (forward + backward, attention
    included: GPT.flops_per_token) / matmul FLOP/s;
 3. the time from starting `bashlsp-train FOLDER --once` on a folder of 100 scripts (~500 KB)
    to its first published checkpoint, with the command's default options.

With --folders CORPUS (issue 16) it runs step 3 on five folders of different styles built from
the held-out source packages of a corpus (python -m bashlsp.training.corpus.debian; never
trained on by the default model, and none of them in the general holdout the gate measures):
a test suite, init scripts, a tool of many small scripts, a shell library and a mixed bag, and
prints one row a folder: published or not, your holdout and the general holdout before and
after, the first checkpoint's time, tokens/s beside the fp32 matmul rate measured in the run.

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
TARGET_FIRST_CHECKPOINT_S = 90.0
TARGET_USER_GAIN = -0.10  # your holdout, relative
TARGET_GENERAL_LOSS = 0.02  # the general holdout, relative (the gate's default)

# Five styles, each from the corpus's held-out packages (binary package or source package name),
# none of them a package of the general holdout (model/weights/holdout), so the forgetting check
# measures general bash and not the folder's own style. The mixed bag takes a little of each.
FOLDER_STYLES: dict[str, frozenset[str]] = {
    "test suite": frozenset({"grep", "btrfs-progs", "libnbd"}),
    "init scripts": frozenset({"initscripts", "sysv-rc", "sysvinit-utils", "orphan-sysvinit-scripts"}),
    "many small scripts": frozenset({"surfraw"}),
    "shell library": frozenset({"bats-assert", "bats-file", "bats-support", "liquidprompt"}),
    "mixed bag": frozenset(
        {"grep", "btrfs-progs", "libnbd", "initscripts", "sysvinit-utils", "orphan-sysvinit-scripts", "surfraw"}
        | {"bats-assert", "bats-file", "liquidprompt", "isc-dhcp", "isc-dhcp-client", "openresolv"}
    ),
}
FOLDER_SCRIPTS, FOLDER_BYTES, FOLDER_MAX_FILE_BYTES = 100, 520_000, 128 * 1024


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


def build_style_folders(corpus: Path, out: Path) -> dict[str, Path]:
    """The five bench folders from the corpus's holdout split: for each style up to 100 scripts
    and 520 KB (one package at a time, round-robin, so the mixed bag mixes); each
    file under PACKAGE/PATH. Scripts whose text is in the general holdout are left out."""
    from ..training.corpus.holdout import holdout_records
    from ..training.corpus.replay import _digest, load_holdout_texts
    from ..training.holdouts import GENERAL_HOLDOUT_DIR

    general = {_digest(text) for text in load_holdout_texts(GENERAL_HOLDOUT_DIR)}
    records = holdout_records(corpus)
    folders = {}
    for style, packages in FOLDER_STYLES.items():
        queues: dict[str, list[dict]] = {}
        for record in records:
            name = record["package"] if record["package"] in packages else record.get("source")
            if name in packages and record["bytes"] <= FOLDER_MAX_FILE_BYTES:
                queues.setdefault(name, []).append(record)
        for queue in queues.values():
            # Largest first, to come near 500 KB; the mixed bag in digest order (any size), so a few
            # big files do not make up the whole of it.
            queue.sort(key=lambda r: (0 if style == "mixed bag" else -r["bytes"], r["sha256"]))
        folder, count, total = out / style.replace(" ", "-"), 0, 0
        while count < FOLDER_SCRIPTS and any(queues.values()):
            for name in sorted(queues):
                if not queues[name] or count >= FOLDER_SCRIPTS:
                    continue
                record = queues[name].pop(0)
                if total + record["bytes"] > FOLDER_BYTES:
                    continue
                text = (Path(corpus) / record["file"]).read_text(encoding="utf-8")
                if _digest(text) in general:
                    continue
                target = folder / name / record["path"].lstrip("/")
                if target.exists():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                count, total = count + 1, total + record["bytes"]
        if not count:
            raise BashlspError(f"the corpus {corpus} holds none of the held-out packages of style {style!r}")
        folders[style] = folder
    return folders


def round_figures(store: Path) -> dict:
    """The last round's figures from a store's trainer history (training/personal.py writes it)."""
    from ..training.personal import HISTORY_FILE

    lines = (store / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[-1])
    gate, training = entry["gate"], entry.get("training", {})
    return {
        "published": entry["published"] is not None,
        "user_before": gate["user_bpb_before"],
        "user_after": gate["user_bpb_after"],
        "general_before": gate["general_bpb_before"],
        "general_after": gate["general_bpb_after"],
        "step": gate.get("step"),
        "steps": training.get("planned_steps", training.get("steps")),
        "tokens_per_second": training.get("tokens_per_second"),
        "summary": entry.get("summary"),
        "context": (entry.get("personalisation") or {}).get("context"),
    }


def _change(before, after) -> float | None:
    return None if before is None or after is None else (after - before) / before


def by_bytes_figures(folder: Path, base: Path | None, store: Path) -> dict:
    """Your holdout weighed by bytes (total bits / total bytes), before and after the round: the
    trainer weighs each held-out script the same; this shows what a long file does to the other
    figure, so the table hides nothing. The holdout is the trainer's: same collection, same split."""
    from ..model.checkpoint import CheckpointStore, bundled_checkpoint, load_checkpoint
    from ..training.collect import collect_scripts
    from ..training.holdouts import holdout_bpb, prepare
    from ..training.personal import PersonalOptions

    o = PersonalOptions(dirs=[folder])
    prepared = prepare(collect_scripts([folder], o.max_file_bytes), o.holdout_fraction, o.max_holdout_bytes)
    texts = [s.text for s in prepared.holdout]
    start = base or bundled_checkpoint()
    published = CheckpointStore(store).current_path()
    before = holdout_bpb(load_checkpoint(start, device="cpu"), texts) if start is not None else None
    after = holdout_bpb(load_checkpoint(published, device="cpu"), texts) if published is not None else None
    return {"user_bytes_before": before, "user_bytes_after": after, "user_bytes_change": _change(before, after)}


def run_style_folders(corpus: Path, work: Path, base: Path | None) -> list[dict]:
    """bashlsp-train --once on each style folder, as a user would; one row of figures each."""
    from ..training.collect import collect_scripts

    rows = []
    for style, folder in build_style_folders(corpus, work / "folders").items():
        collection = collect_scripts([folder])
        print(f"{style}: {len(collection.scripts)} scripts, {collection.num_bytes / 1024:.0f} KB", flush=True)
        run = work / style.replace(" ", "-")
        run.mkdir()
        load = os.getloadavg()[0]
        first = time_to_first_checkpoint(folder, base, run)
        if first["returncode"] != 0:
            tail = "\n".join(first["output"][-5:])
            raise BashlspError(f"bashlsp-train failed on the {style} folder (exit {first['returncode']}):\n{tail}")
        figures = round_figures(run / "store")
        figures.update(by_bytes_figures(folder, base, run / "store"))
        figures.update(
            style=style,
            scripts=len(collection.scripts),
            kb=collection.num_bytes / 1024,
            first_checkpoint_s=first["seconds_to_publish"],
            first_checkpoint_cpu_s=first["cpu_seconds_to_publish"],
            round_s=first["seconds_total"],
            cpu_s=first["cpu_seconds"],
            load_start=load,
            load_end=os.getloadavg()[0],
            user_change=_change(figures["user_before"], figures["user_after"]),
            general_change=_change(figures["general_before"], figures["general_after"]),
        )
        rows.append(figures)
    return rows


def context_text(context: dict | None) -> str:
    """What the project context gave a round's start model on your holdout (training/holdouts.context_gain)."""
    if not context:
        return "n/a"
    change = (context["context_bpb"] - context["plain_bpb"]) / context["plain_bpb"]
    return f"{context['plain_bpb']:.3f} -> {context['context_bpb']:.3f} ({change:+.1%})"


def style_table(rows: list[dict], fp32_gflops: float) -> str:
    def pct(x):
        return "n/a" if x is None else f"{x:+.1%}"

    def secs(x):
        return "none" if x is None else f"{x:.0f}"

    def bpb(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        "| folder | scripts | KB | published | your holdout bpb | your holdout by bytes | general holdout bpb | first checkpoint s (CPU s) | round s "
        "| CPU s | best step | tokens/s (fp32 matmul GFLOP/s) | project context, before training | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['style']} | {r['scripts']} | {r['kb']:.0f} | {'yes' if r['published'] else 'no'} "
            f"| {r['user_before']:.3f} -> {r['user_after']:.3f} ({pct(r['user_change'])}) "
            f"| {bpb(r.get('user_bytes_before'))} -> {bpb(r.get('user_bytes_after'))} ({pct(r.get('user_bytes_change'))}) "
            f"| {r['general_before']:.3f} -> {r['general_after'] if r['general_after'] is not None else float('nan'):.3f} "
            f"({pct(r['general_change'])}) | {secs(r['first_checkpoint_s'])} ({secs(r.get('first_checkpoint_cpu_s'))}) "
            f"| {r['round_s']:.0f} "
            f"| {secs(r.get('cpu_s'))} | {r['step'] if r['step'] is not None else '-'} of {r['steps']} "
            f"| {r['tokens_per_second'] or 0:,.0f} ({fp32_gflops:.0f}) | {context_text(r.get('context'))} "
            f"| {r['load_start']:.1f}-{r['load_end']:.1f} |"
        )
    published = sum(r["published"] for r in rows)
    gains = sum(r["user_change"] is not None and r["user_change"] <= TARGET_USER_GAIN for r in rows)
    kept = sum(r["general_change"] is not None and r["general_change"] <= TARGET_GENERAL_LOSS for r in rows)
    fast = sum(
        r["first_checkpoint_s"] is not None and r["first_checkpoint_s"] <= TARGET_FIRST_CHECKPOINT_S for r in rows
    )
    n = len(rows)
    lines.append(
        f"published in {published} of {n}; your holdout {TARGET_USER_GAIN:.0%} or better in {gains} of {n}; "
        f"general holdout within +{TARGET_GENERAL_LOSS:.0%} in {kept} of {n}; first checkpoint within "
        f"{TARGET_FIRST_CHECKPOINT_S:.0f} s in {fast} of {n}"
    )
    return "\n".join(lines)


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
    if not line.startswith("step ") or ": your holdout" in line:  # evaluation points are always shown
        return True
    done = line.split()[1].split("/")[0]
    return done.isdigit() and (int(done) == 1 or int(done) % 5 == 0)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


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
    published_at, published_cpu, lines = None, None, []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if _worth_showing(line):
            print(f"  | {line.rstrip()}", flush=True)
        if line.startswith("published checkpoint") and published_at is None:  # a round may publish several
            published_at = time.perf_counter() - started
            published_cpu = process_cpu_seconds(process.pid)
    process.wait()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "seconds_to_publish": published_at,
        # CPU time of the trainer up to its first publish: on a loaded machine the wall time
        # stretches, this much less; with one thread it is about what a quiet machine takes.
        "cpu_seconds_to_publish": published_cpu,
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
    p.add_argument(
        "--folders",
        type=Path,
        metavar="CORPUS",
        help="run bashlsp-train on five folders of different styles from CORPUS's held-out packages and print a table",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument(
        "--compare", action="store_true", help="train and measure each architecture and tokenizer (bench/compare.py)"
    )
    return p


def main(argv: list[str] | None = None, prog: str = "bashlsp bench train") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--compare" in argv:  # the architectures and tokenizers side by side: bench/compare.py
        from .compare import main as compare

        return compare([a for a in argv if a != "--compare"], f"{prog} --compare")
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
        if args.folders is not None:
            return _main_folders(args, work, figures)
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


def _main_folders(args, work: Path, figures: dict) -> int:
    fp32 = machine_matmul_gflops(torch.float32)
    rows = run_style_folders(args.folders, work, args.base)
    fp32 = {k: max(v, machine_matmul_gflops(torch.float32)[k]) for k, v in fp32.items()}
    figures.update(folders=rows, matmul_gflops={"fp32": fp32}, load_average_end=os.getloadavg()[0])
    print(
        f"fp32 matmul on {torch.get_num_threads()} threads, measured before and after (the higher): "
        f"{fp32['wall']:.1f} GFLOP/s; load average {figures['load_average_start']:.1f} at the start, "
        f"{figures['load_average_end']:.1f} at the end",
        flush=True,
    )
    print(style_table(rows, fp32["wall"]), flush=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
