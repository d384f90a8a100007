"""How well a comment becomes the right command: retrieval alone, the model alone, and both.

    python -m bashlsp.training.eval_commands [--holdout model/data/examples_holdout.jsonl]
        [--index model/data/examples.sqlite] [--checkpoint C] [--modes retrieval,model,both]
        [--max-pairs N] [--json]

The held-out set holds description -> command pairs of pages the index does not contain (see
training/corpus/examples.py). For each description a mode gives one answer:

- ``retrieval``: the command of the best match in the index (an example's bm25 plus its page's,
  or a program known by its page summary alone: model/examples.py `ExampleIndex.search`);
- ``model``: the script the server's "Generate script from comment" offers for a document that
  is the shebang and the comment (model/generation.py's tries: greedy, then samples, `bash -n`,
  shellcheck ranking), its first line of code as the answer;
- ``both``: the same, with the top retrieved examples as few-shot pairs ahead of the document
  (model/examples.py few_shot_block) and the script started as the server starts it
  (model/examples.py script_start: the best example's first line adapted to the comment, the model
  writing what follows; ``--free-start``: the model writes the start too).

Scores (the mean over pairs):

- **NLC2CMD score**, simplified from the NLC2CMD competition (Agarwal et al., 2021, "NLC2CMD:
  the NL to Bash command translation challenge") for one answer with confidence 1. A command is
  split at ``|``, ``;``, ``&&``, ``||`` and ``&`` into segments; a segment's utility is its first
  word that is neither a ``NAME=value`` assignment nor ``sudo``; its flags are the set of words
  starting with ``-`` (``--opt=value`` counts as ``--opt``; clustered short flags stay one flag,
  as ``-name`` must). With U, U* the utilities of answer and reference in order, T = max(|U|, |U*|):

      S = (1/T) * sum over i < T of:  (1 + S_F(i)) / 2   if U_i == U*_i
                                       -1                 otherwise (also a missing utility)
      S_F(i) = (2 |F_i & F*_i| - |F_i | F*_i|) / max(|F_i|, |F*_i|),  1 when both have no flags

  so S is in [-1, 1]: 1 for the same utilities with the same flags, -1 for all utilities wrong;
  an empty answer scores -1. Published references on NLC2CMD's data: Tellina 0.138, the
  competition's best 0.53.
- **utility right**: the share of answers whose first segment's utility is the reference's;
- **exact match**: the answer equals the reference command, whitespace aside;
- **bash -n**: the share of answers that ``bash -n`` accepts (an empty answer does not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..model.errors import BashlspError
from ..model.examples import (  # the metric lives beside the index, whose search ranks by it
    BUNDLED_INDEX,
    Example,
    ExampleIndex,
    few_shot_block,
    first_utility,
    nlc2cmd_score,
    page_name,
    script_start,
)
from ..model.shell import bash_accepts

BUNDLED_HOLDOUT = BUNDLED_INDEX.parent / "examples_holdout.jsonl"
MODES = ("retrieval", "model", "both")
FEW_SHOT = 3  # retrieved examples ahead of the document (the server's default too)
GENERATION_HEADER = "#!/bin/bash\n"
UNSEEN_MARGIN = 30  # extra results searched when the pair's own page is left out


def exact_match(predicted: str, reference: str) -> bool:
    return " ".join(predicted.split()) == " ".join(reference.split()) != ""


@dataclass
class HeldOut:
    description: str
    command: str
    source: str
    page: str


def read_holdout(path: Path, max_pairs: int | None = None) -> list[HeldOut]:
    """The held-out pairs (JSON lines with description, command, source, page); with
    `max_pairs`, an evenly spaced subset (every k-th pair), so a run is repeatable."""
    pairs = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    pairs.append(HeldOut(record["description"], record["command"], record["source"], record["page"]))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise BashlspError(f"{path}:{number}: not a held-out pair ({exc})") from exc
    except OSError as exc:
        raise BashlspError(f"cannot read held-out pairs {path}: {exc}") from exc
    if not pairs:
        raise BashlspError(f"{path} holds no held-out pairs")
    if max_pairs is not None and 0 < max_pairs < len(pairs):
        step = len(pairs) / max_pairs
        pairs = [pairs[int(i * step)] for i in range(max_pairs)]
    return pairs


def first_command(script: str | None) -> str:
    """The answer in a generated script: its first line of code (with the lines a trailing
    backslash continues), comments and blank lines skipped."""
    lines = [line for line in (script or "").split("\n") if line.strip() and not line.lstrip().startswith("#")]
    taken = []
    for line in lines:
        taken.append(line.strip())
        if not line.endswith("\\"):
            break
    return "\n".join(taken)


def generation_document(description: str, examples: Sequence[Example] = ()) -> str:
    """The document the model continues: retrieved examples (if any), then a script that is the
    shebang and the comment, as an editor user writes it."""
    return few_shot_block(examples) + GENERATION_HEADER + f"# {' '.join(description.split())}\n"


def score_answers(pairs: Sequence[HeldOut], answers: Sequence[str]) -> dict:
    scores = [nlc2cmd_score(a, p.command) for a, p in zip(answers, pairs)]
    utility = sum(first_utility(a) == first_utility(p.command) != "" for a, p in zip(answers, pairs))
    exact = sum(exact_match(a, p.command) for a, p in zip(answers, pairs))
    parsed = sum(bool(a.strip()) and bash_accepts(a + "\n") for a in answers)
    total = len(pairs)
    return {
        "nlc2cmd": sum(scores) / total,
        "utility_right": utility / total,
        "exact_match": exact / total,
        "bash_n": parsed / total,
        "answered": sum(bool(a.strip()) for a in answers) / total,
        "total": total,
    }


def evaluate_mode(
    mode: str,
    pairs: Sequence[HeldOut],
    index: ExampleIndex | None,
    generate: Callable[[str, str], str | None] | None,
    few_shot: int = FEW_SHOT,
    unseen_pages: bool = False,
    free_start: bool = False,
) -> dict:
    """Scores of one mode; `generate(document, start) -> script or None` runs the server's tries.
    `unseen_pages`: leave out retrieved examples of the pair's own page name in any source, as
    for a command the index knows nothing about. `free_start`: no `script_start` in mode both."""
    answers, seconds, examples = [], [], []
    for pair in pairs:
        start = time.perf_counter()
        retrieved = []
        if index is not None and mode != "model":
            if unseen_pages:
                name = page_name(pair.page)
                found = index.search(pair.description, few_shot + UNSEEN_MARGIN)
                retrieved = [e for e in found if page_name(e.page) != name][:few_shot]
            else:
                retrieved = index.search(pair.description, few_shot)
        if mode == "retrieval":
            answer = retrieved[0].command if retrieved else ""
        else:
            if generate is None:
                raise BashlspError(f"mode {mode} needs a model")
            opening = "" if free_start else script_start(retrieved, pair.description)
            answer = first_command(generate(generation_document(pair.description, retrieved), opening))
        seconds.append(time.perf_counter() - start)
        answers.append(answer)
        if len(examples) < 5:
            examples.append({"description": pair.description, "reference": pair.command, "answer": answer})
    result = score_answers(pairs, answers)
    seconds.sort()
    result["p50_ms"] = 1000 * seconds[len(seconds) // 2]
    result["p95_ms"] = 1000 * seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]
    result["examples"] = examples
    return result


def server_generator(loaded, seed: int = 0) -> Callable[[str, str], str | None]:
    """`generate(document, start) -> script or None` through the server's path: the engine in generate
    mode (its stop rules) and model/generation.py's tries, `bash -n` and, when shellcheck is
    installed, its ranking."""
    from ..model.engine import Engine
    from ..model.generation import generate_with_engine
    from ..model.shell_check import ShellTools

    tools = ShellTools()
    engine = Engine(loaded.on_numpy() if str(loaded.device) == "cpu" else loaded, seed=seed)

    def generate(document: str, start: str = "") -> str | None:
        return generate_with_engine(engine, tools, document, "bashlsp-eval-commands", start=start).script

    return generate


def evaluate_commands(
    loaded,
    holdout: Path = BUNDLED_HOLDOUT,
    index_path: Path = BUNDLED_INDEX,
    modes: Sequence[str] = MODES,
    max_pairs: int | None = None,
    few_shot: int = FEW_SHOT,
    unseen_pages: bool = False,
    seed: int = 0,
    free_start: bool = False,
) -> dict:
    """Scores of `modes` on the held-out pairs; `loaded` (a checkpoint) serves the model modes.
    `bashlsp eval --commands N` and this module's command line both call it."""
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise BashlspError(f"modes are a subset of {', '.join(MODES)} (got {', '.join(modes) or 'none'})")
    pairs = read_holdout(holdout, max_pairs)
    index = ExampleIndex(index_path) if set(modes) & {"retrieval", "both"} else None
    generate = server_generator(loaded, seed) if set(modes) & {"model", "both"} else None
    result = {
        "holdout": str(holdout),
        "pairs": len(pairs),
        "few_shot": few_shot,
        "unseen_pages": unseen_pages,
        "free_start": free_start,
    }
    if index is not None:
        result["index"] = {"path": str(index_path), "entries": index.entries}
    result["modes"] = {
        mode: evaluate_mode(mode, pairs, index, generate, few_shot, unseen_pages, free_start) for mode in modes
    }
    return result


def run(args) -> dict:
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    loaded = None
    if set(modes) & {"model", "both"}:
        from ..model.checkpoint import load_checkpoint, resolve_checkpoint

        loaded = load_checkpoint(resolve_checkpoint(args.checkpoint))
    return evaluate_commands(
        loaded,
        args.holdout,
        args.index,
        modes,
        args.max_pairs,
        args.few_shot,
        args.unseen_pages,
        args.seed,
        args.free_start,
    )


def format_report(result: dict) -> str:
    lines = [f"held-out pairs: {result['pairs']} from {result['holdout']}"]
    if result["unseen_pages"]:
        lines.append("unseen pages: no example of a pair's own page is retrieved")
    if "index" in result:
        lines.append(f"index: {result['index']['entries']} entries ({result['index']['path']})")
    lines.append(f"{'mode':<10} {'NLC2CMD':>8} {'utility':>8} {'exact':>7} {'bash -n':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for mode, scores in result["modes"].items():
        lines.append(
            f"{mode:<10} {scores['nlc2cmd']:>8.3f} {100 * scores['utility_right']:>7.1f}%"
            f" {100 * scores['exact_match']:>6.1f}% {100 * scores['bash_n']:>7.1f}%"
            f" {scores['p50_ms']:>8.1f} {scores['p95_ms']:>8.1f}"
        )
    return "\n".join(lines)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout", type=Path, default=BUNDLED_HOLDOUT, help="held-out pairs (JSON lines)")
    parser.add_argument("--index", type=Path, default=BUNDLED_INDEX, help="command-example index")
    parser.add_argument("--checkpoint", help="checkpoint for the model modes (default: as bashlsp serve)")
    parser.add_argument("--modes", default="retrieval,model,both", help="comma-separated: retrieval, model, both")
    parser.add_argument("--max-pairs", type=int, default=None, help="an evenly spaced subset of the pairs")
    parser.add_argument("--few-shot", type=int, default=FEW_SHOT, help="retrieved examples ahead of the document")
    parser.add_argument(
        "--unseen-pages", action="store_true", help="retrieve nothing from a pair's own page (unknown commands)"
    )
    parser.add_argument(
        "--free-start", action="store_true", help="mode both: the model writes the script's first utility too"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m bashlsp.training.eval_commands") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        result = run(args)
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
