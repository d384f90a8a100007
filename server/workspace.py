"""The workspace index: the shell scripts under the editor's workspace folders, cut into chunks
(model/context.py) and searchable by Jaccard similarity, for project context in completions.

Building it reads files, so it never runs on the event loop or beside the model in the server's
process: `WorkspaceIndex.start` runs `build_index` in a child process at the lowest CPU
priority (a thread would hold the GIL the model worker and the event loop need; nice alone does
not stop that). The child sends back an `IndexSnapshot` and exits; the server then answers
`scores` from it in a millisecond or two.

Bounds, so that any folder gives bounded work and one log line:
- entries looked at (MAX_ENTRIES), scripts kept (MAX_FILES), bytes per script (MAX_FILE_BYTES)
  and in all (MAX_TOTAL_BYTES), and seconds (MAX_SECONDS): the walk stops at the first reached;
- symbolic links are never followed (a link can loop or lead out of the folder), `.git` and
  what the folders' `.gitignore` files ignore (nested ones too, through `pathspec`) are skipped;
- binary files, files that are not shell (model/shell.py), unreadable files and folders, and
  files or folders that vanish while the walk runs are counted and skipped.
Secrets are redacted (model/redact.py) before a script's text enters the index.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from ..model.context import chunk_offsets, hashes_of, word_hashes
from ..model.redact import redact
from ..model.shell import (
    HEAD_BYTES,
    LIBRARY_EXTENSIONS,
    MAX_USER_SCRIPT_BYTES,
    SHELL_EXTENSIONS,
    SKIPPED_DIR_NAMES,
    STARTUP_FILE_NAMES,
    shell_reason,
)

MAX_ENTRIES = 50_000  # directory entries looked at; a 200,000-file tree stops here
MAX_FILES = 5_000  # shell scripts indexed
MAX_FILE_BYTES = MAX_USER_SCRIPT_BYTES  # larger scripts are skipped (generated, or data), as bashlsp-train does
MAX_TOTAL_BYTES = 24 * 1024 * 1024  # script text kept in the index, in all
MAX_SECONDS = 10.0
MAX_GITIGNORE_BYTES = 64 * 1024
SKIPPED_DIRS = SKIPPED_DIR_NAMES  # tool folders, never walked (as bashlsp-train skips them)


@dataclass
class IndexSnapshot:
    """An immutable index: the scripts' texts, their chunks, and an inverted index from word
    hashes to chunks (CSR arrays) so a query costs a few numpy operations, not a scan."""

    roots: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # absolute path of each indexed script
    names: list[str] = field(default_factory=list)  # its path as shown: relative to its folder
    texts: list[str] = field(default_factory=list)  # its redacted text
    chunk_file: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    chunk_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # character offsets in the text
    chunk_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    chunk_words: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # distinct words of each chunk
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted distinct word hashes
    offsets: np.ndarray = field(
        default_factory=lambda: np.zeros(1, np.int64)
    )  # postings of keys[i]: offsets[i]:offsets[i+1]
    postings: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # chunk ids
    summary: dict = field(default_factory=dict)

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_file)

    def chunk(self, i: int) -> tuple[str, str, str]:
        """(absolute file, shown path, text) of chunk i."""
        f = int(self.chunk_file[i])
        return self.files[f], self.names[f], self.texts[f][int(self.chunk_start[i]) : int(self.chunk_end[i])]

    def nbytes(self) -> int:
        """Memory held by the index, roughly (text as UTF-8 plus the arrays)."""
        arrays = (self.chunk_file, self.chunk_start, self.chunk_end, self.chunk_words, self.keys, self.offsets)
        return sum(len(t) for t in self.texts) + sum(a.nbytes for a in arrays) + self.postings.nbytes

    def scores(
        self, query_words: frozenset[str], limit: int, exclude_file: str | None = None
    ) -> list[tuple[float, int]]:
        """The `limit` best (Jaccard similarity, chunk id) for a query's words, best first;
        chunks of `exclude_file` (the document's own file on disk) are left out."""
        if not self.num_chunks or not query_words:
            return []
        hashes = hashes_of(query_words)
        at = np.searchsorted(self.keys, hashes)
        found = at < len(self.keys)
        found[found] = self.keys[at[found]] == hashes[found]
        at = at[found]
        if not len(at):
            return []
        hits = np.concatenate([self.postings[self.offsets[i] : self.offsets[i + 1]] for i in at.tolist()])
        common = np.bincount(hits, minlength=self.num_chunks).astype(np.float32)
        similarity = common / (self.chunk_words + len(hashes) - common)
        if exclude_file is not None and exclude_file in self._file_ids():
            similarity[self.chunk_file == self._file_ids()[exclude_file]] = 0.0
        limit = min(limit, self.num_chunks)
        best = np.argpartition(similarity, -limit)[-limit:]
        best = best[np.argsort(-similarity[best], kind="stable")]
        return [(float(similarity[i]), int(i)) for i in best if similarity[i] > 0]

    def _file_ids(self) -> dict[str, int]:
        ids = self.__dict__.get("_ids")
        if ids is None:
            ids = self.__dict__["_ids"] = {path: i for i, path in enumerate(self.files)}
        return ids


# -- building (in a child process) -------------------------------------------------------------


@dataclass
class _Walk:
    """Counts of what the walk met, for the one log line."""

    entries: int = 0
    scripts: int = 0
    bytes: int = 0
    links: int = 0
    ignored: int = 0
    binary_or_not_shell: int = 0
    too_large: int = 0
    unreadable: int = 0  # files and folders that could not be read, or vanished while we looked
    limit: str | None = None  # the bound that stopped the walk


def _gitignore(directory: str, walk: _Walk):
    """The GitIgnoreSpec of `directory`/.gitignore, or None."""
    from pathspec import GitIgnoreSpec

    path = os.path.join(directory, ".gitignore")
    try:
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_GITIGNORE_BYTES:
            return None
        with open(path, encoding="utf-8", errors="replace") as f:
            return GitIgnoreSpec.from_lines(f.read().splitlines())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # unreadable, or a pattern pathspec rejects
        walk.unreadable += 1
        return None


def _ignored(rel: str, specs: list[tuple[str, object]]) -> bool:
    """Whether the path `rel` (relative to the folder, '/'-separated, a trailing '/' for a
    folder) is ignored by one of the .gitignore specs above it ((folder, spec) pairs)."""
    for base, spec in specs:
        if base and not rel.startswith(base + "/"):
            continue
        if spec.match_file(rel[len(base) + 1 :] if base else rel):
            return True
    return False


def _may_be_shell(name: str) -> bool:
    """Whether a file's name allows it to be shell (only those are opened: reading the head of
    every file in a large tree would cost more than the rest of the walk)."""
    suffix = PurePath(name).suffix.lower()
    return suffix in SHELL_EXTENSIONS or suffix in LIBRARY_EXTENSIONS or name in STARTUP_FILE_NAMES


def _read_script(path: str, name: str, size: int, walk: _Walk) -> str | None:
    """The text of the file if it is a shell script within the bounds (its head decides first)."""
    if size > MAX_FILE_BYTES:
        walk.too_large += 1
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            if shell_reason(PurePath(name), head) is None:
                walk.binary_or_not_shell += 1
                return None
            data = head + f.read(MAX_FILE_BYTES + 1 - len(head))
    except OSError:
        walk.unreadable += 1
        return None
    if len(data) > MAX_FILE_BYTES:  # it grew since we looked
        walk.too_large += 1
        return None
    return data.decode("utf-8", errors="replace")


def _walk(roots: Sequence[str], max_seconds: float, walk: _Walk):
    """(absolute path, path relative to its folder, text) of each shell script under `roots`."""
    deadline = time.monotonic() + max_seconds
    for root in roots:
        root_specs: list[tuple[str, object]] = []
        stack: list[tuple[str, str, list]] = [(root, "", root_specs)]
        while stack:
            directory, rel_dir, specs = stack.pop()
            spec = _gitignore(directory, walk)
            if spec is not None:
                specs = [*specs, (rel_dir, spec)]
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:  # unreadable, or deleted while we walk
                walk.unreadable += 1
                continue
            subdirs = []
            for entry in entries:
                walk.entries += 1
                if walk.entries > MAX_ENTRIES:
                    walk.limit = f"{MAX_ENTRIES:,} entries"
                    return
                if time.monotonic() > deadline:
                    walk.limit = f"{max_seconds:g} s"
                    return
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    if entry.is_symlink():
                        walk.links += 1
                        continue
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not is_dir and not entry.is_file(follow_symlinks=False):
                        walk.binary_or_not_shell += 1  # a socket, a fifo, a device: never opened (a fifo blocks)
                        continue
                except OSError:
                    walk.unreadable += 1
                    continue
                if is_dir and entry.name in SKIPPED_DIRS:
                    continue
                if _ignored(rel + "/" if is_dir else rel, specs):
                    walk.ignored += 1
                    continue
                if is_dir:
                    subdirs.append((entry.path, rel, specs))
                    continue
                if not _may_be_shell(entry.name):
                    continue
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    walk.unreadable += 1
                    continue
                text = _read_script(entry.path, entry.name, size, walk)
                if text is None:
                    continue
                if walk.bytes + len(text) > MAX_TOTAL_BYTES:
                    walk.limit = f"{MAX_TOTAL_BYTES // (1024 * 1024)} MB of scripts"
                    return
                walk.scripts += 1
                walk.bytes += len(text)
                yield entry.path, rel, text
                if walk.scripts >= MAX_FILES:
                    walk.limit = f"{MAX_FILES:,} scripts"
                    return
            stack.extend(reversed(subdirs))  # depth first, in name order


def build_index(roots: Sequence[str], max_seconds: float = MAX_SECONDS) -> IndexSnapshot:
    """Walk `roots` and index their shell scripts (see the module docstring for the bounds)."""
    started = time.monotonic()
    walk = _Walk()
    index = IndexSnapshot(roots=[str(r) for r in roots])
    chunk_file, chunk_start, chunk_end, chunk_words, word_hashes_list = [], [], [], [], []
    for path, rel, text in _walk(index.roots, max_seconds, walk):
        text = redact(text)[0]
        f = len(index.files)
        index.files.append(path)
        index.names.append(rel)
        index.texts.append(text)
        for a, b in chunk_offsets(text):
            hashes = word_hashes(text[a:b])
            if not len(hashes):
                continue
            chunk_file.append(f)
            chunk_start.append(a)
            chunk_end.append(b)
            chunk_words.append(len(hashes))
            word_hashes_list.append(hashes)
    if chunk_file:
        index.chunk_file = np.array(chunk_file, np.int32)
        index.chunk_start = np.array(chunk_start, np.int32)
        index.chunk_end = np.array(chunk_end, np.int32)
        index.chunk_words = np.array(chunk_words, np.int32)
        hashes = np.concatenate(word_hashes_list)
        owners = np.repeat(np.arange(len(chunk_file), dtype=np.int32), index.chunk_words)
        order = np.argsort(hashes, kind="stable")
        hashes, index.postings = hashes[order], owners[order]
        index.keys, first = np.unique(hashes, return_index=True)
        index.offsets = np.append(first, len(hashes)).astype(np.int64)
    index.summary = {
        "scripts": walk.scripts,
        "chunks": index.num_chunks,
        "bytes": walk.bytes,
        "entries": walk.entries,
        "seconds": round(time.monotonic() - started, 2),
        "limit": walk.limit,
        "links": walk.links,
        "ignored": walk.ignored,
        "notShell": walk.binary_or_not_shell,
        "tooLarge": walk.too_large,
        "unreadable": walk.unreadable,
    }
    return index


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.0f} KB"


def describe(summary: dict, roots: Sequence[str]) -> str:
    """The one log line about a finished index."""
    where = ", ".join(roots) if len(roots) <= 2 else f"{len(roots)} folders"
    line = (
        f"bashlsp: workspace index: {summary['scripts']} shell scripts, {summary['chunks']} chunks, "
        f"{_size(summary['bytes'])} under {where} in {summary['seconds']:.1f} s"
    )
    if summary.get("limit"):
        line += f"; stopped at the limit of {summary['limit']}"
    skipped = [
        f"{summary[key]} {label}"
        for key, label in (
            ("ignored", "ignored by .gitignore"),
            ("links", "symbolic links (not followed)"),
            ("notShell", "binary or not shell"),
            ("tooLarge", f"over {MAX_FILE_BYTES // 1024} KB"),
            ("unreadable", "unreadable or vanished"),
        )
        if summary.get(key)
    ]
    return line + (f"; skipped {', '.join(skipped)}" if skipped else "")


def _build_in_child(roots: Sequence[str], send) -> None:
    """The index child process: nice 19, so the editor's requests come first; sends the
    snapshot (or an error message) and exits."""
    try:
        os.nice(19)
    except (AttributeError, OSError):
        pass
    try:
        result = build_index(roots)
    except Exception as error:  # reported by the server, which keeps serving without an index
        result = f"{type(error).__name__}: {error}"
    try:
        send.send(result)
    except (BrokenPipeError, OSError):
        pass  # the server is gone
    send.close()


# -- in the server -------------------------------------------------------------------------------


def folders_from_initialize(workspace_folders, root_uri: str | None, root_path: str | None) -> list[str]:
    """Local folders named by `initialize` (workspaceFolders, else rootUri, else rootPath)."""
    from .documents import uri_path

    uris = [f.uri for f in workspace_folders or []] or ([root_uri] if root_uri else [])
    paths = [uri_path(u) for u in uris if u.startswith("file:")]
    if not uris and root_path:
        paths = [root_path]
    folders = []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.isdir(real) and real not in folders:
            folders.append(real)
    return folders


class WorkspaceIndex:
    """Holds the latest snapshot; builds a new one in the background on `start`.

    One short-lived child process per build (not a process pool, whose idle worker outlived a
    server that exited and kept its stderr open, so an editor waiting for the end of the
    server's output waited forever): it sends the snapshot back through a pipe and exits; a
    daemon thread waits for it. The child is terminated by `close` and when the server exits;
    if the server is killed, the child ends at its next bound and a failed send."""

    def __init__(self, notify: Callable[[str, str, bool], None]) -> None:
        self.notify = notify
        self.snapshot = IndexSnapshot()
        self.roots: list[str] = []
        self.building: Future | None = None
        self._process = None

    def start(self, roots: Sequence[str]) -> Future | None:
        """Index `roots` in a child process; the snapshot is replaced when it is done."""
        self.roots = list(roots)
        if not self.roots:
            return None
        self.close()
        context = multiprocessing.get_context("spawn")  # fork is unsafe in a process with threads
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_build_in_child, args=(self.roots, send), daemon=True, name="bashlsp-index")
        process.start()
        send.close()  # the child holds its own copy: a child that dies gives EOF here
        self._process = process
        future: Future = Future()
        self.building = future
        threading.Thread(target=self._wait, args=(process, receive, future), daemon=True).start()
        return future

    def _wait(self, process, receive, future: Future) -> None:
        try:
            snapshot = receive.recv()
        except (EOFError, OSError) as error:
            snapshot = error
        finally:
            receive.close()
            process.join(timeout=30)  # before anyone hears of the result: no child left behind
        if isinstance(snapshot, Exception):
            if self._process is process:  # (not a build that `close` stopped)
                self.notify("warning", f"bashlsp: the workspace index failed (the indexer ended: {snapshot!r})", False)
            future.set_exception(RuntimeError("the indexer ended without an index"))
            return
        if isinstance(snapshot, str):  # the child's error message
            self.notify("warning", f"bashlsp: the workspace index failed ({snapshot})", False)
            future.set_exception(RuntimeError(snapshot))
            return
        self.snapshot = snapshot
        self.notify("log", describe(snapshot.summary, snapshot.roots), False)
        future.set_result(snapshot)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.is_alive():
            process.terminate()
