"""The tasks a completer is measured on: next-line completion at sampled line starts, and the
keystroke simulation; and the scripts they run on (found by training/collect.py, the trainer's
own collection: read-only, shell detection of model/shell.py, duplicates dropped).

next line: at sampled line starts the completer gets the file so far and writes the rest of the
line; exact match (equal whitespace-separated tokens) and edit similarity (1 - Levenshtein /
longer length, on the stripped lines, as CodeXGLUE's line task).
keystroke savings rate (KSR): simulate typing the start of each file; at every position the
completer suggests the rest of the line; a suggestion that is a non-empty prefix of what follows
is accepted for one keystroke, otherwise one character is typed. KSR = 1 - keystrokes / characters.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..collect import collect_scripts
from .metrics import edit_similarity, exact_match
from .progress import progress_bar

DEFAULT_LINES_PER_FILE = 10
DEFAULT_KSR_CHARS = 300


@dataclass
class ScriptSet:
    root: Path
    paths: list[Path] = field(default_factory=list)  # relative to root
    texts: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason (training/collect.py) -> count


def load_scripts(root: Path) -> ScriptSet:
    """Every shell script under `root`, each read fresh, in path order (collect.py's walk)."""
    collection = collect_scripts([root])
    found = ScriptSet(Path(root), skipped=dict(sorted(collection.skipped.items())))
    for script in collection.scripts:
        found.paths.append(Path(script.name.split("/", 1)[1]))  # collect names them "<folder>/<path>"
        found.texts.append(script.text)
    return found


def line_starts(text: str) -> list[tuple[int, str]]:
    """(offset, line) for each line of `text` without its newline."""
    starts, offset = [], 0
    for line in text.split("\n"):
        starts.append((offset, line))
        offset += len(line) + 1
    if text.endswith("\n"):
        starts.pop()  # the empty "line" after the final newline
    return starts


def sample_line_positions(text: str, per_file: int, seed: str | int) -> list[tuple[int, str]]:
    """Up to `per_file` non-blank lines after the first (which has no context), chosen by `seed`,
    in file order."""
    candidates = [(offset, line) for offset, line in line_starts(text)[1:] if line.strip()]
    if per_file <= 0:
        return []
    if len(candidates) > per_file:
        candidates = sorted(random.Random(seed).sample(candidates, per_file))
    return candidates


def next_line_metrics(
    texts: Sequence[str],
    complete: Callable[[str], str],
    lines_per_file: int = DEFAULT_LINES_PER_FILE,
    seed: int = 0,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> dict:
    """Exact match and edit similarity of `complete(prefix)`'s rest-of-line predictions at
    sampled line starts.

    Line choice is seeded by `seed` and each file's name (its index when `names` is None), so a
    file gets the same lines whatever other files are evaluated with it.
    """
    matches, similarity, count, examples = 0, 0.0, 0, []
    for index, text in enumerate(progress_bar(texts, "next line", progress)):
        name = names[index] if names is not None else str(index)
        for offset, truth in sample_line_positions(text, lines_per_file, f"{seed}:{name}"):
            prediction = complete(text[:offset])
            hit = exact_match(prediction, truth)
            matches += hit
            similarity += edit_similarity(prediction.strip(), truth.strip())
            count += 1
            if len(examples) < 5:
                examples.append({"file": name, "truth": truth, "prediction": prediction, "exact": hit})
    return {
        "exact_match": matches / count if count else float("nan"),
        "edit_similarity": similarity / count if count else float("nan"),
        "lines": count,
        "lines_per_file": lines_per_file,
        "examples": examples,
    }


def typed_span(text: str, max_chars: int) -> str:
    """The first `max_chars` characters of `text`, extended to the end of that line (newline
    included) so that no line is cut in the middle."""
    if max_chars <= 0 or max_chars >= len(text):
        return text
    newline = text.find("\n", max_chars - 1)
    return text if newline < 0 else text[: newline + 1]


def simulate_typing(text: str, completer: Callable[[str, str], str]) -> tuple[int, int]:
    """Type `text` with a completer's help: (keystrokes, characters).

    `completer(prefix, following)` returns its suggestion for what comes after `prefix`;
    `following` is the rest of the text, which a completer may use only to stop working on a
    suggestion that is already wrong. A suggestion that is a non-empty prefix of what follows is
    accepted for one keystroke; anything else costs one keystroke for the next character.
    """
    position, keystrokes = 0, 0
    while position < len(text):
        following = text[position:]
        suggestion = completer(text[:position], following)
        if suggestion and following.startswith(suggestion):
            position += len(suggestion)
        else:
            position += 1
        keystrokes += 1
    return keystrokes, len(text)


def keystroke_savings(
    texts: Iterable[str],
    completer: Callable[[str, str], str],
    max_chars: int = DEFAULT_KSR_CHARS,
    progress: bool = False,
) -> dict:
    """KSR = 1 - keystrokes / characters over the typed start of each text (see `typed_span`)."""
    keystrokes = characters = files = 0
    texts = list(texts)
    for text in progress_bar(texts, "keystrokes", progress):
        span = typed_span(text, max_chars)
        if not span:
            continue
        pressed, typed = simulate_typing(span, completer)
        keystrokes += pressed
        characters += typed
        files += 1
    return {
        "ksr": 1.0 - keystrokes / characters if characters else float("nan"),
        "keystrokes": keystrokes,
        "characters": characters,
        "files": files,
        "chars_per_file": max_chars,
    }
