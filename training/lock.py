"""One trainer per checkpoint store: a lock file holding the owner's pid.

The lock is an advisory `flock` on `<store>/trainer.lock`, which the kernel drops the moment its
holder dies, however it dies; so a lock left behind by a killed trainer is never in the way. The
file's content (pid, host, start time, command) is only there to tell a second trainer who holds
the lock, and to say so when a dead trainer's record is taken over. The file is never deleted:
deleting a flock'ed file lets a third process lock a fresh file while a second still holds the
old one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..model.errors import StoreLockedError

LOCK_FILE = "trainer.lock"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _describe(holder: dict) -> str:
    if not holder:
        return "another trainer"
    command = holder.get("command", "")
    return (
        f"another trainer (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}{', `' + command + '`' if command else ''})"
    )


class StoreLock:
    """`with StoreLock(store_root):` holds the store for this process or raises StoreLockedError."""

    def __init__(self, store_root: Path) -> None:
        self.path = Path(store_root) / LOCK_FILE
        self._fd: int | None = None
        self.took_over: dict | None = None  # the dead holder's record, when we replaced one

    def _read(self, fd: int) -> dict:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 65536)
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise StoreLockedError(
                f"{_describe(holder)} is using the checkpoint store {self.path.parent} "
                f"(lock file {self.path}); wait for it to finish or stop it, or use another --store"
            ) from None
        previous = self._read(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            # Its flock is gone, so its process is too (or it runs on another host sharing the folder
            # without working locks, which we cannot tell apart): the record is stale.
            self.took_over = previous
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty file: nobody holds the store
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def stale_note(self) -> str | None:
        if not self.took_over:
            return None
        pid = self.took_over.get("pid")
        state = "no longer running" if isinstance(pid, int) and not pid_alive(pid) else "no longer holding it"
        return f"took over the store lock left by trainer pid {pid} ({state})"

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
