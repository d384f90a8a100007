"""A progress bar on stderr for the long measures (off for --json)."""

from __future__ import annotations

import sys


def progress_bar(items, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, file=sys.stderr, leave=False, disable=None)
