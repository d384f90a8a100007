"""Command examples for a comment: the indexes the server searches, opened when first needed.

Three sources, best matches first, one command once (model/examples.py `search_all`):

- the shipped index (tldr, cheat, eg, man-page EXAMPLES), `bashlsp.model` package data;
- the personal index `bashlsp-train` writes into the checkpoint store (`examples/personal.sqlite`,
  the user's own comment -> code blocks, redacted), re-opened when the trainer replaces it;
- the open workspace documents' comment -> code blocks (redacted here too), rebuilt in memory
  when a document changed since the last search, at most MAX_WORKSPACE_DOCUMENTS documents.

Nothing is opened at start-up (cold start and memory stay as they were); the first code action
on a comment opens the indexes. An index that is missing or corrupt is reported once and left
out: the action still works from the model and the other indexes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ..model.errors import ExampleIndexError
from ..model.examples import (
    Example,
    ExampleIndex,
    comment_code_pairs,
    personal_index_path,
    search_all,
    shipped_index_path,
)
from ..model.redact import redact

FEW_SHOT = 3  # examples ahead of the document in the prompt
ACTIONS = 3  # "Insert example" actions offered beside "Generate script from comment"
MAX_WORKSPACE_DOCUMENTS = 50
# The action's query: the comment block, at most this much of it (a 100 KB comment is cut).
MAX_QUERY_CHARS = 2_000


def comment_text(doc, block) -> str:
    """The words of a comment block (generate.CommentBlock), for the query."""
    lines = (doc.line_text(i).strip().lstrip("#").strip() for i in range(block.first, block.last + 1))
    return " ".join(line for line in lines if line)[:MAX_QUERY_CHARS]


def example_title(example: Example) -> str:
    """'Insert example: find / -perm -2000 — tldr find' (the command's first line, shortened)."""
    command = example.command.split("\n", 1)[0].strip()
    command = command if len(command) <= 60 else command[:57] + "..."
    return f"Insert example: {command} — {example.label()}"


def example_text(example: Example, indent: str) -> str:
    """What the action inserts below the comment: where the example comes from and what it does
    (a comment: the user may have asked for something slightly different), then the command."""
    lines = [f"{indent}# {example.label()}: {example.description}"]
    lines += [f"{indent}{line}" for line in example.command.split("\n")]
    return "\n".join(lines) + "\n"


class Retrieval:
    """Thread-safe: the code-action handler (event loop) and the generate path (tools pool) search."""

    def __init__(
        self,
        notify: Callable[[str, str], None],
        store_root: Callable[[], Path | None],
        shipped: Path | None = None,
    ) -> None:
        self._notify = notify
        self._store_root = store_root  # the checkpoint store the server follows now
        self._shipped_path = shipped if shipped is not None else shipped_index_path()
        self._shipped: ExampleIndex | None = None
        self._shipped_tried = False
        self._personal: tuple[ExampleIndex, int] | None = None  # (index, mtime_ns of its file)
        self._workspace: ExampleIndex | None = None
        self._workspace_pairs: dict[str, tuple[int, list[Example]]] = {}  # uri -> (version, its blocks)
        self._workspace_entries: list[Example] = []
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def _report(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            self._notify("warning", f"bashlsp: {message}; Generate script from comment goes on without it")

    def _shipped_index(self) -> ExampleIndex | None:
        if not self._shipped_tried and self._shipped_path is not None:
            self._shipped_tried = True
            try:
                self._shipped = ExampleIndex(self._shipped_path)
                if self._shipped.warning:  # a bad reranker file: the index answers in bm25's order
                    self._report(self._shipped.warning)
            except ExampleIndexError as exc:
                self._report(str(exc))
        return self._shipped

    def _personal_index(self) -> ExampleIndex | None:
        root = self._store_root()
        if root is None:
            return None
        path = personal_index_path(root)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            self._personal = None  # not written yet: nothing to report
            return None
        if self._personal is None or self._personal[0].path != path or self._personal[1] != mtime:
            try:
                self._personal = (ExampleIndex(path), mtime)
            except ExampleIndexError as exc:
                self._report(str(exc))
                self._personal = None
        return self._personal[0] if self._personal else None

    def _workspace_index(self, documents: list) -> ExampleIndex | None:
        """The open documents' blocks in memory. A document is redacted and read again only when
        its version changed, and the index is rebuilt only when the blocks changed (typing inside
        code changes the version on every keystroke, the blocks far less often)."""
        pairs: dict[str, tuple[int, list[Example]]] = {}
        for doc in documents[:MAX_WORKSPACE_DOCUMENTS]:
            known = self._workspace_pairs.get(doc.uri)
            if known is None or known[0] != doc.version:
                text, _ = redact(doc.text)
                known = (doc.version, comment_code_pairs(text, "workspace", Path(doc.uri).name))
            pairs[doc.uri] = known
        self._workspace_pairs = pairs
        entries = [entry for _, found in pairs.values() for entry in found]
        if entries != self._workspace_entries:
            self._workspace = ExampleIndex.in_memory(entries, "workspace") if entries else None
            self._workspace_entries = entries
        return self._workspace

    def search(self, comment: str, limit: int, documents: list | None = None) -> list[Example]:
        """The best `limit` examples for `comment` from every index that works."""
        with self._lock:
            indexes = [self._workspace_index(documents or []), self._personal_index(), self._shipped_index()]
            try:
                return search_all([index for index in indexes if index is not None], comment[:MAX_QUERY_CHARS], limit)
            except ExampleIndexError as exc:
                self._report(str(exc))
                return []


def script_for_comment(comment: str, loaded, store_root: Path | None, seed: int = 0) -> tuple:
    """`bashlsp generate --from-comment`: (Generated, examples) for a one-comment script, through
    the action's path: the examples ahead of the document for a model trained on them, the engine in generate mode, the
    tries of model/generation.py with `bash -n` and shellcheck. Nothing is executed."""
    from ..model.engine import Engine
    from ..model.examples import few_shot_prompt, script_start, uses_examples
    from ..model.generation import generate_with_engine
    from ..model.shell_check import ShellTools

    comment = " ".join(comment.split())[:MAX_QUERY_CHARS]
    notes: list[str] = []
    found = Retrieval(lambda level, message: notes.append(message), lambda: store_root).search(comment, ACTIONS)
    for note in notes:
        print(note, file=sys.stderr)
    prompt, start = f"#!/bin/bash\n# {comment}\n", ""
    if uses_examples(loaded.meta):  # as the server's action: only a model trained on such prompts
        prompt, start = few_shot_prompt(found[:FEW_SHOT], prompt), script_start(found[:FEW_SHOT], comment)
    engine = Engine(loaded, seed=seed)
    generated = generate_with_engine(engine, ShellTools(), prompt, "bashlsp-generate-from-comment", start=start)
    return generated, found
