"""`bashlsp bench examples`: Generate script from comment with retrieved examples, end to end.

    bashlsp bench examples [--checkpoint C] [--holdout FILE] [--pairs N] [--json OUT]

One `bashlsp serve --stdio` process, as an editor drives it: for each held-out description
(model/data/examples_holdout.jsonl, pairs the shipped index does not hold) a document
``#!/bin/bash`` + ``# description`` is opened, then

1. ``textDocument/codeAction`` on the comment: "Generate script from comment" and the
   "Insert example: ..." actions (the shipped, personal and workspace indexes searched);
2. ``workspace/executeCommand bashlsp.generateFromComment`` (apply false): the script, with the
   retrieved examples ahead of the document in the prompt.

Printed: p50/p95 of each request and of both together (the action end to end), the share of
offered scripts `bash -n` accepts, and the NLC2CMD score and exact match (the metric of
training/eval_commands.py) of the script's first command and of the first example action
against the held-out command. Latency is measured in the client, request written to answer read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ..model.errors import BashlspError
from ..model.examples import BUNDLED_INDEX
from .serve import LspClient, percentiles

DEFAULT_HOLDOUT = BUNDLED_INDEX.parent / "examples_holdout.jsonl"


def read_pairs(path: Path, count: int) -> list[dict]:
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise BashlspError(f"cannot read held-out pairs {path}: {exc}") from exc
    if not records:
        raise BashlspError(f"{path} holds no pairs")
    step = max(1, len(records) // max(1, count))
    return records[::step][:count]


async def run_bench(args: argparse.Namespace) -> dict:
    from ..model.shell_check import ShellTools
    from ..training.eval_commands import exact_match, first_command, nlc2cmd_score

    pairs = read_pairs(Path(args.holdout), args.pairs)
    work = Path(tempfile.mkdtemp(prefix="bashlsp-bench-examples-"))
    command = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio", "--store", str(work / "store")]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    client = LspClient()
    await client.start(command, dict(os.environ))
    await client.request("initialize", {"processId": os.getpid(), "capabilities": {"textDocument": {"codeAction": {}}}})
    client.notify("initialized", {})
    tools = ShellTools()
    actions_s, generate_s, total_s = [], [], []
    offered = passed = 0
    script_scores, example_scores, script_exact, example_exact = [], [], 0, 0
    for n, pair in enumerate(pairs):
        uri = f"file:///bench/examples-{n}.sh"
        text = f"#!/bin/bash\n# {pair['description']}\n"
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "shellscript", "version": 1, "text": text}},
        )
        target = {"uri": uri, "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}}}
        answer, seconds = await client.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": target["range"], "context": {"diagnostics": []}},
        )
        actions = answer.get("result") or []
        actions_s.append(seconds)
        answer, seconds = await client.request(
            "workspace/executeCommand",
            {"command": "bashlsp.generateFromComment", "arguments": [{**target, "apply": False}]},
        )
        generate_s.append(seconds)
        total_s.append(actions_s[-1] + seconds)
        script = (answer.get("result") or {}).get("script")
        if script:
            offered += 1
            passed += tools.check_syntax(script).ok is not False
        answer_command = first_command(script)
        script_scores.append(nlc2cmd_score(answer_command, pair["command"]))
        script_exact += exact_match(answer_command, pair["command"])
        examples = [a for a in actions if str(a.get("title", "")).startswith("Insert example: ")]
        top = ""
        if examples:
            edit = examples[0]["edit"]  # this client does not announce documentChanges: a plain changes map
            new_text = edit["changes"][uri][0]["newText"]
            top = "\n".join(line for line in new_text.split("\n")[1:] if line.strip())  # below its '# source: ...'
        example_scores.append(nlc2cmd_score(top, pair["command"]))
        example_exact += exact_match(top, pair["command"])
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    code = await client.close()
    total = len(pairs)
    return {
        "pairs": total,
        "server_exit": code,
        "code_action_ms": {k: v * 1000 if k != "n" else v for k, v in percentiles(actions_s).items()},
        "generate_ms": {k: v * 1000 if k != "n" else v for k, v in percentiles(generate_s).items()},
        "action_end_to_end_ms": {k: v * 1000 if k != "n" else v for k, v in percentiles(total_s).items()},
        "offered": offered / total,
        "offered_pass_bash_n": passed / offered if offered else float("nan"),
        "script_nlc2cmd": sum(script_scores) / total,
        "script_exact": script_exact / total,
        "first_example_nlc2cmd": sum(example_scores) / total,
        "first_example_exact": example_exact / total,
    }


def print_report(report: dict) -> None:
    print(f"held-out pairs: {report['pairs']}")
    for key in ("code_action_ms", "generate_ms", "action_end_to_end_ms"):
        p = report[key]
        print(f"{key:<22} p50 {p['p50']:7.1f}  p95 {p['p95']:7.1f}  max {p['max']:7.1f}  (n={p['n']})")
    print(
        f"script offered {100 * report['offered']:.1f}%, of which bash -n accepts {100 * report['offered_pass_bash_n']:.1f}%"
    )
    print(f"script's first command: NLC2CMD {report['script_nlc2cmd']:.3f}, exact {100 * report['script_exact']:.1f}%")
    print(
        f"first Insert example:   NLC2CMD {report['first_example_nlc2cmd']:.3f}, exact {100 * report['first_example_exact']:.1f}%"
    )


def main(argv: list[str] | None = None, prog: str = "bashlsp bench examples") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint to serve (default: as bashlsp serve)")
    parser.add_argument("--holdout", default=str(DEFAULT_HOLDOUT), help="held-out pairs (JSON lines)")
    parser.add_argument("--pairs", type=int, default=40, help="descriptions to ask for (evenly spaced)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        report = asyncio.run(run_bench(args))
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    report["wall_s"] = time.perf_counter() - started
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0
