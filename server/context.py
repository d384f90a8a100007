"""Project context for a completion: chunks of other files, most similar to the lines before
the cursor, that go ahead of the document's prompt (format and similarity: model/context.py).

Two sources:
- the workspace index (server/workspace.py): the shell scripts under the workspace folders;
- `RecentChunks`, a ring buffer of chunks of the documents opened, edited and saved in this
  session (llama.vim's design): the text the user works on now, including what is not saved.

The choice changes only when it must, so the engine's KV cache of the chunks survives typing:
it is made again only when the query (the complete lines before the cursor line) changes,
and then the chunks already chosen stay while they score at least KEEP_RATIO of the best.
The document is never context for itself: neither its file on disk nor its own recent chunks.
The chunks a query found, chosen or not, are also where ghost text's copies come from
(`ProjectContext.copy`, server/lookup.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..model.context import CHUNK_LINES, MAX_CHUNKS, MIN_SIMILARITY, chunk_text, jaccard, query_text, words
from ..model.redact import redact
from .documents import uri_path
from .lookup import Copy, copy_suggestions
from .workspace import WorkspaceIndex

RING_CHUNKS = 16  # chunks of recent documents kept (llama.vim: 16 of 64 lines)
EVICT_SIMILARITY = 0.9  # a new chunk evicts one whose lines are this similar (llama.vim: 0.9)
KEEP_RATIO = 0.8  # chosen chunks stay while their score is at least this share of the best choice's
INDEX_CANDIDATES = 8  # best chunks taken from the workspace index before the final choice

Chunks = tuple[tuple[str, str], ...]  # (path, text) pairs, most similar first: CompletionQuery.context


@dataclass(frozen=True)
class ContextChunk:
    path: str  # as the `# file:` line shows it
    text: str
    origin: str  # the file on disk (real path) or the document's uri it came from
    words: frozenset[str]


def _line_set(text: str) -> frozenset[str]:
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


class RecentChunks:
    """The last RING_CHUNKS chunks of recently opened, edited and saved documents."""

    def __init__(self, capacity: int = RING_CHUNKS) -> None:
        self.capacity = capacity
        self.chunks: list[ContextChunk] = []

    def add(self, origin: str, path: str, lines: Sequence[str], around: int) -> ContextChunk | None:
        """Add the chunk of `lines` centred on line `around`; a chunk whose lines are very
        similar to the new one's is dropped (the same place edited again), then the oldest."""
        start = max(0, min(around - CHUNK_LINES // 2, len(lines) - CHUNK_LINES))
        text = redact(chunk_text(lines, start, start + CHUNK_LINES))[0]
        chunk_words = words(text)
        if not chunk_words:
            return None
        chunk = ContextChunk(path, text, origin, chunk_words)
        new_lines = _line_set(text)
        self.chunks = [c for c in self.chunks if jaccard(_line_set(c.text), new_lines) <= EVICT_SIMILARITY]
        self.chunks.append(chunk)
        del self.chunks[: -self.capacity]
        return chunk


class ProjectContext:
    """What the server keeps for project context: the index, the ring, each document's choice."""

    def __init__(self, notify: Callable[[str, str, bool], None], enabled: Callable[[], bool] = lambda: True) -> None:
        """`enabled`: the setting (context.enable), read at each use: when it is off nothing is
        chosen, and the workspace is not read until it is on."""
        self.index = WorkspaceIndex(notify)
        self.recent = RecentChunks()
        self.enabled = enabled
        self._folders: list[str] = []
        self._choices: dict[str, tuple[str, list[tuple[float, ContextChunk]]]] = {}  # uri -> (query, choice)
        self._candidates: dict[str, tuple[str, ...]] = {}  # uri -> texts of its query's candidates, for copies
        self._edits: dict[str, tuple[object, int]] = {}  # uri -> (document, line of its last edit), not in the ring yet
        self._origins: dict[str, str] = {}
        self.copies = 0  # ghost texts answered with a copy (server/completion.py)
        self.judged = 0  # weaker copies the model judged (server/completion.py), taken or not

    # -- what the editor does

    def start(self, folders: Sequence[str]) -> None:
        """Index the workspace folders in the background (when the setting allows it)."""
        self._folders = list(folders)
        if self.enabled():
            self.index.start(self._folders)

    def close(self) -> None:
        self.index.close()

    def opened(self, doc) -> None:
        self._add(doc, 0)  # the head of a script: its settings, variables and functions

    def changed(self, doc, line: int) -> None:
        """A change at `line`: its chunk enters the ring when the user moves on (edits elsewhere,
        saves, closes, or asks for a completion in another document)."""
        pending = self._edits.get(doc.uri)
        if pending is not None and abs(pending[1] - line) > CHUNK_LINES // 2:
            self._add(doc, pending[1])
        self._edits[doc.uri] = (doc, line)

    def saved(self, doc) -> None:
        pending = self._edits.pop(doc.uri, None)
        self._add(doc, pending[1] if pending else 0)

    def closed(self, uri: str) -> None:
        pending = self._edits.pop(uri, None)
        if pending is not None:
            self._add(pending[0], pending[1])
        self._choices.pop(uri, None)
        self._candidates.pop(uri, None)
        self._origins.pop(uri, None)

    def _add(self, doc, line: int) -> None:
        if doc.declined is None:
            self.recent.add(self._origin(doc.uri), self._shown_path(doc.uri), doc.lines, line)

    def _origin(self, uri: str) -> str:
        origin = self._origins.get(uri)
        if origin is None:
            origin = os.path.realpath(uri_path(uri)) if uri.startswith("file:") else uri
            self._origins[uri] = origin
        return origin

    def _shown_path(self, uri: str) -> str:
        origin = self._origin(uri)
        for root in self.index.roots:
            if origin.startswith(root.rstrip("/") + "/"):
                return origin[len(root.rstrip("/")) + 1 :]
        return os.path.basename(uri_path(uri)) or uri

    def info(self) -> dict:
        summary = self.index.snapshot.summary
        return {
            "enabled": self.enabled(),
            "workspaceScripts": summary.get("scripts", 0),
            "workspaceChunks": summary.get("chunks", 0),
            "recentChunks": len(self.recent.chunks),
            "copiedAnswers": self.copies,
            "judgedCopies": self.judged,
        }

    # -- the choice for a completion

    def for_cursor(self, uri: str, prefix: str) -> Chunks:
        """The chunks to put ahead of the prompt for a cursor after `prefix` in `uri`."""
        if not self.enabled():
            return ()
        if self._folders and self.index.building is None:  # the setting was turned on since `start`
            self.index.start(self._folders)
        for other in [u for u in self._edits if u != uri]:  # the user moved to another document
            doc, line = self._edits.pop(other)
            self._add(doc, line)
        query = query_text(prefix)
        previous = self._choices.get(uri)
        if previous is not None and previous[0] == query:
            return tuple((c.path, c.text) for _, c in previous[1])
        query_words = words(query)
        origin = self._origin(uri)
        candidates: list[tuple[float, ContextChunk]] = []
        snapshot = self.index.snapshot
        for score, i in snapshot.scores(query_words, INDEX_CANDIDATES, exclude_file=origin):
            file, path, text = snapshot.chunk(i)
            candidates.append((score, ContextChunk(path, text, file, words(text))))
        for chunk in self.recent.chunks:
            if chunk.origin != origin:
                candidates.append((jaccard(query_words, chunk.words), chunk))
        self._candidates[uri] = tuple(c.text for _, c in sorted(candidates, key=lambda item: -item[0]))
        choice = _best(candidates)
        if previous is not None and previous[1]:
            kept = [(jaccard(query_words, c.words), c) for _, c in previous[1]]
            if all(score >= MIN_SIMILARITY for score, _ in kept) and sum(s for s, _ in kept) >= KEEP_RATIO * sum(
                s for s, _ in choice
            ):
                choice = previous[1]
        self._choices[uri] = (query, choice)
        return tuple((c.path, c.text) for _, c in choice)

    def copy(self, uri: str, prefix: str, suffix: str) -> Copy | None:
        """The copy suggestion (server/lookup.py) for a cursor between `prefix` and `suffix` in
        `uri`: from the document and the chunks its query found (the chosen ones and the other
        candidates: a line is worth copying from a chunk that is not worth the prompt's room)."""
        found = self.copy_choices(uri, prefix, suffix, 1)
        return found[0] if found else None

    def copy_choices(self, uri: str, prefix: str, suffix: str, k: int) -> list[Copy]:
        """The `k` best distinct copies from the same sources, best first."""
        self.for_cursor(uri, prefix)
        return copy_suggestions(prefix, suffix, self._candidates.get(uri, ()) if self.enabled() else (), k)


def _best(candidates: list[tuple[float, ContextChunk]]) -> list[tuple[float, ContextChunk]]:
    """The MAX_CHUNKS best candidates over MIN_SIMILARITY, best first, without repeated text."""
    chosen: list[tuple[float, ContextChunk]] = []
    for score, chunk in sorted(candidates, key=lambda item: -item[0]):
        if score < MIN_SIMILARITY or len(chosen) == MAX_CHUNKS:
            break
        if all(chunk.text != c.text for _, c in chosen):
            chosen.append((score, chunk))
    return chosen
