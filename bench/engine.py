"""The engine's micro-benchmarks: decode and pre-fill speed of the served forward pass, plain
`GPT.forward` beside it, and the latency of typing a script one character at a time.

    python -m bashlsp.bench.engine --checkpoint default [--backend torch] [--scripts DIR]

Figures: docs/benchmarks.md. Without --checkpoint it measures a randomly initialised nano model
(speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..model.checkpoint import LoadedModel
from ..model.config import ARCHS
from ..model.engine import CompletionQuery, Engine
from ..model.engine.core import PREFILL_CHUNK
from ..model.engine.decode import Row
from ..model.engine.prompt import SUFFIX_SHARE, common_prefix_length
from ..model.tokenizer import BashTokenizer


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def decode_tokens_per_second(engine: Engine, tokens: int = 128, context: int = 256, samples: int = 1) -> dict:
    """Decode speed of the engine's own step (pick + forward), greedy, after `context` tokens
    of cached context. Returns tokens, context, seconds, cpu_seconds, tokens_per_second, ms_per_token."""
    context = min(context, engine.context // 2)
    tokens = max(1, min(tokens, engine.context - context - 1))
    rows = [Row(pending=b"") for _ in range(samples)]
    greedy = CompletionQuery(uri="", prefix="", suffix="", mode="generate")
    with engine.exclusive() as forward:
        cache = forward.new_cache(samples, context + tokens + 1)
        prompt = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (samples, context))
        logits = forward.step(prompt, cache)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(tokens):
            next_ids, logprobs = engine.decoder.pick(logits, rows, greedy)
            next_ids.tolist(), logprobs.tolist()
            logits = forward.step(next_ids[:, None], cache)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "tokens": tokens,
        "context": context,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # differs from seconds when other processes take the cores
        "tokens_per_second": tokens * samples / seconds,
        "ms_per_token": 1000 * seconds / tokens,
    }


def naive_vs_engine_decode(engine: Engine, tokens: int = 64, context: int = 256, rounds: int = 5) -> dict:
    """Decode speed of plain `GPT.forward` (torch, a fresh copy of the served weights) against
    the engine's step, in alternating rounds so that both see the same machine load. Returns
    the median ms/token of each."""
    import torch

    from ..model.architectures import build_model

    served = engine.loaded.model
    naive = build_model(served.config, init_weights=False).eval()
    # the same weights under their checkpoint names (NumpyGPT gives them back in GPT's layout)
    state = {name: torch.as_tensor(w).contiguous() for name, w in served.state_dict().items()}
    naive.load_state_dict(state)
    naive.to(engine.device if engine.loaded.backend == "torch" else "cpu")
    times: dict[str, list[float]] = {"naive": [], "engine": []}
    context = min(context, engine.context - tokens - 1)
    prompt = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (1, context))
    with engine.exclusive() as served_forward, torch.inference_mode():
        for _ in range(rounds):
            for name in times:
                forward = naive if name == "naive" else served_forward
                cache = forward.new_cache(1, context + tokens + 1)
                logits = forward.step(prompt, cache)
                start = time.perf_counter()
                for _ in range(tokens):
                    logits = forward.step(logits.argmax(axis=-1)[:, None], cache)
                times[name].append(1000 * (time.perf_counter() - start) / tokens)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def lowered_length_step_ms(engine: Engine, context: int = 256, drop: int = 4, rounds: int = 32) -> dict:
    """A one-token step right after the cache's length was lowered by `drop` (an edit before the
    cursor, a rejected draft) beside a plain one-token step, over `rounds` consecutive lengths
    from `context` (every offset from a state snapshot, for Mamba: model/mamba.py). Returns the
    median ms of each and the mean positions a state cache re-ran (0 for a KV cache)."""
    context = min(context, engine.context - rounds - drop - 2)
    lowered, plain, rerun = [], [], []
    with engine.exclusive() as forward:
        ids = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (1, context + rounds + drop + 2))
        cache = forward.new_cache(1, context + rounds + drop + 2)
        forward.step(ids[:, :context], cache)
        for length in range(context, context + rounds):
            cache.length = length
            forward.step(ids[:, length : length + drop], cache)  # the tail that the edit drops
            cache.length = length
            before = getattr(cache, "recomputed", 0)  # only a state cache re-runs anything
            start = time.perf_counter()
            forward.step(ids[:, length : length + 1], cache)
            lowered.append(time.perf_counter() - start)
            rerun.append(getattr(cache, "recomputed", 0) - before)
            start = time.perf_counter()
            forward.step(ids[:, length + 1 : length + 2], cache)
            plain.append(time.perf_counter() - start)
    return {
        "lowered_ms": 1000 * float(np.median(lowered)),
        "plain_ms": 1000 * float(np.median(plain)),
        "mean_rerun": float(np.mean(rerun)),
    }


def prefill_ms(engine: Engine, tokens: int, context: int = 0, repeats: int = 3) -> float:
    """Best-of-`repeats` time to pre-fill `tokens` new tokens after `context` cached ones."""
    best = float("inf")
    tokens = min(tokens, engine.context - context)
    with engine.exclusive() as forward:
        cache = forward.new_cache(1, context + tokens)
        ids = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (1, context + tokens))
        if context:
            forward.step(ids[:, :context], cache)
        for _ in range(repeats):
            cache.length = context
            start = time.perf_counter()
            for offset in range(context, context + tokens, PREFILL_CHUNK):
                forward.step(ids[:, offset : min(offset + PREFILL_CHUNK, context + tokens)], cache)
            best = min(best, time.perf_counter() - start)
    return 1000 * best


def _typing_queries(text: str, mid_document: bool, every: int):
    """(prefix, suffix) pairs of someone typing `text`: at the end of the document, or inserting
    its middle third into a document that already holds the rest (the suffix stays fixed)."""
    if not mid_document:
        return [(text[:cursor], "") for cursor in range(1, len(text) + 1, every)]
    start = text.rfind("\n", 0, len(text) // 3) + 1
    end = text.find("\n", 2 * len(text) // 3) + 1 or len(text)
    return [(text[:cursor], text[end:]) for cursor in range(start, end, every)]


def typing_latency(
    engine: Engine, text: str, mode: str = "line", max_tokens: int = 16, every: int = 1, mid_document: bool = False
) -> dict:
    """Type `text` one character at a time (a query every `every` characters) and time each
    `complete` call (see _typing_queries). Returns latency percentiles in ms and the mean of
    pre-filled tokens per request."""
    latencies, cpu, prefilled, counts = [], [], [], {}
    for prefix, suffix in _typing_queries(text, mid_document, every):
        q = CompletionQuery(uri="bench://typing", prefix=prefix, suffix=suffix, mode=mode, max_tokens=max_tokens)
        start, cpu_start = time.perf_counter(), time.process_time()
        stats = engine.complete(q).stats
        latencies.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - cpu_start))
        prefilled.append(stats.prefilled)
        for key in ("decoded", "drafted", "accepted"):
            counts[key] = counts.get(key, 0) + getattr(stats, key)
    return {
        "requests": len(latencies),
        "mean_decoded_tokens": counts["decoded"] / len(latencies),
        "drafted": counts["drafted"],
        "accepted": counts["accepted"],
        "p50_ms": _percentile(latencies, 0.5),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "cpu_p50_ms": _percentile(cpu, 0.5),  # CPU time: what an idle core would take, roughly
        "mean_prefilled_tokens": sum(prefilled) / len(prefilled),
    }


def psm_prefill_tokens(engine: Engine, text: str, every: int = 1) -> float:
    """For comparison with the SPM order the engine uses: the mean tokens a PSM prompt
    (prefix, then suffix, then <|fim_middle|>) would pre-fill per keystroke in the mid-document
    typing of `typing_latency`, with the same cache reuse (everything after the first changed
    token is pre-filled again)."""
    tok = engine.tokenizer
    previous: list[int] = []
    counts = []
    for prefix, suffix in _typing_queries(text, True, every):
        suffix_ids = tok.encode(suffix)[: (engine.context - 48) // SUFFIX_SHARE]
        prompt = [tok.fim_prefix_id, *tok.encode(prefix), tok.fim_suffix_id, *suffix_ids, tok.fim_middle_id]
        counts.append(len(prompt) - min(common_prefix_length(previous, prompt), len(prompt) - 1))
        previous = prompt
    return sum(counts) / len(counts)


def _random_nano_model(vocab_texts: list[str], backend: str, arch: str = "dense") -> LoadedModel:
    """A randomly initialised nano model of `arch` (speed does not depend on the weights) with a
    tokenizer trained to 8192 tokens on the given shell text."""
    import torch

    from ..model.architectures import build_model
    from ..model.checkpoint import serving_backend
    from ..model.gpt import preset_config
    from ..model.numpy_gpt import NumpyGPT

    tok = BashTokenizer.train(vocab_texts, vocab_size=8192)
    torch.manual_seed(0)
    model = build_model(preset_config("nano", tok.vocab_size, arch=arch)).eval()
    meta, path = {"id": f"random-nano-{arch}"}, Path(f"(random nano {arch})")
    if serving_backend(arch, backend) == "numpy":
        numpy_model = NumpyGPT(model.config, {name: t.numpy() for name, t in model.state_dict().items()})
        return LoadedModel(numpy_model, tok, model.config, meta, path, "cpu")
    return LoadedModel(model, tok, model.config, meta, path, torch.device("cpu"))


def _shell_texts(roots: list[Path], limit_bytes: int = 1_500_000) -> list[str]:
    """Shell scripts under `roots` (by extension or an sh/bash shebang), up to `limit_bytes` in all."""
    texts, total = [], 0
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            try:
                if not path.is_file() or path.stat().st_size > 200_000:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if not (path.suffix in (".sh", ".bash") or (data.startswith(b"#!") and b"sh" in data[:40].split(b"\n")[0])):
                continue
            texts.append(data.decode("utf-8", errors="replace"))
            total += len(data)
            if total > limit_bytes:
                return texts
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bashlsp.bench.engine", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scripts",
        action="append",
        type=Path,
        metavar="DIR",
        help="shell scripts to type and to train the random model's tokenizer on (default: /usr/bin and /etc)",
    )
    parser.add_argument(
        "--checkpoint", help="checkpoint dir, store id, 'current' or 'default' (else a random nano model)"
    )
    parser.add_argument(
        "--arch",
        choices=ARCHS,
        default="dense",
        help="the random nano model's architecture (without --checkpoint; not numpy but torch for all but dense)",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: the engine's default)")
    parser.add_argument(
        "--backend",
        choices=("numpy", "torch"),
        default="numpy",
        help="numpy: what the server runs on a CPU (default); torch: the GPU path, on the CPU",
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per completion in the typing benchmark")
    parser.add_argument("--every", type=int, default=1, help="query every N typed characters")
    parser.add_argument(
        "--speculate", choices=("auto", "on", "off"), default="auto", help="prompt-lookup drafts (auto: on for GPUs)"
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    from ..model.checkpoint import load_checkpoint, resolve_checkpoint

    start = time.perf_counter()
    texts = _shell_texts(args.scripts or [Path("/usr/bin"), Path("/etc")])
    if not texts:
        raise SystemExit(f"{parser.prog}: error: no shell scripts found under {args.scripts}")
    if args.checkpoint:
        loaded = load_checkpoint(resolve_checkpoint(args.checkpoint), backend=args.backend)
    else:
        loaded = _random_nano_model(texts, args.backend, args.arch)
    engine = Engine(
        loaded, num_threads=args.threads or None, speculate={"auto": None, "on": True, "off": False}[args.speculate]
    )
    engine.warm_up()
    print(f"model {loaded.id}: {engine.forward.num_params() / 1e6:.2f}M params, config {loaded.config.to_dict()}")
    print(f"arch {loaded.config.describe()}")
    print(
        f"backend {loaded.backend}, threads {engine.threads}, cpus {os.cpu_count()}, load ready in {time.perf_counter() - start:.2f}s"
    )

    for context in (64, min(512, engine.context // 2)):
        figures = decode_tokens_per_second(engine, tokens=128, context=context)
        print(
            f"decode (1 stream, {figures['context']} cached): {figures['tokens_per_second']:.0f} tokens/s "
            f"({figures['ms_per_token']:.2f} ms/token; cpu {1000 * figures['cpu_seconds'] / figures['tokens']:.2f} ms/token)"
        )
    figures = naive_vs_engine_decode(engine)
    print(
        f"decode, alternating rounds (256 cached): plain GPT.forward {figures['naive']:.2f} ms/token "
        f"({1000 / figures['naive']:.0f} tokens/s), engine {figures['engine']:.2f} ms/token ({1000 / figures['engine']:.0f} tokens/s)"
    )
    figures = decode_tokens_per_second(engine, tokens=64, context=256, samples=4)
    print(
        f"decode (4 streams, {figures['context']} cached): {figures['tokens_per_second']:.0f} tokens/s in all ({figures['ms_per_token']:.2f} ms/step)"
    )
    for drop in (1, 4):
        figures = lowered_length_step_ms(engine, drop=drop)
        print(
            f"step after the cache length was lowered by {drop} (32 lengths from 256): {figures['lowered_ms']:.2f} ms, "
            f"plain step {figures['plain_ms']:.2f} ms; {figures['mean_rerun']:.1f} positions re-run on average"
        )
    for tokens in (1, 4, 64, 256):
        print(f"prefill {tokens} tokens after 128 cached: {prefill_ms(engine, tokens, context=128):.1f} ms")
    cold = min(768, engine.context - 1)
    print(f"prefill {cold} tokens cold: {prefill_ms(engine, cold):.1f} ms")

    script = max((t for t in texts if 1200 < len(t) < 6000), key=len, default=texts[0])[:1200]
    for label, mid_document in (("end of document", False), ("mid-document, fill-in-the-middle", True)):
        figures = typing_latency(
            engine, script, max_tokens=args.max_tokens, every=args.every, mid_document=mid_document
        )
        print(
            f"typing {figures['requests']} keystrokes, line completion of {args.max_tokens} tokens, {label}: "
            f"p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms "
            f"(cpu p50 {figures['cpu_p50_ms']:.1f} ms), "
            f"{figures['mean_prefilled_tokens']:.1f} tokens pre-filled and {figures['mean_decoded_tokens']:.1f} decoded "
            f"per request; drafts: {figures['accepted']} of {figures['drafted']} tokens accepted"
        )
    psm = psm_prefill_tokens(engine, script, every=args.every)
    print(
        f"the same typing with a PSM prompt would pre-fill {psm:.1f} tokens per request "
        f"({prefill_ms(engine, max(1, round(psm)), context=128):.1f} ms each)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
