"""The bashlsp language server: state shared by the handlers, and how requests reach the model.

Requests run as `async def` handlers on the event loop. Model work goes to the one model worker
thread (see hotswap.py) with a stop flag per request, polled by the engine between decode
steps. A request stops when the editor cancels it ($/cancelRequest: pygls cancels the task at
its next await, which answers -32800) or when a newer request of the same kind arrives for the
same document (newest wins: the older one is stopped and answers -32800 too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.exceptions import FeatureRequestError
from pygls.lsp.server import LanguageServer

from ..model.engine import CompletionQuery, Suggestion
from ..model.errors import Cancelled
from ..model.shell_check import ShellTools
from . import convert
from .context import ProjectContext
from .documents import Document, DocumentStore
from .hotswap import ModelHost
from .prefill import AheadOfTime
from .protocol import BashlspProtocol, FileWriter, MessageFramer, parse_body, read_stream_in_thread
from .retrieval import Retrieval
from .reuse import ShownSuggestions
from .settings import Settings, parse_settings
from .watchdog import LoopMonitor, Watchdog

logger = logging.getLogger("bashlsp.server")


@dataclass(eq=False)
class Ticket:
    """One running request: its stop flag (read by the engine) and its task."""

    key: tuple[str, str]  # (uri, kind)
    stop: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task | None = None
    msg_id: Any = None

    def cancel(self) -> None:
        self.stop.set()
        if self.task is not None and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()


class RequestTracker:
    """Newest request per (document, kind) wins; cancellations reach the model worker."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], Ticket] = {}
        self._by_message: dict[Any, Ticket] = {}
        self._active: set[Ticket] = set()

    def begin(self, uri: str, kind: str, msg_id: Any = None, supersede: bool = True) -> Ticket:
        key = (uri, kind)
        if supersede and (old := self._latest.get(key)) is not None:
            old.cancel()
        ticket = Ticket(key=key, task=asyncio.current_task(), msg_id=msg_id)
        if supersede:
            self._latest[key] = ticket
        self._active.add(ticket)
        if msg_id is not None:
            self._by_message[msg_id] = ticket
        return ticket

    def end(self, ticket: Ticket) -> None:
        if self._latest.get(ticket.key) is ticket:
            del self._latest[ticket.key]
        if ticket.msg_id is not None and self._by_message.get(ticket.msg_id) is ticket:
            del self._by_message[ticket.msg_id]
        self._active.discard(ticket)

    def cancel_message(self, msg_id: Any) -> None:
        if (ticket := self._by_message.get(msg_id)) is not None:
            ticket.cancel()

    def stop_all(self) -> None:
        for ticket in list(self._active):
            ticket.stop.set()

    def __len__(self) -> int:
        return len(self._active)


@dataclass
class KindStats:
    requests: int = 0
    model_seconds: float = 0.0
    tokens: int = 0
    decode_steps: int = 0  # decode steps (one token per sample each) and their time, prefill excluded
    decode_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "modelSeconds": round(self.model_seconds, 4),
            "tokens": self.tokens,
            "tokensPerSecond": round(self.tokens / self.model_seconds, 1) if self.model_seconds > 0 else None,
            "decodeSteps": self.decode_steps,
            "decodeSeconds": round(self.decode_seconds, 4),
            "decodeStepsPerSecond": round(self.decode_steps / self.decode_seconds, 1)
            if self.decode_seconds > 0
            else None,
        }


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class BashLanguageServer(LanguageServer):
    def __init__(
        self, base_settings: dict | None = None, version: str = "0", request_timeout: float | None = None
    ) -> None:
        super().__init__(
            "bashlsp",
            version,
            protocol_cls=BashlspProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.base_settings = base_settings or {}  # from the command line; editor settings override them
        self.settings, problems = parse_settings(self.base_settings)
        self.startup_problems = problems
        self.documents = DocumentStore()
        self.requests = RequestTracker()
        self.host = ModelHost(self.notify)
        self.watchdog = Watchdog(self.notify, request_timeout)  # every request answered in bounded time
        self.loop_monitor: LoopMonitor | None = None
        self.retrieval = Retrieval(self.notify, lambda: self.host.store.root)  # opens its indexes on first use
        self.context = ProjectContext(self.notify, lambda: self.settings.context.enable)  # other files' chunks
        self.shown = ShownSuggestions()  # the suggestion on screen, reused while the user types it
        self.ahead = AheadOfTime(self)  # pre-fills the model's cache while the editor is idle
        self.tool_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bashlsp-tools")
        self._tools: ShellTools | None = None
        self._tools_lock = threading.Lock()
        self.stats: dict[str, KindStats] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.exit_code = 0
        self._declined_logged: dict[str, str] = {}  # uri -> the reason already logged
        self._engine_errors_logged: set[str] = set()
        self._stopped: asyncio.Future | None = None

    # -- messages to the editor --------------------------------------------------------------------

    def notify(self, level: str, message: str, show: bool = False) -> None:
        """Log `message` (Python logging and window/logMessage), and show it if `show`. Any thread."""
        if self.loop is None or self.loop.is_closed():
            logger.log(_LEVELS[level], "%s", message)
            return
        if threading.get_ident() != self._loop_thread:
            try:
                self.loop.call_soon_threadsafe(self.notify, level, message, show)
            except RuntimeError:
                logger.log(_LEVELS[level], "%s", message)
            return
        logger.log(_LEVELS[level], "%s", message)
        if self.protocol.writer is None:
            return
        self.window_log_message(convert.log_params(level, message))
        if show:
            self.window_show_message(convert.show_params(level, message))

    def report_server_error(self, error: Exception, source) -> None:
        # Request errors already go back in the response; everything else is logged to the editor.
        if source is FeatureRequestError:
            return
        self.notify("error", f"bashlsp internal error ({source.__name__}): {error}")

    # -- settings ----------------------------------------------------------------------------------

    def apply_settings(self, data: Any, where: str) -> Settings:
        """Parse editor settings over the command-line ones; returns the settings they replace."""
        merged = _deep_merge(self.base_settings, data) if isinstance(data, dict) else data
        if merged is None:
            merged = self.base_settings
        settings, problems = parse_settings(merged)
        for problem in problems:
            self.notify("warning", f"bashlsp {where}: {problem}")
        old, self.settings = self.settings, settings
        return old

    # -- shell tools -------------------------------------------------------------------------------

    @property
    def tools(self) -> ShellTools:
        with self._tools_lock:  # first use from any thread: look the programs up once
            if self._tools is None:
                self._tools = ShellTools(warn=lambda m: self.notify("warning", f"bashlsp: {m}", False))
            return self._tools

    async def run_tool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.tool_pool, fn, *args)

    # -- documents ---------------------------------------------------------------------------------

    def served_document(self, uri: str) -> Document | None:
        """The document if the server serves it; None (logged once per reason) otherwise."""
        doc = self.documents.get(uri)
        if doc is None:
            return None
        if doc.declined is not None:
            if self._declined_logged.get(uri) != doc.declined:
                self._declined_logged[uri] = doc.declined
                self.notify("log", f"bashlsp does not serve {uri}: {doc.declined}")
            return None
        return doc

    def forget_document(self, uri: str) -> None:
        self.documents.close(uri)
        self._declined_logged.pop(uri, None)
        self.host.forget_document(uri)

    # -- the model ---------------------------------------------------------------------------------

    def begin(self, uri: str, kind: str, supersede: bool = True) -> Ticket:
        return self.requests.begin(uri, kind, msg_id=self.protocol.msg_id, supersede=supersede)

    async def complete(self, ticket: Ticket, query: CompletionQuery) -> list[Suggestion]:
        """Run the model for `query` on the worker thread; [] when no model is loaded."""
        kind = f"{query.mode}" + ("" if query.num_samples == 1 else f"x{query.num_samples}")
        stats = self.stats.setdefault(kind, KindStats())

        self.ahead.yield_to_request()  # a pre-fill queued or running on the worker stops for this

        def job() -> list[Suggestion]:
            if ticket.stop.is_set():
                raise Cancelled("request cancelled before it started")
            engine = self.host.engine
            if engine is None:
                return []
            started = time.perf_counter()
            try:
                completion = engine.complete(query, should_stop=ticket.stop.is_set)
            except Cancelled:
                raise
            except Exception as exc:  # a model failure must not fail the editor's request
                self._engine_failed(exc)
                return []
            suggestions = completion.suggestions
            stats.requests += 1
            stats.model_seconds += time.perf_counter() - started
            stats.tokens += max((s.tokens for s in suggestions), default=0)
            stats.decode_steps += completion.stats.decoded
            stats.decode_seconds += completion.stats.decode_s
            return suggestions

        try:
            return await asyncio.get_running_loop().run_in_executor(self.host.worker, job)
        except asyncio.CancelledError:
            ticket.stop.set()
            raise

    def _engine_failed(self, exc: Exception) -> None:
        """Worker thread: log a model failure to the editor, once per kind of failure."""
        what = f"{type(exc).__name__}: {exc}"[:300]
        if what not in self._engine_errors_logged:
            self._engine_errors_logged.add(what)
            logger.exception("the model failed")
            self.notify("error", f"bashlsp: the model failed on a request ({what}); the answer is empty")

    def info(self) -> dict:
        info = self.host.info()
        info["stats"] = {kind: s.as_dict() for kind, s in sorted(self.stats.items())}
        info["documents"] = len(self.documents)
        info["inFlight"] = len(self.protocol._request_futures)  # handlers not yet finished (this one included)
        info["pid"] = os.getpid()
        info["projectContext"] = {"reusedAnswers": self.shown.hits, "prefills": self.ahead.done, **self.context.info()}
        return info

    # -- running -----------------------------------------------------------------------------------

    def _deliver(self, data: Any) -> None:
        try:
            self.protocol.receive(data)
        except SystemExit as exc:  # pygls' `exit` handler calls sys.exit: end the session here
            self._finish(exc.code if isinstance(exc.code, int) else 0)

    def _eof(self) -> None:
        self._finish(0 if self.protocol._shutdown else 1)

    def _finish(self, code: int) -> None:
        if self._stopped is not None and not self._stopped.done():
            self.exit_code = code
            self._stopped.set_result(None)

    async def _serve(self, start) -> None:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.loop_monitor = LoopMonitor(self.loop, self._loop_thread)
        self.loop_monitor.start()
        self._stopped = self.loop.create_future()
        await start()
        await self._stopped

    def start_io(self, stdin=None, stdout=None) -> None:  # noqa: D401 - pygls' name
        """Serve over stdin/stdout. Stray prints (ours or a library's) go to stderr, never into the
        protocol stream: fd 1 is pointed at stderr and the protocol writes to a copy of it."""
        in_fd = stdin.fileno() if stdin is not None else sys.stdin.fileno()
        if stdout is None:
            out_fd = os.dup(sys.stdout.fileno())
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
            sys.stdout = sys.stderr
            stdout = os.fdopen(out_fd, "wb", buffering=0)
        self.protocol.set_writer(FileWriter(stdout))

        async def start() -> None:
            read_stream_in_thread(in_fd, self.loop, self._deliver, self._eof)

        self._run(start)

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one client on host:port (the process ends when it disconnects)."""

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.protocol.writer is not None:
                writer.close()  # one editor per server
                return
            self.protocol.set_writer(writer)
            framer = MessageFramer()
            while not self._stopped.done() and (chunk := await reader.read(1 << 20)):
                for body in framer.feed(chunk):
                    self._deliver(parse_body(body))
            self._eof()

        async def start() -> None:
            server = await asyncio.start_server(connection, host, port)
            addresses = ", ".join(str(s.getsockname()) for s in server.sockets)
            print(f"bashlsp: listening on {addresses}", file=sys.stderr, flush=True)

        self._run(start)

    def _run(self, start) -> None:
        try:
            asyncio.run(self._serve(start))
        except KeyboardInterrupt:
            self.exit_code = 130
        finally:
            self.close()

    def close(self) -> None:
        self.requests.stop_all()
        if self.loop_monitor is not None:
            self.loop_monitor.stop()
        self.ahead.close()
        self.context.close()
        self.host.close()
        self.tool_pool.shutdown(wait=False, cancel_futures=True)


_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "log": logging.INFO,
    "debug": logging.DEBUG,
}
