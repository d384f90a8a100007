"""Collect the user's shell scripts from folders, read-only.

Walks each folder, keeps files that `model.shell.shell_reason` calls shell (a shell extension,
an sh/bash shebang, ...), and counts everything it skips by reason: binaries, files over the size
limit, link loops, links that lead outside the folders, unreadable files, non-UTF-8 text, exact
duplicates. Nothing under the folders is ever written: files are opened read-only (with
O_NOATIME where the kernel allows it), and FIFOs or devices are never opened at all.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..model.errors import TrainingError
from ..model.shell import HEAD_BYTES, MAX_USER_SCRIPT_BYTES, SKIPPED_DIR_NAMES, is_binary, shell_reason

DEFAULT_MAX_FILE_BYTES = MAX_USER_SCRIPT_BYTES  # the default of bashlsp-train --max-file-kb
_O_NOATIME = getattr(os, "O_NOATIME", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # so a FIFO swapped in after the check cannot block us

# Skip reasons, as printed.
BINARY = "binary"
TOO_LARGE = "too large"
EMPTY = "empty"
NOT_SHELL = "not a shell script"
NOT_UTF8 = "not UTF-8 text"
NOT_REGULAR = "not a regular file (FIFO, socket, device)"
UNREADABLE = "unreadable"
LINK_LOOP = "link loop"
LINK_OUTSIDE = "link outside the folders"
BROKEN_LINK = "broken link"
DUPLICATE = "duplicate"
TOOL_DIR = "tool folder (.git, node_modules, ...)"


@dataclass
class Script:
    path: Path  # absolute path of the file as found (a link keeps the link's name)
    name: str  # path shown to the user and used for the holdout split: "<folder name>/<relative path>"
    text: str
    digest: str  # sha256 of the bytes
    reason: str  # why it counts as shell (from shell_reason)

    @property
    def num_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass
class Collection:
    scripts: list[Script] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few names, for the user

    def skip(self, reason: str, name: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(name)

    @property
    def num_bytes(self) -> int:
        return sum(s.num_bytes for s in self.scripts)

    def summary(self) -> dict:
        return {
            "files": len(self.scripts),
            "bytes": self.num_bytes,
            "skipped": dict(sorted(self.skipped.items())),
        }


def _read_file(path: Path, max_bytes: int) -> tuple[bytes | None, str | None]:
    """(content, None) or (None, skip reason). Read-only, never follows into a FIFO."""
    flags = os.O_RDONLY | _O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            fd = os.open(path, flags | _O_NOATIME)
        except PermissionError:
            # O_NOATIME is refused on files we do not own; plain read-only is still fine.
            fd = os.open(path, flags)
    except OSError:
        return None, UNREADABLE
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, NOT_REGULAR
        if info.st_size > max_bytes:
            return None, TOO_LARGE
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew while we read it
                return None, TOO_LARGE
        return b"".join(chunks), None
    except OSError:
        return None, UNREADABLE
    finally:
        os.close(fd)


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


class _Walker:
    def __init__(self, roots: list[Path], max_bytes: int, exclude: list[Path]) -> None:
        self.roots = roots
        self.max_bytes = max_bytes
        self.exclude = exclude
        self.collection = Collection()
        self.seen_digests: set[str] = set()
        self.seen_dirs: set[tuple[int, int]] = set()

    def walk(self, directory: Path, shown: str) -> None:
        try:
            info = directory.stat()
        except OSError:
            self.collection.skip(UNREADABLE, shown + "/")
            return
        key = (info.st_dev, info.st_ino)
        if key in self.seen_dirs:
            # A second way into a folder already walked (through a link): its files are taken once.
            self.collection.skip(DUPLICATE, shown + "/")
            return
        self.seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            self.collection.skip(UNREADABLE, shown + "/")
            return
        for entry in entries:
            self.visit(Path(entry.path), f"{shown}/{entry.name}", entry)

    def visit(self, path: Path, shown: str, entry: os.DirEntry) -> None:
        try:
            is_link = entry.is_symlink()
            if is_link:
                try:
                    target = Path(os.path.realpath(path, strict=True))
                except OSError as exc:
                    # ELOOP for links that point at each other; anything else means the target is gone.
                    self.collection.skip(LINK_LOOP if exc.errno == errno.ELOOP else BROKEN_LINK, shown)
                    return
                if not _within(target, self.roots):
                    self.collection.skip(LINK_OUTSIDE, shown)
                    return
            is_dir = entry.is_dir(follow_symlinks=True)
            if is_link and is_dir and _within(Path(os.path.realpath(path.parent)), [target]):
                # A link to the folder it sits in, or to one above it: walking it would never end.
                self.collection.skip(LINK_LOOP, shown + "/")
                return
        except OSError:
            self.collection.skip(UNREADABLE, shown)
            return
        if _within(Path(os.path.realpath(path)), self.exclude):
            return  # the checkpoint store itself, if it lives inside a watched folder
        if is_dir:
            if entry.name in SKIPPED_DIR_NAMES:
                self.collection.skip(TOOL_DIR, shown + "/")
                return
            self.walk(path, shown)
            return
        self.read(path, shown)

    def read(self, path: Path, shown: str) -> None:
        try:
            info = path.stat()
        except OSError:
            self.collection.skip(UNREADABLE, shown)
            return
        if not stat.S_ISREG(info.st_mode):
            self.collection.skip(NOT_REGULAR, shown)
            return
        if info.st_size == 0:
            self.collection.skip(EMPTY, shown)
            return
        if info.st_size > self.max_bytes:
            self.collection.skip(TOO_LARGE, shown)
            return
        data, problem = _read_file(path, self.max_bytes)
        if problem is not None:
            self.collection.skip(problem, shown)
            return
        head = data[:HEAD_BYTES]
        if is_binary(head):
            self.collection.skip(BINARY, shown)
            return
        reason = shell_reason(path, head)
        if reason is None:
            self.collection.skip(NOT_SHELL, shown)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.collection.skip(NOT_UTF8, shown)
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.seen_digests:
            self.collection.skip(DUPLICATE, shown)
            return
        self.seen_digests.add(digest)
        self.collection.scripts.append(Script(path=path, name=shown, text=text, digest=digest, reason=reason))


def _display_names(roots: list[Path]) -> list[str]:
    """A short, unique label per folder: its name, with a number added when two share one."""
    names, used = [], Counter()
    for root in roots:
        base = root.name or str(root)
        used[base] += 1
        names.append(base if used[base] == 1 else f"{base}#{used[base]}")
    return names


def collect_scripts(
    dirs: list[str | Path], max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, exclude: list[Path] | None = None
) -> Collection:
    """Every shell script under `dirs`, deduplicated by content, with skip counts by reason."""
    roots = []
    for d in dirs:
        path = Path(d).expanduser()
        if not path.is_dir():
            raise TrainingError(f"{d} is not a folder")
        roots.append(Path(os.path.realpath(path)))
    walker = _Walker(roots, max_file_bytes, [Path(os.path.realpath(p)) for p in (exclude or [])])
    for root, shown in zip(roots, _display_names(roots)):
        walker.walk(root, shown)
    return walker.collection


def holdout_split(
    scripts: list[Script], fraction: float = 0.1, max_files: int | None = None, max_bytes: int | None = None
) -> tuple[list[Script], list[Script]]:
    """Split by file into (train, holdout), stably: whether a file may be held out depends only on
    a hash of its name, so an edited file stays where it was, and adding or editing files never
    moves a trained-on file into the holdout (only deleting a held-out file can let the next
    candidate in).

    The files whose hash falls in the lowest `fraction` are candidates; the holdout is the
    candidates in hash order up to `max_files` / `max_bytes` (the rest of them train: no file is
    left unused). With two or more scripts both sides get at least one; a single script trains.
    """
    if len(scripts) < 2:
        return list(scripts), []

    def rank(script: Script) -> str:
        return hashlib.sha256(script.name.encode("utf-8")).hexdigest()

    threshold = int(fraction * 2**32)
    candidates = sorted((s for s in scripts if int(rank(s)[:8], 16) < threshold), key=rank)
    if not candidates:
        candidates = [min(scripts, key=rank)]
    holdout, total = [], 0
    for script in candidates:
        if holdout and (
            (max_files is not None and len(holdout) >= max_files)
            or (max_bytes is not None and total + script.num_bytes > max_bytes)
        ):
            break
        holdout.append(script)
        total += script.num_bytes
    if len(holdout) == len(scripts):
        holdout = holdout[:-1]
    held = {id(s) for s in holdout}
    return [s for s in scripts if id(s) not in held], holdout
