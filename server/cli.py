"""The `bashlsp` command: serve, generate, models, eval, bench.

Heavy imports (torch, pygls) happen inside the handlers so `bashlsp --version`
and `--help` answer at once. `generate` and `models` are handled here; `serve`
(`bashlsp.server.app`), `eval` (`bashlsp.training.evaluate`) and `bench serve|train|stress`
(`bashlsp.bench.*`) are dispatched before argparse runs: each of those modules has
`main(argv, prog) -> int` and parses its own options, so only the module a command
needs is ever imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from ..model.device import torch_installed, torch_missing
from ..model.errors import BashlspError

# name -> (module whose main(argv, prog) runs the command, help)
_DELEGATED = {
    "serve": ("bashlsp.server.app", "run the language server (what editors start)"),
    "eval": ("bashlsp.training.evaluate", "measure a checkpoint on a folder of scripts"),
}
_BENCHMARKS = {
    "serve": ("bashlsp.bench.serve", "drive the real server like an editor; print latency, tokens/s, memory"),
    "train": ("bashlsp.bench.train", "training throughput and time to first personal checkpoint"),
    "stress": ("bashlsp.bench.stress", "load and soak test of the server on loopback"),
    "soak": ("bashlsp.bench.soak", "ten minutes of typing through 50 documents: answers, memory, state freed"),
    "examples": ("bashlsp.bench.examples", "Generate script from comment with retrieved examples, end to end"),
    "context": ("bashlsp.bench.context", "completions with and without the workspace; the workspace index"),
}


def package_version() -> str:
    try:
        return version("bashlsp")
    except PackageNotFoundError:
        return "0+unknown"


def _delegated_target(argv: list[str]) -> tuple[str, list[str], str] | None:
    """(module, remaining argv, prog) when argv names a command another module owns."""
    if argv and argv[0] in _DELEGATED:
        return _DELEGATED[argv[0]][0], argv[1:], f"bashlsp {argv[0]}"
    if len(argv) >= 2 and argv[0] == "bench" and argv[1] in _BENCHMARKS:
        return _BENCHMARKS[argv[1]][0], argv[2:], f"bashlsp bench {argv[1]}"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bashlsp", description="A local, private AI assistant for shell scripts.")
    parser.add_argument("--version", action="version", version=f"bashlsp {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, (_, help_text) in _DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)  # listed here, parsed by its module

    gen = sub.add_parser(
        "generate", help="sample text from a checkpoint", description="Sample continuations of PROMPT."
    )
    gen.add_argument("prompt", nargs="?", help="text to continue (use '-' to read standard input)")
    gen.add_argument(
        "--from-comment",
        metavar="TEXT",
        help="write a script for this comment as the editor's action does (retrieved examples ahead of it, "
        "bash -n checked) and list the best retrieved commands",
    )
    gen.add_argument(
        "--checkpoint",
        help="checkpoint directory, store id, or 'default' (default: the store's current, else the bundled model)",
    )
    gen.add_argument("--store", help="checkpoint store directory (default: $BASHLSP_STORE or the platform data dir)")
    gen.add_argument("--max-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--num-samples", type=int, default=1)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    gen.set_defaults(handler=_run_generate)

    models = sub.add_parser("models", help="list, use or roll back checkpoints in the store")
    models.add_argument("--store", help="checkpoint store directory")
    # --store is accepted before or after the action; SUPPRESS keeps an absent one from
    # overwriting a value given before the action.
    store_option = argparse.ArgumentParser(add_help=False)
    store_option.add_argument("--store", default=argparse.SUPPRESS, help="checkpoint store directory")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    models_sub.add_parser(
        "list", parents=[store_option], help="list checkpoints (* marks the current one)"
    ).set_defaults(handler=_run_models_list)
    use = models_sub.add_parser("use", parents=[store_option], help="make checkpoint ID current")
    use.add_argument("id")
    use.set_defaults(handler=_run_models_use)
    models_sub.add_parser(
        "rollback", parents=[store_option], help="make the previous checkpoint current again"
    ).set_defaults(handler=_run_models_rollback)

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    for name, (_, help_text) in _BENCHMARKS.items():
        bench_sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _store(args):
    from ..model.checkpoint import CheckpointStore

    return CheckpointStore(args.store) if getattr(args, "store", None) else CheckpointStore()


def _run_generate(args) -> int:
    if args.from_comment is not None:  # the server's engine: numpy, no torch needed
        return _run_from_comment(args)
    from ..model.checkpoint import load_checkpoint, resolve_checkpoint
    from ..model.device import resolve_device

    if not torch_installed():
        raise torch_missing("bashlsp generate", "train")
    from ..model.engine import CompletionQuery, Engine

    if args.prompt is None:
        raise BashlspError("bashlsp generate needs a PROMPT or --from-comment TEXT")
    if args.max_tokens < 1 or args.num_samples < 1:
        raise BashlspError("--max-tokens and --num-samples must be at least 1")
    if not 0 < args.top_p <= 1 or args.temperature < 0:
        raise BashlspError("--top-p must be in (0, 1] and --temperature at least 0")
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint, _store(args)), device=resolve_device(args.device))
    # The server's decoder in its free-text mode: no stop rule but <|eof|> and the token budget.
    engine = Engine(loaded, min_token_prob=0.0, seed=args.seed)
    query = CompletionQuery(
        uri="bashlsp-generate",
        prefix=prompt,
        suffix="",
        mode="text",
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        num_samples=args.num_samples,
    )
    samples = engine.complete(query).suggestions  # distinct texts, likeliest first
    for i, sample in enumerate(samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ({sample.tokens} tokens, mean log-probability {sample.score:.2f}) ---")
        print(prompt + sample.text)
    if not samples:
        print(prompt)
    return 0


def _run_from_comment(args) -> int:
    """The comment's script (stdout) and the retrieved examples (as comments after it)."""
    from ..model.checkpoint import load_checkpoint, resolve_checkpoint
    from .retrieval import example_title, script_for_comment

    if not args.from_comment.strip():
        raise BashlspError("--from-comment needs a comment with words in it")
    store = _store(args)
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint, store), backend="numpy")
    generated, examples = script_for_comment(args.from_comment, loaded, store.root, seed=args.seed or 0)
    print(f"#!/bin/bash\n# {' '.join(args.from_comment.split())[:200]}")
    print(generated.script.rstrip("\n") if generated.script else f"# bashlsp: {generated.problem}")
    for example in examples:
        print(f"# {example_title(example)}")
    return 0 if generated.script or examples else 1


def _run_models_list(args) -> int:
    from ..model.checkpoint import bundled_checkpoint, serving_backend
    from ..model.device import serving_device

    store = _store(args)
    infos = store.list()
    print(f"store: {store.root}")
    backend, device = serving_device("auto")  # as `bashlsp serve` chooses with the default settings
    if not infos:
        bundled = bundled_checkpoint()
        print(
            "  (no checkpoints yet; serving "
            + ("the bundled default model)" if bundled else "nothing: no bundled model)")
        )
    for info in infos:
        metrics = info.meta.get("metrics", {})
        summary = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())[:4]
        )
        marker = "*" if info.current else " "
        served = f"{info.arch}, served on {serving_backend(info.arch, backend)} ({device})"
        print(f"{marker} {info.id}  {info.meta.get('created', '?')}  {served}  {info.meta.get('error', summary)}")
    return 0


def _run_models_use(args) -> int:
    store = _store(args)
    store.use(args.id)
    print(f"current checkpoint: {args.id}")
    return 0


def _run_models_rollback(args) -> int:
    restored = _store(args).rollback()
    print(f"rolled back; current checkpoint: {restored}")
    return 0


def _run_delegated(module_name: str, argv: list[str], prog: str) -> int:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == "torch":
            raise torch_missing(prog, "train") from exc
        raise BashlspError(f"{prog} is unavailable: {module_name} cannot be imported ({exc})") from exc
    return int(module.main(argv, prog=prog) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        target = _delegated_target(argv)
        if target is not None:
            return _run_delegated(*target)
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except BashlspError as exc:
        print(f"bashlsp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
