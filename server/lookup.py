"""Copy suggestions: the line that followed lines like the cursor's elsewhere in the document or
the project (n-gram completion over lines, as prompt-lookup decoding does over tokens).

Scripts repeat themselves: the same `case` arms, option parsing, `log`/`die` calls and blocks
appear again further down a file and in the project's other files. A 5M-parameter model copies
such a line poorly even when it is in its prompt; a lookup finds it. Each place scores how much
the LINE_WEIGHTS lines before it look like the lines before the cursor (per line: 1 if equal
with whitespace normalised, else the Jaccard similarity of their words; nearer lines weigh
more, LINE_WEIGHTS), and the line after the best place is the copy, if it starts with what is
typed on the cursor line. `Copy.score` says how strong it is (at most sum(LINE_WEIGHTS)).

Sources: the document's lines above and below the cursor line (never the cursor line itself)
and the texts the caller gives (the chunks of the project's other files most similar to the
cursor's lines: server/context.py). A copy equal to the first non-blank line below the cursor is
never offered: that line is already there; nor is a tail equal to the rest of the cursor line.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ..model.context import jaccard, words
from ..model.engine.stops import worth_showing

# The line just before the cursor line weighs 1, each line above it half the one below it: the
# block of lines before a place, not only its last three lines, tells apart places alike (with
# three lines, 1, 0.6, 0.3, more places tied at the best score and fewer copies were right:
# `bashlsp bench context repo`, docs/benchmarks.md, issue 14).
LINE_WEIGHTS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
MIN_SCORE = 0.3  # a weaker place is not a copy: its lines look nothing like the cursor's


def normal(line: str) -> str:
    """A line as compared: its words separated by single spaces."""
    return " ".join(line.split())


@dataclass(frozen=True)
class Copy:
    text: str  # what to insert at the cursor: the rest of the copied line
    score: float  # how much the lines before its place look like the cursor's


class _Lines:
    """A text's lines with their normal forms and words (the same texts come back at every
    keystroke: the document above the cursor line, the chunks; `_lines` keeps them)."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.normals = [normal(line) for line in self.lines]
        self.words = [words(line) for line in self.lines]


@functools.lru_cache(maxsize=32)  # a request reads 2 document texts and up to 24 chunks
def _lines(text: str) -> _Lines:
    return _Lines(text)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _reindented(line: str, before: str, cursor_before: str) -> str:
    """`line` (which followed `before` where it was found) with its indentation moved as the
    cursor's previous line `cursor_before` is indented: a block copied one level deeper or
    shallower keeps its shape."""
    own, theirs, ours = _indent(line), _indent(before), _indent(cursor_before)
    if own == theirs:
        indent = ours
    elif own.startswith(theirs):
        indent = ours + own[len(theirs) :]
    elif theirs.startswith(own) and ours.endswith(theirs[len(own) :]):
        indent = ours[: len(ours) - (len(theirs) - len(own))]
    else:
        indent = own
    return indent + line.lstrip(" \t")


def _rest(full: str, typed: str) -> str | None:
    """What to insert after `typed` (the cursor line so far) for the line `full`, or None."""
    if full.startswith(typed):
        return full[len(typed) :]
    if not typed.strip():
        return full.lstrip(" \t")  # the user chose another indentation
    content, stripped = typed.lstrip(" \t"), full.lstrip(" \t")
    return stripped[len(content) :] if stripped.startswith(content) else None


def copy_suggestion(prefix: str, suffix: str, texts: Iterable[str] = ()) -> Copy | None:
    """The copy for a cursor between `prefix` and `suffix` (the document's text), or None."""
    found = copy_suggestions(prefix, suffix, texts, 1)
    return found[0] if found else None


def copy_suggestions(prefix: str, suffix: str, texts: Iterable[str] = (), k: int = 1) -> list[Copy]:
    """The `k` best distinct copies for a cursor between `prefix` and `suffix`, best first (equal
    scores: the first place, from the document's top, first)."""
    cut = prefix.rfind("\n")
    if cut < 0:
        return []  # the first line: nothing before it to compare
    typed, content = prefix[cut + 1 :], prefix[cut + 1 :].lstrip(" \t")
    above = _lines(prefix[:cut])
    newline = suffix.find("\n")
    below = suffix[newline + 1 :] if newline >= 0 else ""
    after = (suffix[:newline] if newline >= 0 else suffix).strip()  # the rest of the cursor line
    next_line = next((normal(line) for line in below.split("\n", 8) if line.strip()), None)
    depth = min(len(LINE_WEIGHTS), len(above.lines))
    wanted = [(above.normals[-1 - k], above.words[-1 - k], LINE_WEIGHTS[k]) for k in range(depth)]
    cursor_before = above.lines[-1]
    rest_weight = [sum(LINE_WEIGHTS[k + 1 : depth]) for k in range(depth)]  # the most the deeper lines add

    best: dict[str, tuple[float, int]] = {}  # copy text -> its best place's score, and when it was found
    places = 0
    bar = -1.0  # the k-th best score so far: a place must beat it
    for source in [above, _lines(below), *map(_lines, texts)]:
        lines, normals, line_words = source.lines, source.normals, source.words
        for at in range(1, len(lines)):
            line = lines[at]
            if not line.strip() or not line.lstrip(" \t").startswith(content):
                continue
            score = 0.0
            for j, (want, want_words, weight) in enumerate(wanted):
                if at - 1 - j < 0:
                    break
                i = at - 1 - j
                score += weight if normals[i] == want else weight * jaccard(line_words[i], want_words)
                if score + rest_weight[j] <= bar:
                    break  # cannot beat the k-th best any more
            if score <= bar:
                continue
            rest = _rest(_reindented(line, lines[at - 1], cursor_before), typed)
            if rest is not None and after and rest.rstrip().endswith(after):
                rest = rest.rstrip()[: -len(after)]  # the text after the cursor is not repeated
            if rest is None or not rest.strip() or not worth_showing(rest) or normal(typed + rest) == next_line:
                continue
            if score > best.get(rest, (-1.0, 0))[0]:
                best[rest] = (score, places)
                places += 1
                if len(best) >= k:
                    bar = sorted((s for s, _ in best.values()), reverse=True)[k - 1]
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[1][1]))[:k]  # ties: the place found first
    return [Copy(text, score) for text, (score, _) in ranked if score >= MIN_SCORE]
