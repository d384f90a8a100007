"""The bashlsp language server: state shared by the handlers, and how requests reach the model.

Requests run as `async def` handlers on the event loop. Model work goes to the one model worker
thread (`ModelHost.complete`, hotswap.py) with a stop flag per request (requests.py), polled by
the engine between decode steps. A request stops when the editor cancels it ($/cancelRequest:
pygls cancels the task at its next await, which answers -32800) or when a newer request of the
same kind arrives for the same document (newest wins: the older one is stopped and answers
-32800 too). The features get `self.services` (services.py), never the server itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from typing import Any

from lsprotocol import types
from pygls.exceptions import FeatureRequestError
from pygls.lsp.server import LanguageServer

from . import convert
from .context import ProjectContext
from .documents import Document, DocumentStore
from .hotswap import ModelHost
from .prefill import AheadOfTime
from .protocol import BashlspProtocol, FileWriter, MessageFramer, parse_body, read_stream_in_thread
from .requests import RequestTracker
from .retrieval import Retrieval
from .reuse import ShownSuggestions
from .services import Services, ToolRunner
from .settings import Settings, parse_settings
from .watchdog import LoopMonitor, Watchdog

logger = logging.getLogger("bashlsp.server")


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
        self.requests = RequestTracker(lambda: self.protocol.msg_id)
        self.host = ModelHost(self.notify)
        self.watchdog = Watchdog(self.notify, request_timeout)  # every request answered in bounded time
        self.loop_monitor: LoopMonitor | None = None
        self.retrieval = Retrieval(self.notify, lambda: self.host.store.root)  # opens its indexes on first use
        self.context = ProjectContext(self.notify, lambda: self.settings.context.enable)  # other files' chunks
        self.shown = ShownSuggestions()  # the suggestion on screen, reused while the user types it
        self.ahead = AheadOfTime(self)  # pre-fills the model's cache while the editor is idle
        self.tools = ToolRunner(self.notify)
        # What completion.py and generate.py use, typed: they never call back into the server.
        self.services = Services(
            self.host, self.requests, self.tools, self.retrieval, self.context, self.shown, self.documents, self.notify
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.exit_code = 0
        self._declined_logged: dict[str, str] = {}  # uri -> the reason already logged
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

    def info(self) -> dict:
        info = self.host.info()
        info["documents"] = len(self.documents)
        info["inFlight"] = self.protocol.pending_handlers  # handlers not yet finished (this one included)
        info["pid"] = os.getpid()
        info["projectContext"] = {
            "reusedAnswers": self.shown.hits,
            "prefills": self.host.prefills,
            "rememberedAnswers": self.host.remembered.hits,  # answered ahead of time (or asked again)
            **self.context.info(),
        }
        return info

    # -- running -----------------------------------------------------------------------------------

    def _deliver(self, data: Any) -> None:
        try:
            self.protocol.receive(data)
        except SystemExit as exc:  # pygls' `exit` handler calls sys.exit: end the session here
            self._finish(exc.code if isinstance(exc.code, int) else 0)

    def _eof(self) -> None:
        self._finish(0 if self.protocol.shutdown_received else 1)

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
        self.tools.close()


_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "log": logging.INFO,
    "debug": logging.DEBUG,
}
