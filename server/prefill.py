"""Pre-fill ahead of time: while the editor is idle, fill a document's KV cache for the cursor
the user is likely to type at next, so their first request pre-fills a token or two instead of
the whole prompt (a 20 KB script is ~800 tokens: ~170 ms cold on 2 CPU cores). The ghost text
for that cursor is decoded too and remembered (server/hotswap.py's `Remembered`): a request at
that cursor then gets it without running the model. Pre-filling alone left the decode in the
request: 4-8 steps of ~4 ms each at a 750-token prompt, 60-90 ms under load at a line start in
the middle of a script (docs/benchmarks.md, issue 14).

When: a document opens (the cursor is not known yet: the end of the document, where a script
grows), the editor is idle IDLE_S after a change (the cursor is after the change), and a code
action request names an empty range (editors ask for code actions as the cursor moves, so it
says where the cursor is).

Lowest priority: `ModelHost.prefill` runs it on the model worker between requests, and every
request stops it (Engine.prefill polls the stop flag between 32-token chunks, Engine.complete
before every decode step), so a request waits for one chunk or step at most. A newer pre-fill
replaces an older one that has not started.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types

from .completion import Cursor, inline_query
from .documents import split_lines

IDLE_S = 0.25  # quiet time after a change before the cache is filled for its cursor


class AheadOfTime:
    def __init__(self, ls) -> None:
        self.ls = ls
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def schedule(self, uri: str, position: types.Position | None, delay: float = IDLE_S) -> None:
        """Pre-fill for a cursor at `position` (None: the end of the document) after `delay` s
        without another change (event loop)."""
        self.cancel(uri)
        loop = self.ls.loop
        if loop is None or not self.ls.host.may_serve:
            return
        self._timers[uri] = loop.call_later(delay, self._start, uri, position)

    def cancel(self, uri: str) -> None:
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for uri in list(self._timers):
            self.cancel(uri)

    def _start(self, uri: str, position: types.Position | None) -> None:
        self._timers.pop(uri, None)
        ls = self.ls
        doc = ls.documents.get(uri)
        if doc is None or doc.declined is not None or ls.host.engine is None:
            return
        if position is None:
            last = len(doc.lines) - 1
            position = doc.position(last, len(doc.line_text(last)))
        cursor = Cursor.at(doc, position)
        settings = ls.settings
        query = inline_query(ls.context, settings, uri, cursor.prefix(), cursor.suffix())
        # The ghost text's answer too, when the editor asks for ghost text and the answer is
        # greedy (one answer per query): the first request after the idle time then needs no
        # model time at all. The prompt alone serves the popup as well (one cache per document).
        ls.host.prefill(query, answer=settings.inlineCompletion.enable and settings.temperature <= 0)


def cursor_after(doc, change) -> types.Position | None:
    """Where the cursor is after an incremental change already applied to `doc` (the end of the
    inserted text), or None for a full-text change. The text before the change's start is
    unchanged, so its start converts to a column of the new document."""
    if not isinstance(change, types.TextDocumentContentChangePartial) or change.range is None:
        return None
    line, column = doc.clamp(change.range.start)
    inserted = split_lines(change.text)
    if len(inserted) == 1:
        column += len(change.text)
    else:
        line, column = line + len(inserted) - 1, len(inserted[-1])
    line = min(line, len(doc.lines) - 1)
    return doc.position(line, min(column, len(doc.line_text(line))))
