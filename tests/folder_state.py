"""Snapshot of a folder (bytes, mode and mtime of every entry) to prove the trainer never writes there."""

from __future__ import annotations

import os
from pathlib import Path


def folder_state(root: Path) -> dict[str, tuple]:
    state = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(directory) / name
            info = os.lstat(path)
            if path.is_symlink():
                state[str(path.relative_to(root))] = ("link", os.readlink(path), info.st_mtime_ns)
            elif path.is_file():
                state[str(path.relative_to(root))] = ("file", path.read_bytes(), info.st_mode, info.st_mtime_ns)
            else:
                state[str(path.relative_to(root))] = ("other", info.st_mode, info.st_mtime_ns)
    return state
