"""What the features (completion.py, generate.py) use of the server, typed.

A feature gets a `Services` and the request's `Settings` and never calls back into the
LanguageServer: model work goes through `host.complete` inside `requests.track`, programs,
symbol scans and index searches through `tools.run`, messages to the editor through `notify`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..model.shell_check import ShellTools
from .context import ProjectContext
from .documents import DocumentStore
from .hotswap import ModelHost, Notify
from .requests import RequestTracker
from .retrieval import Retrieval
from .reuse import ShownSuggestions


class ToolRunner:
    """`bash -n`, shellcheck and example searches on a small pool of their own, so the event loop
    never waits for a subprocess or an index (and the model worker never waits behind them)."""

    def __init__(self, notify: Notify, workers: int = 2) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bashlsp-tools")
        self._notify = notify
        self._shell: ShellTools | None = None
        self._lock = threading.Lock()

    @property
    def shell(self) -> ShellTools:
        """bash and shellcheck, looked up and tried once on first use (from any thread)."""
        with self._lock:
            if self._shell is None:
                self._shell = ShellTools(warn=lambda message: self._notify("warning", f"bashlsp: {message}", False))
            return self._shell

    def warm(self) -> None:
        """Look the programs up now, on the pool, so the first check does not pay for it."""
        self.pool.submit(lambda: self.shell)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Services:
    host: ModelHost  # the resident model: complete(query, should_stop), may_serve
    requests: RequestTracker  # track(uri, kind): newest request per document wins
    tools: ToolRunner
    retrieval: Retrieval  # command examples for generate-from-comment
    context: ProjectContext  # chunks of the project's other files for the prompt
    shown: ShownSuggestions  # the ghost text on screen, reused while the user types it
    documents: DocumentStore
    notify: Notify  # (level, message, show) to the editor's log, from any thread
