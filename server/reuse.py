"""Answers reused while typing: when the user types the characters the suggestion on screen
starts with, the rest of that suggestion is the answer, and the model does not run (the
result reuse of Continue and llama.vim).

The server remembers the last suggestion it gave per document and kind, with the text before
and after the cursor it was made for. A new request reuses it when the text after the cursor is
the same and the text before it is the old one plus characters that start the suggestion. The
greedy model would mostly have said the same (its cache holds the suggestion's tokens); when it
would not, the user still sees a suggestion that agrees with what they type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Shown:
    prefix: str  # the text before the cursor the suggestion was made for
    suffix: str  # the text after it
    text: str  # the suggestion (model text: "\n" line breaks)


class ShownSuggestions:
    """The last suggestion per (document, kind), and whether typing runs through it."""

    def __init__(self) -> None:
        self._shown: dict[tuple[str, str], _Shown] = {}
        self.hits = 0  # answers reused

    def remember(self, uri: str, kind: str, prefix: str, suffix: str, text: str | None) -> None:
        """The suggestion shown for a cursor between `prefix` and `suffix` (None: nothing shown)."""
        if text:
            self._shown[(uri, kind)] = _Shown(prefix, suffix, text)
        else:
            self._shown.pop((uri, kind), None)

    def reuse(self, uri: str, kind: str, prefix: str, suffix: str) -> str | None:
        """The rest of the shown suggestion if the user typed its first characters, else None."""
        shown = self._shown.get((uri, kind))
        if shown is None or len(prefix) <= len(shown.prefix) or suffix != shown.suffix:
            return None
        if not prefix.startswith(shown.prefix):
            return None
        typed = prefix[len(shown.prefix) :]
        if not shown.text.startswith(typed):
            return None
        rest = shown.text[len(typed) :]
        if not rest.strip():
            return None
        self.hits += 1
        return rest

    def forget(self, uri: str) -> None:
        for key in [k for k in self._shown if k[0] == uri]:
            del self._shown[key]
