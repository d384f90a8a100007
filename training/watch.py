"""Watch the user's folders (watchdog) and report when edits have settled.

`FolderWatcher.wait_for_changes()` blocks until something changed under the folders and then
nothing more changed for `debounce_s` seconds (an editor's save is several events; a `git pull`
is hundreds), and returns the paths touched. It waits on a condition variable: no polling, and
`stop()` (Ctrl-C) wakes it at once.

Only events that change content count. Reading a file (which the trainer does itself when it
collects the scripts again) produces inotify open/close-without-write events, which are ignored,
or every retrain would trigger the next one.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

CONTENT_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
# Editors' scratch files: their churn is not an edit of a script.
_SCRATCH_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp", ".part")


def _is_scratch(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith(_SCRATCH_SUFFIXES) or name.startswith(".#") or name == "4913"  # vim's write probe


class FolderWatcher(FileSystemEventHandler):
    def __init__(self, dirs: list[Path], debounce_s: float = 2.0, ignore: list[Path] | None = None) -> None:
        super().__init__()
        self.dirs = [Path(os.path.realpath(d)) for d in dirs]
        self.debounce_s = debounce_s
        self.ignore = [Path(os.path.realpath(p)) for p in (ignore or [])]
        self._changed: set[str] = set()
        self._last_event = 0.0
        self._stopped = False
        self._condition = threading.Condition()
        self._observer = Observer()

    # watchdog calls this from its own thread
    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CONTENT_EVENTS:
            return
        paths = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        paths = [os.fsdecode(p) for p in paths]
        paths = [p for p in paths if not _is_scratch(p) and not self._ignored(p)]
        if not paths or (event.is_directory and event.event_type == "modified"):
            return  # a folder's own mtime moves with every file event inside it
        with self._condition:
            self._changed.update(paths)
            self._last_event = time.monotonic()
            self._condition.notify_all()

    def _ignored(self, path: str) -> bool:
        return any(path == str(p) or path.startswith(str(p) + os.sep) for p in self.ignore)

    def start(self) -> FolderWatcher:
        for directory in self.dirs:
            self._observer.schedule(self, str(directory), recursive=True)
        self._observer.start()
        return self

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def wait_for_changes(self, timeout: float | None = None) -> set[str]:
        """Paths changed since the last call, once edits have settled; empty after `stop()` or
        when `timeout` seconds pass with no change at all."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while not self._changed and not self._stopped:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return set()
                self._condition.wait(remaining)
            # Something changed: wait until no new event arrived for debounce_s.
            while not self._stopped:
                quiet_for = time.monotonic() - self._last_event
                if quiet_for >= self.debounce_s:
                    break
                self._condition.wait(self.debounce_s - quiet_for)
            changed, self._changed = self._changed, set()
            return set() if self._stopped else changed

    def __enter__(self) -> FolderWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
