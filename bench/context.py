"""Project context, measured (issue 14): completions with and without the workspace, and the
workspace index itself.

    bashlsp bench context repo DIR [DIR ...] [--checkpoint default] [--line-confidence 0.5 ...]
    bashlsp bench context index DIR

`repo`: every DIR is one project (a held-out source package): each of its shell scripts in turn
is the document, and the project's other scripts are the workspace (the document's own file is
left out of the index, as the server leaves it out). Next-line exact match and edit similarity
at line starts (the first line of the ghost text, as an editor shows it) and keystroke savings of
simulated typing (training/evaluate's tasks), through the server's engine with the server's
choice of chunks (server/context.py), each with the workspace and without. `--line-confidence`
runs the line rule at line starts with each value (0: off); `--copy-min` the copy rule
(server/completion.COPY_MIN) with each value ("off": the model alone); `--judge` the model as
judge of weaker copies (server/completion.JUDGE_LOGPROB; "off": none); `--min-token-prob` where
ghost text begun mid-line ends (stops.MIN_TOKEN_PROB). Figures: docs/benchmarks.md.

`index`: build the index of DIR as the server does (a child process at nice 19) and print its
size, time, memory and the time of a query.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from ..model.checkpoint import load_checkpoint, resolve_checkpoint
from ..model.context import words
from ..model.engine import CompletionQuery, Engine
from ..model.engine.stops import LINE_CONFIDENCE, LINE_GUESSES, LINE_ROWS, MIN_TOKEN_PROB
from ..model.shell_check import ShellTools
from ..server.completion import (
    COPY_MIN,
    JUDGE_LOGPROB,
    JUDGE_TOKENS,
    at_line_start,
    copy_instead,
    ghost_text,
    judge_accepts,
    judged,
    judged_text,
)
from ..server.context import ProjectContext
from ..server.lookup import copy_suggestion
from ..server.workspace import WorkspaceIndex, build_index
from ..training.evaluate.metrics import edit_similarity, exact_match
from ..training.evaluate.tasks import sample_line_positions, simulate_typing, typed_span


def _project_files(root: str, max_files: int, distinct: bool = False) -> tuple[list[str], object]:
    """The documents (the first `max_files` scripts; `distinct`: only scripts the project holds
    no identical copy of) and the project's index."""
    snapshot = build_index([root])
    copies = Counter(snapshot.texts)
    files = sorted(f for f, text in zip(snapshot.files, snapshot.texts) if not distinct or copies[text] == 1)
    return files[:max_files], snapshot


def _completer(
    engine: Engine,
    picker: ProjectContext | None,
    uri: str,
    prefilled: list[int],
    decoded: list[int],
    shell: ShellTools,
    copy_min: float | None,
    copied: list[int],
    judge: float | None = JUDGE_LOGPROB,
):
    """The server's ghost text after `prefix` (with the server's chunks when `picker` is given),
    as the editor gets it (server/completion.inline_completion: a copy instead of the model's
    line at a line start when it scores at least `copy_min` (None: no copies), or from JUDGE_MIN
    when the model as judge gives it a mean log-probability of at least `judge` (None: no judge),
    and anywhere when the model offers nothing; ghost_text's bash -n on several lines); appends
    the tokens each model request pre-filled and its decode steps to the lists, and to `copied`
    for each answer that is a copy (1, or 2 for a copy the judge accepted)."""

    def complete(prefix: str, following: str | None = None) -> str:
        def lookup():
            return picker.copy(uri, prefix, "") if picker is not None else copy_suggestion(prefix, "")

        line_start = copy_min is not None and at_line_start(prefix)
        copy = lookup() if line_start else None
        if copy_instead(copy, copy_min):
            copied.append(1)
            return copy.text
        context = picker.for_cursor(uri, prefix) if picker is not None else ()
        query = CompletionQuery(uri=uri, prefix=prefix, suffix="", mode="inline", max_tokens=48, context=context)
        if judge is not None and judged(copy, copy_min):
            if judge_accepts(engine.score(query, [judged_text(copy, "")], max_tokens=JUDGE_TOKENS)[0], judge):
                copied.append(2)
                return copy.text
        completion = engine.complete(query)
        prefilled.append(completion.stats.prefilled)
        decoded.append(completion.stats.decoded)
        text = completion.suggestions[0].text if completion.suggestions else ""
        text = (ghost_text(shell, prefix, text, "") or "") if text else ""
        if not text and copy_min is not None:
            copy = copy if line_start else lookup()
            if copy is not None:
                copied.append(1)
                return copy.text
        return text

    return complete


def evaluate_project(
    engine: Engine, root: str, args, with_context: bool, copy_min: float | None, judge: float | None
) -> dict:
    files, snapshot = _project_files(root, args.max_files, args.distinct)
    totals = {"lines": 0, "exact": 0, "similarity": 0.0, "keystrokes": 0, "characters": 0, "files": len(files)}
    typing: list[int] = []  # tokens pre-filled per request while typing (keystroke savings): the cache at work
    line_decoded: list[int] = []  # decode steps per request at a line start (next line): the line rule's cost
    with_chunks = 0
    line_copies: list[int] = []  # line starts answered with a copy
    typing_copies: list[int] = []
    shell = ShellTools()
    for path in files:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        picker = None
        if with_context:
            picker = ProjectContext(lambda *a: None)
            picker.index.snapshot, picker.index.roots = snapshot, [root]
        # A cache per configuration (the fragment); the document's origin is still its file.
        uri = Path(path).as_uri() + ("#with" if with_context else "#without")
        complete = _completer(engine, picker, uri, [], line_decoded, shell, copy_min, line_copies, judge)
        for offset, truth in sample_line_positions(text, args.lines_per_file, f"0:{path}"):
            prediction = complete(text[:offset]).split("\n", 1)[0]
            totals["lines"] += 1
            totals["exact"] += exact_match(prediction, truth)
            totals["similarity"] += edit_similarity(prediction.strip(), truth.strip())
            if picker is not None and picker.for_cursor(uri, text[:offset]):
                with_chunks += 1
        span = typed_span(text, args.ksr_chars)
        if span:
            typer = _completer(engine, picker, uri, typing, [], shell, copy_min, typing_copies, judge)
            pressed, typed = simulate_typing(span, typer)
            totals["keystrokes"] += pressed
            totals["characters"] += typed
    totals["lines_with_chunks"] = with_chunks
    totals["line_copies"], totals["typing_copies"] = len(line_copies), len(typing_copies)
    totals["line_judged"] = line_copies.count(2)
    totals["typing_prefilled"], totals["line_decoded"] = typing, line_decoded
    return totals


def _mean_and_median(values: list[int]) -> tuple[float, int]:
    if not values:
        return float("nan"), 0
    return sum(values) / len(values), sorted(values)[len(values) // 2]


def _summary(totals: list[dict]) -> dict:
    lines = sum(t["lines"] for t in totals)
    characters = sum(t["characters"] for t in totals)
    return {
        "files": sum(t["files"] for t in totals),
        "lines": lines,
        "exact_match": sum(t["exact"] for t in totals) / lines if lines else float("nan"),
        "edit_similarity": sum(t["similarity"] for t in totals) / lines if lines else float("nan"),
        "ksr": 1 - sum(t["keystrokes"] for t in totals) / characters if characters else float("nan"),
        "characters": characters,
        "lines_with_chunks": sum(t.get("lines_with_chunks", 0) for t in totals),
        "line_copies": sum(t["line_copies"] for t in totals),
        "line_judged": sum(t["line_judged"] for t in totals),
        "typing_copies": sum(t["typing_copies"] for t in totals),
        "typing_requests": sum(t["typing_copies"] + len(t["typing_prefilled"]) for t in totals),
        "prefilled_per_keystroke": _mean_and_median([n for t in totals for n in t["typing_prefilled"]]),
        "decoded_per_line_start": _mean_and_median([n for t in totals for n in t["line_decoded"]]),
    }


def run_repo(args) -> dict:
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint), backend="numpy")
    roots = [os.path.realpath(d) for d in args.dirs]
    results = {"checkpoint": loaded.id, "projects": roots, "runs": []}
    for confidence, copy_min, judge in [
        (c, m, j) for c in args.line_confidence for m in args.copy_min for j in args.judge
    ]:
        engine = Engine(
            loaded,
            min_token_prob=args.min_token_prob,
            line_confidence=confidence,
            line_guesses=args.line_guesses,
            line_rows=args.line_rows,
        )
        for with_context in [mode == "with" for mode in args.workspace]:
            started = time.perf_counter()
            totals = [evaluate_project(engine, root, args, with_context, copy_min, judge) for root in roots]
            summary = _summary(totals) | {
                "line_confidence": confidence,
                "min_token_prob": args.min_token_prob,
                "copy_min": copy_min,
                "judge": judge,
                "workspace": with_context,
                "seconds": round(time.perf_counter() - started, 1),
            }
            results["runs"].append(summary)
            copies = "off" if copy_min is None else f"{copy_min:g}"
            judging = "off" if judge is None else f"{judge:g}"
            print(
                f"line confidence {confidence:g}, copies {copies}, judge {judging}, "
                f"{'with' if with_context else 'without'} workspace: "
                f"{summary['files']} files, next line EM {100 * summary['exact_match']:.1f}% "
                f"ES {100 * summary['edit_similarity']:.1f} over {summary['lines']} lines "
                f"({summary['lines_with_chunks']} with chunks), keystroke savings {100 * summary['ksr']:.1f}% "
                f"over {summary['characters']} characters; copies at {summary['line_copies']} line starts "
                f"({summary['line_judged']} judged) and "
                f"{summary['typing_copies']} of {summary['typing_requests']} typing requests; "
                f"tokens pre-filled per typing model request: mean "
                f"{summary['prefilled_per_keystroke'][0]:.1f}, median {summary['prefilled_per_keystroke'][1]}; decode steps "
                f"per line-start request: mean {summary['decoded_per_line_start'][0]:.1f} ({summary['seconds']} s)",
                flush=True,
            )
    return results


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_index(args) -> dict:
    logs: list[str] = []
    index = WorkspaceIndex(lambda level, message, show: logs.append(message))
    before = _rss_mb()
    started = time.perf_counter()
    index.start([os.path.realpath(args.dirs[0])]).result()
    wall = time.perf_counter() - started
    snapshot = index.snapshot
    sample = Path(snapshot.files[len(snapshot.files) // 2]).read_text(errors="replace") if snapshot.files else ""
    query = words(sample[:600])
    started = time.perf_counter()
    for _ in range(50):
        snapshot.scores(query, 8)
    query_ms = 1000 * (time.perf_counter() - started) / 50
    index.close()
    print(logs[0] if logs else "no index")
    figures = {
        "wall_s": round(wall, 2),
        "index_mb": round(snapshot.nbytes() / 1e6, 1),
        "rss_growth_mb": round(_rss_mb() - before, 1),
        "query_ms": round(query_ms, 2),
        **snapshot.summary,
    }
    print(
        f"built in {figures['wall_s']} s from the request (the child's walk: {snapshot.summary.get('seconds')} s); "
        f"the index holds {figures['index_mb']} MB, the server's memory grew {figures['rss_growth_mb']} MB; "
        f"a query (top 8 of {snapshot.num_chunks} chunks): {figures['query_ms']} ms"
    )
    return figures


def main(argv: list[str] | None = None, prog: str = "bashlsp bench context") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("repo", "index"))
    parser.add_argument("dirs", nargs="+", help="project folders (repo: one per project; index: one)")
    parser.add_argument("--checkpoint", default="default", help="checkpoint (default: the bundled model)")
    parser.add_argument("--line-confidence", type=float, nargs="+", default=[LINE_CONFIDENCE])
    parser.add_argument(
        "--copy-min",
        type=lambda v: None if v == "off" else float(v),
        nargs="+",
        default=[COPY_MIN],
        help="a copy's score from which ghost text is the copy (server/lookup.py); off: no copies",
    )
    parser.add_argument(
        "--judge",
        type=lambda v: None if v == "off" else float(v),
        nargs="+",
        default=[JUDGE_LOGPROB],
        help="the model as judge of weaker copies: the mean log-probability it must give one "
        "(server/completion.JUDGE_LOGPROB, off by default); off: no judge",
    )
    parser.add_argument(
        "--min-token-prob",
        type=float,
        default=MIN_TOKEN_PROB,
        help="suggestions away from a line start end before a less likely token (stops.MIN_TOKEN_PROB)",
    )
    parser.add_argument("--line-guesses", type=int, default=LINE_GUESSES, help="the line rule's guess bound")
    parser.add_argument(
        "--line-rows", type=int, default=LINE_ROWS, help="rows decoded for ghost text at a line start (1: greedy)"
    )
    parser.add_argument("--lines-per-file", type=int, default=20, help="line starts per file for next-line figures")
    parser.add_argument("--ksr-chars", type=int, default=200, help="characters typed per file for keystroke savings")
    parser.add_argument("--max-files", type=int, default=8, help="scripts per project")
    parser.add_argument(
        "--workspace", nargs="+", choices=("without", "with"), default=["without", "with"], help="runs to make"
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="documents only among scripts with no identical copy in their project (a copy is the answer key)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    for directory in args.dirs:
        if not Path(directory).is_dir():
            parser.error(f"{directory} is not a folder")
    sys.stdout.reconfigure(line_buffering=True)
    figures = run_repo(args) if args.what == "repo" else run_index(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
