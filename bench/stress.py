"""`bashlsp bench stress`: load and soak the real server over stdio, bounded in time.

    bashlsp bench stress [--seconds 60] [--documents 24] [--typists 4] [--checkpoint C] [--json OUT]
    bashlsp bench soak   (the same, 10 minutes: 50 documents opened, closed and reopened, a popup
                          and a ghost-text request at every keystroke; bench/soak.py)

One `bashlsp serve --stdio` process (loopback only: stdin/stdout of a child process). Several
"typists" run at once, each on its own documents: type a character (incremental didChange), then
ask for an inline completion or a completion; some requests are cancelled right after they are
sent ($/cancelRequest), some are superseded by a newer one for the same document (newest wins),
documents are closed and new ones opened, and a long document is reset by a full-text change.
A cancelled or superseded request may answer -32800 (expected); any other error is unexpected.

Printed: requests served by kind, cancellations, unexpected errors (must be 0) and requests never
answered within --answer-timeout (must be 0), p50/p95 latency per time bucket, the server's
resident memory after warm-up and at the end (goal: growth < 5%) and its trend after warm-up in
MB per hour, and, after every document is closed, how many documents and engine caches the
server still holds (must be 0). Exit status 1 if any of these fails or the server died.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types

from .serve import SAMPLE_SCRIPT, LspClient, percentiles, rss_mb, utf16_len

MAX_DOCUMENT_CHARS = 6000  # a typed document is reset to its start beyond this


@dataclass
class Outcome:
    kind: str
    sent_at: float  # seconds since the start of the load
    seconds: float
    status: str  # "ok", "cancelled" (expected), "error" (unexpected)


@dataclass
class Stats:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    documents_opened: int = 0
    documents_reopened: int = 0
    unanswered: int = 0


class Typist:
    """Types into its own documents and asks for completions, as one editor window would."""

    def __init__(self, number: int, client: LspClient, stats: Stats, args: argparse.Namespace, started: float) -> None:
        self.number, self.client, self.stats, self.started, self.args = number, client, stats, started, args
        self.rng = random.Random(args.seed + number)
        self.closed: list[str] = []  # this typist's closed documents
        self.docs: list[dict] = [self._open() for _ in range(max(1, args.documents // args.typists))]

    def _open(self) -> dict:
        self.stats.documents_opened += 1
        if self.args.reopen and self.closed and self.rng.random() < 0.5:
            uri = self.closed.pop(self.rng.randrange(len(self.closed)))
            self.stats.documents_reopened += 1
        else:
            uri = f"file:///stress/t{self.number}/doc{self.stats.documents_opened}.sh"
        start = self.rng.randrange(len(SAMPLE_SCRIPT) // 2)
        head = SAMPLE_SCRIPT[: SAMPLE_SCRIPT.find("\n", start) + 1]
        doc = {"uri": uri, "version": 1, "text": head, "source": self.rng.randrange(len(SAMPLE_SCRIPT))}
        self.client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "shellscript", "version": 1, "text": head}},
        )
        return doc

    @staticmethod
    def _end(text: str) -> dict:
        line = text.count("\n")
        return {"line": line, "character": utf16_len(text[text.rfind("\n") + 1 :])}

    def _type(self, doc: dict) -> None:
        doc["version"] += 1
        if len(doc["text"]) > MAX_DOCUMENT_CHARS:  # start over with a full-text change
            doc["text"] = SAMPLE_SCRIPT[: SAMPLE_SCRIPT.find("\n") + 1]
            changes = [{"text": doc["text"]}]
        else:
            char = SAMPLE_SCRIPT[doc["source"] % len(SAMPLE_SCRIPT)]
            doc["source"] += 1
            end = self._end(doc["text"])
            doc["text"] += char
            changes = [{"range": {"start": end, "end": end}, "text": char}]
        self.client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": doc["uri"], "version": doc["version"]}, "contentChanges": changes},
        )

    def _params(self, kind: str, doc: dict) -> tuple[str, dict]:
        position = self._end(doc["text"])
        ident = {"uri": doc["uri"]}
        if kind == "inline":
            return "textDocument/inlineCompletion", {
                "textDocument": ident,
                "position": position,
                "context": {"triggerKind": 2},
            }
        return "textDocument/completion", {"textDocument": ident, "position": position}

    async def _record(self, kind: str, future: asyncio.Future, sent: float, may_cancel: bool) -> None:
        wait = self.args.answer_timeout
        try:
            answer = await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            self.stats.unanswered += 1
            self.stats.errors.append(f"{kind}: no answer within {wait:g} s")
            self.stats.outcomes.append(Outcome(kind, sent - self.started, wait, "error"))
            return
        took = time.perf_counter() - sent
        error = answer.get("error")
        if error is None:
            status = "ok"
        elif error.get("code") == types.LSPErrorCodes.RequestCancelled and may_cancel:
            status = "cancelled"
        else:
            status = "error"
            self.stats.errors.append(f"{kind}: {error.get('code')} {str(error.get('message'))[:200]}")
        self.stats.outcomes.append(Outcome(kind, sent - self.started, took, status))

    async def run(self, deadline: float) -> None:
        while time.perf_counter() < deadline:
            doc = self.rng.choice(self.docs)
            self._type(doc)
            kind = "inline" if self.rng.random() < 0.6 else "completion"
            roll = self.rng.random()
            method, params = self._params(kind, doc)
            if self.args.both:  # ghost text and the popup at the same keystroke, as VS Code asks
                sent = time.perf_counter()
                futures = [self.client.send(*self._params(k, doc))[1] for k in ("inline", "completion")]
                await asyncio.gather(
                    self._record("inline", futures[0], sent, may_cancel=False),
                    self._record("completion", futures[1], sent, may_cancel=False),
                )
            elif roll < 0.85:  # one request, awaited (an editor's debounce)
                msg_id, future = self.client.send(method, params)
                await self._record(kind, future, time.perf_counter(), may_cancel=False)
            elif roll < 0.93:  # sent, then cancelled at once
                msg_id, future = self.client.send(method, params)
                sent = time.perf_counter()
                self.client.notify("$/cancelRequest", {"id": msg_id})
                await self._record(f"{kind}-cancelled", future, sent, may_cancel=True)
            else:  # superseded: a keystroke and a newer request for the same document
                _, first = self.client.send(method, params)
                sent = time.perf_counter()
                self._type(doc)
                method, params = self._params(kind, doc)
                _, second = self.client.send(method, params)
                second_sent = time.perf_counter()
                await asyncio.gather(
                    self._record(f"{kind}-superseded", first, sent, may_cancel=True),
                    self._record(kind, second, second_sent, may_cancel=False),
                )
            if self.rng.random() < self.args.close_rate:  # close a document and open another
                self.close(self.docs.pop(self.rng.randrange(len(self.docs))))
                self.docs.append(self._open())

    def close(self, doc: dict) -> None:
        self.client.notify("textDocument/didClose", {"textDocument": {"uri": doc["uri"]}})
        self.closed.append(doc["uri"])

    def close_all(self) -> None:
        while self.docs:
            self.close(self.docs.pop())


async def sample_memory(pid: int, stats: Stats, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        current, _ = rss_mb(pid)
        if current is not None:
            stats.rss.append((time.perf_counter() - started, current))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def run_stress(args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    if args.store:
        command += ["--store", args.store]
    if args.device:
        command += ["--device", args.device]
    client = LspClient()
    await client.start(command, dict(os.environ))
    await client.request(
        "initialize",
        {
            "processId": os.getpid(),
            "capabilities": {"textDocument": {"completion": {}, "inlineCompletion": {}}},
            "initializationOptions": {"completion": {"alternatives": args.alternatives}},
        },
    )
    client.notify("initialized", {})
    await client.wait_for_log("serving", timeout=120)
    info, _ = await client.request("workspace/executeCommand", {"command": "bashlsp.modelInfo"})
    info = info.get("result") or {}
    if not info.get("loaded"):
        await client.close()
        raise SystemExit(f"the server has no model ({info.get('problem')}); pass --checkpoint DIR")

    stats = Stats()
    started = time.perf_counter()
    stop = asyncio.Event()
    memory = asyncio.create_task(sample_memory(client.proc.pid, stats, started, stop))
    typists = [Typist(n, client, stats, args, started) for n in range(args.typists)]
    deadline = started + args.seconds
    await asyncio.gather(*(t.run(deadline) for t in typists))
    elapsed = time.perf_counter() - started
    stop.set()
    await memory
    # Every document closed: the server must hold nothing for them. The model's caches are freed
    # on its worker after the requests queued there, so this asks until they are gone (10 s at most).
    for typist in typists:
        typist.close_all()
    left = {}
    give_up = time.perf_counter() + 10
    while client.proc.returncode is None:
        after, _ = await client.request("workspace/executeCommand", {"command": "bashlsp.modelInfo"})
        after = after.get("result") or {}
        left = {"documents": after.get("documents"), "engine_caches": after.get("cachedDocuments")}
        if not any(left.values()) or time.perf_counter() > give_up:
            break
        await asyncio.sleep(0.05)
    alive = client.proc.returncode is None
    exit_code = await client.close()
    return build_report(args, info, stats, elapsed, alive, exit_code, left)


def _slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares trend of (seconds, MB) samples, in MB per hour."""
    if len(samples) < 3:
        return None
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_m = sum(m for _, m in samples) / len(samples)
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 3600


def build_report(
    args, info: dict, stats: Stats, elapsed: float, alive: bool, exit_code: int | None, left: dict | None = None
) -> dict:
    served = Counter(o.kind for o in stats.outcomes if o.status == "ok")
    cancelled = Counter(o.kind for o in stats.outcomes if o.status == "cancelled")
    buckets = []
    for start in range(0, max(1, int(elapsed + 0.999)), args.bucket):
        latencies = [
            o.seconds * 1000
            for o in stats.outcomes
            if o.status == "ok" and start <= o.sent_at < start + args.bucket and "superseded" not in o.kind
        ]
        figures = percentiles(latencies)
        in_bucket = [mb for at, mb in stats.rss if at < start + args.bucket]
        buckets.append(
            {
                "from_s": start,
                "to_s": min(start + args.bucket, round(elapsed)),
                **figures,
                "rss_mb": in_bucket[-1] if in_bucket else None,
            }
        )
    warm_samples = [(at, mb) for at, mb in stats.rss if at >= min(args.warmup, elapsed / 2)]
    warm = [mb for _, mb in warm_samples]
    trend = _slope_per_hour(warm_samples)
    rss_after_warmup = warm[0] if warm else None
    rss_end = stats.rss[-1][1] if stats.rss else None
    growth = (rss_end - rss_after_warmup) / rss_after_warmup * 100 if rss_after_warmup and rss_end else None
    return {
        "model": {k: info.get(k) for k in ("id", "params", "device")},
        "seconds": round(elapsed, 1),
        "typists": args.typists,
        "documents_opened": stats.documents_opened,
        "documents_reopened": stats.documents_reopened,
        "requests": len(stats.outcomes),
        "unanswered": stats.unanswered,
        "answer_timeout_s": args.answer_timeout,
        "left_after_closing_all": left or {},
        "served": dict(served),
        "served_total": sum(served.values()),
        "cancelled_expected": dict(cancelled),
        "unexpected_errors": len(stats.errors),
        "errors": stats.errors[:20],
        "requests_per_second": round(len(stats.outcomes) / elapsed, 1) if elapsed else None,
        "latency_ms_by_bucket": buckets,
        "rss_mb": {
            "after_warmup": rss_after_warmup,
            "end": rss_end,
            "max": max((mb for _, mb in stats.rss), default=None),
            "growth_percent": round(growth, 2) if growth is not None else None,
            "trend_mb_per_hour": round(trend, 1) if trend is not None else None,
            "warmup_s": args.warmup,
        },
        "server_alive_at_end": alive,
        "server_exit_code": exit_code,
    }


def print_report(report: dict) -> None:
    model = report["model"]
    print(
        f"bashlsp bench stress: {report['seconds']} s, {report['typists']} typists, "
        f"{report['documents_opened']} documents opened, model {model.get('id')} on {model.get('device')}"
    )
    print(
        f"requests: {report['requests']} ({report['requests_per_second']}/s); served {report['served_total']} "
        f"{report['served']}; cancelled as asked {report['cancelled_expected']}"
    )
    print(
        f"documents opened {report['documents_opened']} (reopened {report['documents_reopened']}); "
        f"unanswered within {report['answer_timeout_s']:g} s: {report['unanswered']}; "
        f"held after closing every document: {report['left_after_closing_all']}"
    )
    print(f"unexpected errors: {report['unexpected_errors']}")
    for error in report["errors"]:
        print(f"  {error}")
    print("latency (ms, completion + inline, from request to answer) and server memory at the end of each bucket:")
    for bucket in report["latency_ms_by_bucket"]:
        if bucket["n"]:
            rss = f"  RSS {bucket['rss_mb']:.1f} MB" if bucket.get("rss_mb") else ""
            print(
                f"  {bucket['from_s']:4d}-{bucket['to_s']:<4d} s  n {bucket['n']:5d}  p50 {bucket['p50']:7.1f}  "
                f"p95 {bucket['p95']:7.1f}  max {bucket['max']:7.1f}{rss}"
            )
    rss = report["rss_mb"]
    if rss["after_warmup"] is not None:
        verdict = "goal < 5% met" if rss["growth_percent"] < 5 else "over the 5% goal"
        print(
            f"resident memory: {rss['after_warmup']:.1f} MB after {rss['warmup_s']} s warm-up, {rss['end']:.1f} MB at the end "
            f"(growth {rss['growth_percent']:+.2f}%: {verdict}), max {rss['max']:.1f} MB; "
            f"trend after warm-up {rss['trend_mb_per_hour']} MB/hour"
        )
    print(f"server alive at the end: {report['server_alive_at_end']}, exit code {report['server_exit_code']}")


def main(argv: list[str] | None = None, prog: str = "bashlsp bench stress") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Load and soak the real server over stdio; print figures.")
    parser.add_argument("--seconds", type=float, default=60, help="how long the load runs (default 60)")
    parser.add_argument("--documents", type=int, default=24, help="documents open at once (default 24)")
    parser.add_argument("--typists", type=int, default=4, help="concurrent editors typing (default 4)")
    parser.add_argument("--bucket", type=int, default=10, help="seconds per latency bucket (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=10, help="seconds before memory growth is measured (default 10)"
    )
    parser.add_argument("--alternatives", type=int, default=1, help="model items per completion (default 1)")
    parser.add_argument("--both", action="store_true", help="a ghost-text and a popup request at every keystroke")
    parser.add_argument("--reopen", action="store_true", help="open closed documents again (same uri) half the time")
    parser.add_argument(
        "--close-rate", type=float, default=0.01, help="chance per keystroke of closing a document (default 0.01)"
    )
    parser.add_argument(
        "--answer-timeout", type=float, default=60, help="seconds after which a request counts as unanswered"
    )
    parser.add_argument(
        "--checkpoint", help="checkpoint to serve (default: the store's current, else the bundled model)"
    )
    parser.add_argument("--store", help="checkpoint store directory")
    parser.add_argument("--device", help="auto|cpu|cuda|mps (default: the server's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.typists < 1 or args.documents < 1 or args.bucket < 1:
        parser.error("--seconds, --typists, --documents and --bucket must be positive")
    report = asyncio.run(run_stress(args))
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    left = report["left_after_closing_all"]
    clean = report["unexpected_errors"] == 0 and report["unanswered"] == 0 and not any(left.values())
    return 0 if clean and report["server_alive_at_end"] and report["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
