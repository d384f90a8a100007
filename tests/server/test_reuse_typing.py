"""Answers reused while typing through a suggestion (server/reuse.py)."""

from __future__ import annotations

from bashlsp.server.reuse import ShownSuggestions


def test_typing_through_a_suggestion_reuses_its_rest():
    shown = ShownSuggestions()
    shown.remember("u", "inline", "for f in *; do\n  ", "\ndone\n", 'echo "$f"')
    assert shown.reuse("u", "inline", "for f in *; do\n  e", "\ndone\n") == 'cho "$f"'
    assert shown.reuse("u", "inline", 'for f in *; do\n  echo "$', "\ndone\n") == 'f"'
    # Not what the suggestion says, another suffix, another kind or document, nothing typed,
    # typed to its end (only blanks left), or deleted: the model runs again.
    assert shown.reuse("u", "inline", "for f in *; do\n  x", "\ndone\n") is None
    assert shown.reuse("u", "inline", "for f in *; do\n  e", "\nfi\n") is None
    assert shown.reuse("u", "line", "for f in *; do\n  e", "\ndone\n") is None
    assert shown.reuse("v", "inline", "for f in *; do\n  e", "\ndone\n") is None
    assert shown.reuse("u", "inline", "for f in *; do\n  ", "\ndone\n") is None
    assert shown.reuse("u", "inline", 'for f in *; do\n  echo "$f"', "\ndone\n") is None
    assert shown.reuse("u", "inline", "for f in *; do\n ", "\ndone\n") is None


def test_remember_nothing_and_forget():
    shown = ShownSuggestions()
    shown.remember("u", "inline", "a", "", "bc")
    shown.remember("u", "inline", "a", "", None)
    assert shown.reuse("u", "inline", "ab", "") is None
    shown.remember("u", "inline", "a", "", "bc")
    shown.forget("u")
    assert shown.reuse("u", "inline", "ab", "") is None
