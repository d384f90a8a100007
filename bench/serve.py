"""`bashlsp bench serve`: drive the real server over stdio like an editor and print figures.

    bashlsp bench serve [--checkpoint C] [--script FILE] [--chars N] [--generate N] [--json OUT]

Phases, all against one `bashlsp serve --stdio` process:
1. cold start: spawn, initialize, open a script, first completion answered;
2. typing: the script is typed character by character (incremental didChange), with an
   inlineCompletion request after every keystroke and a completion request after every word
   character or `$`, each awaited before the next keystroke (an editor's debounce);
3. generate-from-comment on the script's comment lines (workspace/executeCommand, apply=false);
4. hot-swap under typing: typing goes on while a new checkpoint is published into the store the
   server follows; every request must succeed, and the latency while the new model loads is
   compared with the steady state;
5. first answer after opening a ~20 KB script (fresh documents): asked at once, after 1 s idle
   at the end of the document, and after 1 s idle at a cursor a code-action request named (the
   server pre-fills its cache meanwhile, server/prefill.py).
In the typing phase, a keystroke that types the first character of the ghost text on screen is
answered from it without the model (server/reuse.py): "inline, typed through" times those.
Latency is measured in the client, from writing the request to reading its answer.

Why one module of ~660 lines: five phases of one benchmark that share one server process, one
client and one latency recorder, and one report that compares them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..model.errors import BashlspError

SAMPLE_SCRIPT = r"""#!/usr/bin/env bash
# Back up a directory into a dated tarball and keep the last few.
set -euo pipefail

SOURCE_DIR="${1:-$HOME/projects}"
BACKUP_DIR="${BACKUP_DIR:-/var/backups/projects}"
KEEP=7
LOG_FILE="/tmp/backup.log"

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') $*" | tee -a "$LOG_FILE"
}

usage() {
  echo "usage: $0 [SOURCE_DIR]" >&2
  exit 1
}

# check that the source directory exists
if [ ! -d "$SOURCE_DIR" ]; then
  log "source directory $SOURCE_DIR does not exist"
  usage
fi

mkdir -p "$BACKUP_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
archive="$BACKUP_DIR/backup-$stamp.tar.gz"

# create the archive, skipping caches
log "backing up $SOURCE_DIR to $archive"
tar --exclude='*.cache' -czf "$archive" -C "$(dirname "$SOURCE_DIR")" "$(basename "$SOURCE_DIR")"

# remove old backups, keeping the newest ones
count=0
for file in $(ls -1t "$BACKUP_DIR"/backup-*.tar.gz); do
  count=$((count + 1))
  if [ "$count" -gt "$KEEP" ]; then
    log "removing $file"
    rm -f "$file"
  fi
done

# print the size of every backup
while read -r size name; do
  printf '%8s  %s\n' "$size" "$name"
done < <(du -h "$BACKUP_DIR"/backup-*.tar.gz)

case "${2:-}" in
  --verify)
    tar -tzf "$archive" > /dev/null && log "archive verified"
    ;;
  *)
    ;;
esac

log "done"
"""


# -- a plain asyncio LSP client ------------------------------------------------------------------


class LspClient:
    """Enough of an editor: framed JSON-RPC over a subprocess' stdio."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self.logs: list[tuple[float, int, str]] = []  # (time, type, message) of logMessage/showMessage
        self._log_event = asyncio.Event()
        self._reader: asyncio.Task | None = None

    async def start(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            limit=1 << 26,
        )
        self._reader = asyncio.create_task(self._read())

    def _write(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def _read(self) -> None:
        from ..server.protocol import FramingProblem, MessageFramer

        framer = MessageFramer(max_body=1 << 30)
        while True:
            data = await self.proc.stdout.read(1 << 16)
            if not data:
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("the server exited"))
                return
            for body in framer.feed(data):
                if isinstance(body, FramingProblem):
                    raise ConnectionError(f"the server's output is not LSP: {body}")
                self._dispatch(json.loads(body))

    def _dispatch(self, message: dict) -> None:
        if "method" in message and "id" in message:
            self._answer_server_request(message)
        elif "method" in message:
            if message["method"] in ("window/logMessage", "window/showMessage"):
                params = message.get("params") or {}
                self.logs.append((time.perf_counter(), params.get("type", 0), params.get("message", "")))
                self._log_event.set()
        elif (future := self._pending.pop(message.get("id"), None)) is not None and not future.done():
            future.set_result(message)

    def _answer_server_request(self, message: dict) -> None:
        method, params = message["method"], message.get("params") or {}
        result = None
        if method == "workspace/configuration":
            result = [None for _ in params.get("items", [])]
        elif method == "workspace/applyEdit":
            result = {"applied": False}
        self._write({"jsonrpc": "2.0", "id": message["id"], "result": result})

    def send(self, method: str, params) -> tuple[int, asyncio.Future]:
        """Write a request now; (its id, a future for the answer message)."""
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self._write({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id, future

    async def request(self, method: str, params) -> tuple[dict, float]:
        """(the answer message, seconds from writing the request to reading the answer)."""
        started = time.perf_counter()
        _, future = self.send(method, params)
        answer = await future
        return answer, time.perf_counter() - started

    def notify(self, method: str, params) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    async def wait_for_log(self, needle: str, timeout: float) -> float:
        """Time (perf_counter) of the first log line containing `needle`."""
        deadline = time.perf_counter() + timeout
        while True:
            for at, _, text in self.logs:
                if needle in text:
                    return at
            self._log_event.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no log message containing {needle!r} within {timeout:.0f} s")
            try:
                await asyncio.wait_for(self._log_event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> int:
        try:
            await asyncio.wait_for(self.request("shutdown", None), 30)
            self.notify("exit", None)
            return await asyncio.wait_for(self.proc.wait(), 30)
        except (asyncio.TimeoutError, ConnectionError):
            self.proc.kill()
            return await self.proc.wait()


# -- measurements ----------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    seconds: float
    sent_at: float
    ok: bool
    empty: bool = False
    lines: str | None = None  # inline answers: "one line" or "several lines" of ghost text
    typed_through: bool = False  # the keystroke typed the first character of the ghost text shown


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, kind: str, answer: dict, seconds: float, sent_at: float, typed_through: bool = False) -> dict | None:
        ok = "error" not in answer
        result = answer.get("result") if ok else None
        answered = kind in ("completion", "inline")
        items = ((result or {}).get("items") or []) if answered else []
        empty = ok and answered and not items
        lines = None
        if kind == "inline" and items:  # the targets are for one-line ghost text
            lines = "several lines" if "\n" in str(items[0].get("insertText", "")).strip("\n") else "one line"
        self.samples.append(Sample(kind, seconds, sent_at, ok, empty, lines, typed_through))
        if not ok:
            self.failures.append(f"{kind}: {answer['error'].get('code')} {answer['error'].get('message', '')[:200]}")
        return result


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {
        "n": len(values),
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(values),
    }


def rss_mb(pid: int) -> tuple[float | None, float | None]:
    """(current, peak) resident memory of `pid` in MB (Linux /proc; peak None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        import subprocess

        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        return (int(out) / 1024 if out.isdigit() else None), None
    values = {
        line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))
    }
    return int(values.get("VmRSS", 0)) / 1024, int(values.get("VmHWM", 0)) / 1024


# -- the editor's side -----------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TypedDocument:
    """A document the bench types into, keeping the cursor in LSP coordinates."""

    def __init__(self, client: LspClient, uri: str, text: str) -> None:
        self.client, self.uri, self.version = client, uri, 1
        self.line = text.count("\n")
        self.character = utf16_len(text[text.rfind("\n") + 1 :])
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "shellscript", "version": 1, "text": text}},
        )

    @property
    def position(self) -> dict:
        return {"line": self.line, "character": self.character}

    def type(self, char: str) -> None:
        self.version += 1
        at = self.position
        self.client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": self.uri, "version": self.version},
                "contentChanges": [{"range": {"start": at, "end": at}, "text": char}],
            },
        )
        if char == "\n":
            self.line, self.character = self.line + 1, 0
        else:
            self.character += utf16_len(char)


async def type_text(client: LspClient, doc: TypedDocument, text: str, recorder: Recorder) -> None:
    """Type `text`; ask for inline completion after every keystroke and for completion inside
    words and after `$`, with the trigger kinds an editor sends: a trigger character, the
    first letter of a word (invoked), then refinements of the open, incomplete list."""
    in_word = False
    ghost = ""  # the ghost text on screen
    for char in text:
        doc.type(char)
        ident = {"uri": doc.uri}
        sent = time.perf_counter()
        answer, seconds = await client.request(
            "textDocument/inlineCompletion",
            {"textDocument": ident, "position": doc.position, "context": {"triggerKind": 2}},
        )
        result = recorder.add("inline", answer, seconds, sent, typed_through=len(ghost) > 1 and ghost[0] == char)
        items = (result or {}).get("items") or []
        ghost = str(items[0].get("insertText", "")) if items else ""
        if char.isalnum() or char in "_$":
            trigger = 2 if char == "$" else 3 if in_word else 1
            context = {"triggerKind": trigger, **({"triggerCharacter": char} if trigger == 2 else {})}
            sent = time.perf_counter()
            answer, seconds = await client.request(
                "textDocument/completion", {"textDocument": ident, "position": doc.position, "context": context}
            )
            recorder.add("completion", answer, seconds, sent)
        in_word = char.isalnum() or char in "_$"


def comment_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.split("\n")) if line.lstrip().startswith("#") and not line.startswith("#!")]


def prepare_variant(store, source: Path, generation: int) -> str:
    """Write `source` with slightly changed weights into the store, not yet current: the
    swap phase then only moves the pointer, as a trainer's last publishing step does, so the
    bench process' own writing does not count against the server's latency."""
    import torch

    from ..model.checkpoint import load_checkpoint, new_checkpoint_id, save_checkpoint

    loaded = load_checkpoint(source, check_forward=False)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.mul_(1.0 + 1e-3 * generation)
    checkpoint_id = new_checkpoint_id()
    meta = {k: v for k, v in loaded.meta.items() if k != "id"}
    meta.update(id=checkpoint_id, bench_generation=generation)
    save_checkpoint(store.path_of(checkpoint_id), loaded.model, loaded.tokenizer, meta)
    return checkpoint_id


async def run_bench(args: argparse.Namespace) -> dict:
    from ..model.checkpoint import CheckpointStore, load_checkpoint, resolve_checkpoint

    source = resolve_checkpoint(args.checkpoint or None, CheckpointStore())
    script = Path(args.script).read_text(encoding="utf-8", errors="replace") if args.script else SAMPLE_SCRIPT
    work = Path(tempfile.mkdtemp(prefix="bashlsp-bench-"))
    store = CheckpointStore(work / "store")
    loaded = load_checkpoint(source, check_forward=False)
    first_id = store.publish(loaded.model, loaded.tokenizer, {k: v for k, v in loaded.meta.items() if k != "id"})
    del loaded

    command = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio", "--store", str(store.root)]
    if args.device:
        command += ["--device", args.device]
    env = dict(os.environ, BASHLSP_STORE=str(store.root))
    client = LspClient()
    report: dict = {"checkpoint": str(source), "script_chars": len(script)}

    # 1. cold start
    started = time.perf_counter()
    await client.start(command, env)
    initialize = client.request(
        "initialize",
        {
            "processId": os.getpid(),
            "capabilities": {"textDocument": {"completion": {}, "inlineCompletion": {}, "codeAction": {}}},
            "initializationOptions": {"completion": {"alternatives": args.alternatives}},
            **workspace_params(args.workspace),
        },
    )
    await initialize
    report["initialize_s"] = time.perf_counter() - started
    client.notify("initialized", {})
    head_end = script.find("\n") + 1
    # A script of the workspace is typed as itself, so its own file is not context for it (the
    # server leaves a document's file out of its context).
    typed_uri = Path(args.script).resolve().as_uri() if args.script and args.workspace else "file:///bench/typed.sh"
    doc = TypedDocument(client, typed_uri, script[:head_end])
    answer, _ = await client.request(
        "textDocument/completion", {"textDocument": {"uri": doc.uri}, "position": doc.position}
    )
    report["cold_start_s"] = time.perf_counter() - started
    report["cold_start_ok"] = "error" not in answer
    info, _ = await client.request("workspace/executeCommand", {"command": "bashlsp.modelInfo"})
    info = info.get("result") or {}
    report["model"] = {k: info.get(k) for k in ("id", "params", "device", "backend", "threads", "context")}

    # 2. typing
    if args.workspace:  # typing starts once the project's scripts are indexed
        await client.wait_for_log("workspace index:", timeout=120)
        report["workspace"] = next(text for _, _, text in client.logs if "workspace index:" in text)
    steady = Recorder()
    typed = script[head_end : head_end + args.chars]
    typing_started = time.perf_counter()
    await type_text(client, doc, typed, steady)
    report["typing_s"] = time.perf_counter() - typing_started
    report["typed_chars"] = len(typed)

    # 3. generate from comment
    generate = Recorder()
    produced = 0
    for n, line in enumerate(comment_lines(script)[: args.generate]):
        uri = f"file:///bench/generate-{n}.sh"
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "shellscript", "version": 1, "text": script}},
        )
        sent = time.perf_counter()
        answer, seconds = await client.request(
            "workspace/executeCommand",
            {
                "command": "bashlsp.generateFromComment",
                "arguments": [
                    {
                        "uri": uri,
                        "range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}},
                        "apply": False,
                    }
                ],
            },
        )
        result = generate.add("generate", answer, seconds, sent)
        produced += bool(result and result.get("script"))
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    report["generate_passed_bash_n"] = f"{produced}/{len(generate.samples)}"

    info, _ = await client.request("workspace/executeCommand", {"command": "bashlsp.modelInfo"})
    report["server_stats"] = (info.get("result") or {}).get("stats", {})
    report["rss_mb"], report["peak_rss_mb"] = rss_mb(client.proc.pid)

    # 4. hot-swap under typing
    swap = Recorder()
    if args.swap:
        new_id = prepare_variant(store, store.path_of(first_id), 2)
        swap_doc = TypedDocument(client, "file:///bench/swap.sh", script[:head_end])
        body = script[head_end:]
        typing = asyncio.create_task(type_text(client, swap_doc, body * 4, swap))
        await asyncio.sleep(2.0)  # steady typing first
        publish_started = time.perf_counter()
        store.use(new_id, validate=False)  # the atomic pointer switch the server watches
        swapped_at = await client.wait_for_log(f"now serving {new_id}", timeout=120)
        await asyncio.sleep(1.0)  # and a little after
        typing.cancel()
        try:
            await typing
        except asyncio.CancelledError:
            pass
        # Requests that overlapped the load: answered after the switch began, sent before it ended.
        during = [
            s.seconds for s in swap.samples if s.sent_at + s.seconds >= publish_started and s.sent_at <= swapped_at
        ]
        before = [s.seconds for s in swap.samples if s.sent_at + s.seconds < publish_started]
        report["swap"] = {
            "requests": len(swap.samples),
            "failed": len(swap.failures),
            "window_s": swapped_at - publish_started,
            "during": percentiles(during),
            "before": percentiles(before),
            "all": percentiles([s.seconds for s in swap.samples]),
        }
    report["failed_requests"] = len(steady.failures) + len(generate.failures) + len(swap.failures)
    report["failures"] = (steady.failures + generate.failures + swap.failures)[:10]
    report["latency"] = {
        kind: percentiles([s.seconds for s in recorder.samples if s.kind == kind])
        for recorder, kinds in ((steady, ("completion", "inline")), (generate, ("generate",)))
        for kind in kinds
    }
    for lines in ("one line", "several lines"):  # inline latency by what was offered
        report["latency"][f"inline, {lines}"] = percentiles([s.seconds for s in steady.samples if s.lines == lines])
    report["latency"]["inline, typed through"] = percentiles([s.seconds for s in steady.samples if s.typed_through])
    report["latency"]["inline, model"] = percentiles(
        [s.seconds for s in steady.samples if s.kind == "inline" and not s.typed_through]
    )
    report["first_answer"] = await first_answers(client, script, args.first_samples)
    info, _ = await client.request("workspace/executeCommand", {"command": "bashlsp.modelInfo"})
    report["project_context"] = (info.get("result") or {}).get("projectContext", {})
    # Time outside the model per request (JSON, pipes, event loop, thread hand-off, bash -n):
    # client-side latency minus the server's own model time for that kind, over the requests the
    # model answered (ghost text typed through is answered without it: counting those made this
    # negative).
    report["outside_model_ms"] = {}
    for kind, model_kinds in (("completion", ("line", f"linex{args.alternatives}")), ("inline", ("inline",))):
        stats = [report["server_stats"][k] for k in model_kinds if k in report["server_stats"]]
        latencies = [s.seconds for s in steady.samples if s.kind == kind and not s.typed_through]
        requests = sum(s["requests"] for s in stats)
        if latencies and requests:
            model_mean = sum(s["modelSeconds"] for s in stats) / requests
            report["outside_model_ms"][kind] = 1000 * (statistics.fmean(latencies) - model_mean)
    single = [s for kind, s in report["server_stats"].items() if "x" not in kind and s.get("decodeSeconds")]
    if single:  # one-stream requests: every decode step is one token
        steps, seconds = sum(s["decodeSteps"] for s in single), sum(s["decodeSeconds"] for s in single)
        report["decode"] = {"tokens": steps, "seconds": seconds, "tokens_per_second": steps / seconds}
    report["empty_answers"] = {k: sum(s.empty for s in steady.samples if s.kind == k) for k in ("completion", "inline")}
    report["exit_code"] = await client.close()
    shutil.rmtree(work, ignore_errors=True)
    return report


def workspace_params(folder: str | None) -> dict:
    """initialize's rootUri and workspaceFolders for `folder` (none without one)."""
    if not folder:
        return {}
    uri = Path(folder).resolve().as_uri()
    return {"rootUri": uri, "workspaceFolders": [{"uri": uri, "name": Path(folder).name}]}


async def first_answers(client: LspClient, script: str, samples: int, idle_s: float = 1.0) -> dict:
    """Latency of the first ghost text in freshly opened ~20 KB documents: asked at once; after
    `idle_s` at the end of the document; after `idle_s` at a cursor in the middle that a
    code-action request named (editors send one as the cursor moves)."""
    text = script * max(1, -(-20_000 // max(1, len(script))))
    lines = text.split("\n")
    end = {"line": len(lines) - 1, "character": utf16_len(lines[-1])}
    middle = {"line": len(lines) // 2, "character": 0}
    times: dict[str, list[float]] = {"at once, end": [], "after 1 s idle, end": [], "after 1 s idle, cursor": []}
    for n in range(samples):
        for label in times:
            uri = f"file:///bench/first-{n}-{label.replace(' ', '').replace(',', '-')}.sh"
            client.notify(
                "textDocument/didOpen",
                {"textDocument": {"uri": uri, "languageId": "shellscript", "version": 1, "text": text}},
            )
            position = middle if label.endswith("cursor") else end
            if label.startswith("after"):
                await asyncio.sleep(idle_s)
            if label.endswith("cursor"):
                await client.request(
                    "textDocument/codeAction",
                    {
                        "textDocument": {"uri": uri},
                        "range": {"start": position, "end": position},
                        "context": {"diagnostics": []},
                    },
                )
                await asyncio.sleep(idle_s)
            answer, seconds = await client.request(
                "textDocument/inlineCompletion",
                {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": 2}},
            )
            times[label].append(seconds)
            client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    return {"chars": len(text), **{label: percentiles(values) for label, values in times.items()}}


def print_report(report: dict) -> None:
    ms = lambda v: f"{v * 1000:7.1f}"  # noqa: E731
    model = report["model"]
    print(
        f"bashlsp bench serve — checkpoint {report['checkpoint']} ({model.get('id')}, "
        f"{(model.get('params') or 0) / 1e6:.1f}M parameters, {model.get('device')} ({model.get('backend')}, {model.get('threads')} thread(s)), context {model.get('context')})"
    )
    print(
        f"cold start to first completion: {report['cold_start_s']:.2f} s (initialize answered after {report['initialize_s']:.2f} s)"
    )
    if report.get("workspace"):
        print(report["workspace"])
    print(f"typed {report['typed_chars']} characters in {report['typing_s']:.1f} s")
    print(f"{'latency (ms)':<26}{'n':>6}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for kind, p in report["latency"].items():
        if p.get("n"):
            print(f"{kind:<26}{p['n']:>6}{ms(p['p50']):>8}{ms(p['p95']):>8}{ms(p['p99']):>8}{ms(p['max']):>8}")
    print(f"empty answers while typing: {report['empty_answers']}")
    for kind, overhead in report["outside_model_ms"].items():
        print(f"mean time outside the model per {kind} request: {overhead:.1f} ms (protocol, JSON, threads, checks)")
    print(f"generate-from-comment results that passed bash -n: {report['generate_passed_bash_n']}")
    for kind, stats in report["server_stats"].items():
        rate, decode = stats.get("tokensPerSecond"), stats.get("decodeStepsPerSecond")
        print(
            f"model tokens/s ({kind}, incl. prefill): {rate if rate is not None else '-'} "
            f"({stats['tokens']} tokens in {stats['modelSeconds']:.2f} s over {stats['requests']} requests); "
            f"decode steps/s: {decode if decode is not None else '-'}"
        )
    if report.get("decode"):
        decode = report["decode"]
        print(
            f"decode, one stream (line, inline, generate; prefill excluded): {decode['tokens_per_second']:.0f} tokens/s "
            f"({decode['tokens']} tokens in {decode['seconds']:.2f} s)"
        )
    print(f"resident memory: {report['rss_mb']:.0f} MB (peak {report['peak_rss_mb'] or 0:.0f} MB)")
    if "swap" in report:
        swap = report["swap"]
        during, overall = swap["during"], swap["all"]
        p99 = report["latency"]["inline"].get("p99")
        print(
            f"hot-swap under typing: {swap['requests']} requests, {swap['failed']} failed; new model served "
            f"{swap['window_s']:.2f} s after publishing began"
        )
        before = swap["before"]
        if during.get("n") and before.get("n"):
            print(
                f"  before the switch: n={before['n']} p50 {ms(before['p50']).strip()} ms, p99 {ms(before['p99']).strip()} ms"
            )
            print(
                f"  overlapping the load: n={during['n']} p50 {ms(during['p50']).strip()} ms, p99 {ms(during['p99']).strip()} ms "
                f"({during['p99'] / before['p99']:.2f}x the p99 before; steady-phase inline p99 {ms(p99).strip()} ms)"
            )
        print(f"  whole phase: p50 {ms(overall['p50']).strip()} ms, p99 {ms(overall['p99']).strip()} ms")
    first = report.get("first_answer") or {}
    for label, p in first.items():
        if isinstance(p, dict) and p.get("n"):
            print(
                f"first ghost text in a fresh {first['chars'] / 1000:.0f} KB document, {label}: "
                f"n={p['n']} p50 {ms(p['p50']).strip()} ms, p95 {ms(p['p95']).strip()} ms"
            )
    if report.get("project_context"):
        print(f"project context: {report['project_context']}")
    print(f"failed requests: {report['failed_requests']}" + (f" ({report['failures']})" if report["failures"] else ""))


def main(argv: list[str] | None = None, prog: str = "bashlsp bench serve") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Drive the real server like an editor; print latency, tokens/s, memory."
    )
    parser.add_argument(
        "--checkpoint", help="checkpoint to serve (default: the store's current, else the bundled model)"
    )
    parser.add_argument("--script", help="a shell script to type (default: a built-in 60-line backup script)")
    parser.add_argument("--chars", type=int, default=600, help="characters to type in the steady phase (default 600)")
    parser.add_argument("--generate", type=int, default=6, help="generate-from-comment requests (default 6)")
    parser.add_argument(
        "--alternatives", type=int, default=3, help="model items per completion (the setting; default 3)"
    )
    parser.add_argument("--device", help="auto|cpu|cuda|mps (default: the server's default)")
    parser.add_argument("--no-swap", dest="swap", action="store_false", help="skip the hot-swap phase")
    parser.add_argument("--workspace", help="a project folder to open as the workspace (project context)")
    parser.add_argument(
        "--first-samples", type=int, default=8, help="fresh ~20 KB documents per first-answer case (default 8)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(run_bench(args))
    except BashlspError as exc:
        raise BashlspError(f"{exc} (pass --checkpoint DIR)") from exc
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if report["failed_requests"] == 0 else 1
