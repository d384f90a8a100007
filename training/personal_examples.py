"""The user's own examples: comment -> code blocks of the scripts `bashlsp-train` reads.

After the trainer has collected and redacted the scripts (training/personal.py `prepare`), their
comment -> code blocks (model/examples.py `comment_code_pairs`) are written into a personal
example index in the checkpoint store (`<store>/examples/personal.sqlite`), published
atomically (a temporary file, fsync, os.replace), so the server's "Generate script from comment"
knows the user's commands before any fine-tuning. Only redacted text reaches the index.

Bounds: at most MAX_SCRIPTS scripts (the first by name), MAX_PAIRS_PER_SCRIPT pairs a script and
MAX_PAIRS pairs in all; an entry holds at most 200 characters of description and 8 lines of 200
characters, so the index stays under about 40 MB even at the bounds (typical scripts: about
250 bytes an entry). Time and size at the bound are in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..model.examples import Example, comment_code_pairs, personal_index_path, write_index
from .collect import Script

MAX_SCRIPTS = 50_000
MAX_PAIRS = 20_000  # a search that matches every entry scores them all: about 0.25 s at this bound (docs/benchmarks.md)
SOURCE = {"licence": "the user's own", "credit": "comment -> code blocks of the user's scripts (redacted)"}


def personal_examples(scripts: Sequence[Script]) -> list[Example]:
    """The comment -> code pairs of (already redacted) `scripts`, within the bounds."""
    entries: list[Example] = []
    for script in sorted(scripts, key=lambda s: s.name)[:MAX_SCRIPTS]:
        entries.extend(comment_code_pairs(script.text, "personal", script.name))
        if len(entries) >= MAX_PAIRS:
            return entries[:MAX_PAIRS]
    return entries


def publish_personal_examples(scripts: Sequence[Script], store_root: Path) -> int:
    """Write the personal index of `scripts` into the store; returns the number of entries."""
    return write_index(personal_index_path(store_root), personal_examples(scripts), {"personal": SOURCE}, "personal")
