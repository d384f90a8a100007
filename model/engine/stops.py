"""Where a suggestion ends (`StopRules`), from the text around the cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .query import CompletionQuery

# A line or inline suggestion begun in the middle of a line ends before the first token the model
# gives less than this probability (a guess): a suggestion is taken only when all of it is right,
# and a short one that is right saves more than a long one that goes wrong at its end; not
# decoding past a guess also keeps the answer fast. Chosen by keystroke savings (`bashlsp eval
# --completer server --min-token-prob P`, docs/benchmarks.md). Sampled alternatives stop at their
# first such pick as well (the probability is the model's, not the sampling's).
MIN_TOKEN_PROB = 0.6
# A suggestion begun at a line start (only indentation before the cursor) has its own, lower
# guess threshold: there the first line is judged whole (LINE_CONFIDENCE), and the next-line
# figures were chosen with this value; the higher MIN_TOKEN_PROB cut those lines shorter for no
# keystroke saved.
LINE_START_PROB = 0.2
# The popup's greedy alternatives: row r begins with the r-th likeliest next token, which must
# have at least this probability (a bar as high as MIN_TOKEN_PROB would leave no second choice);
# the rest of each alternative ends at MIN_TOKEN_PROB as any suggestion does.
ALTERNATIVE_PROB = 0.2
# Bounds a rest-of-line suggestion, and every line of a multi-line one; 32 measured the same
# keystroke savings and exact match as 20.
LINE_MAX_TOKENS = 20
# At the start of a line (only indentation before the cursor) a guess does not end the suggestion
# at once: the first line is decoded to its end and offered whole when its mean token probability
# (geometric) is at least this, else it ends before its first guess. Next-line prediction then
# gets whole lines the model is fairly sure of instead of a token or two (`NVM_SOURCE_URL="https://`).
# 0 turns the rule off. Chosen by exact match and keystroke savings (docs/benchmarks.md, `bashlsp
# bench context repo`): on 5 held-out projects EM rose from 15.1% (off) to 15.6% at 0.1-0.3 and
# stayed at 15.1% at 0.5-0.7, keystroke savings did not move; the highest of the best, so that
# fewer wrong whole lines are shown and decoded.
LINE_CONFIDENCE = 0.3
# More guesses than this on that first line end it at its first guess at once, instead of
# decoding a line that will rarely be offered: with 2, next-line EM and keystroke savings were
# the same as without the bound and a line-start request decoded 11.6 steps instead of 13.5
# (edit similarity 24.2 instead of 25.1; docs/benchmarks.md).
LINE_GUESSES = 2
# Ghost text at a line start comes from this many rows: the likeliest first tokens, each
# continued greedily, and the row whose shown text has the highest summed log-probability (the
# likeliest text, not the likeliest per token) is offered. 1: plain greedy. Chosen with `bashlsp
# bench context repo --line-rows` (docs/benchmarks.md, issue 14).
LINE_ROWS = 2
# Generate mode: a script line is cut where the model repeats itself within it (a unit of
# LOOP_UNIT characters, with a letter and two different characters in it, LOOP_TIMES times in a
# row at the line's end: `/rc.d/rc.d/rc.d/rc.d`, `echo "echo "echo "echo "`), or past
# GENERATE_LINE_CHARS characters. The slowest "Generate script from comment" answers were such a
# line decoded to the token bound, failing `bash -n`, then sampled scripts doing the same; real
# lines rarely trip either rule (how rarely, and what it saved: docs/benchmarks.md, Command
# examples).
LOOP_UNIT = (3, 24)
LOOP_TIMES = 4
GENERATE_LINE_CHARS = 240  # characters, not tokens: the same bound for any tokenizer


_OPENER = re.compile(r"(?:^|[;&|\s])(?:then|do)$|\{$|^case\s.*\sin$")
_CLOSER = re.compile(r"^(?:fi|done|esac|\})(?:$|[\s;|&<>)])")
_MIDDLE = re.compile(r"^(?:elif|else)\b")


def block_delta(line: str) -> int:
    """+1 if the line opens a block (`then`, `do`, `{`, `case .. in` at its end), -1 if it
    closes one (`fi`, `done`, `esac`, `}` first), else 0. Simple on purpose: one-line
    `if ..; then ..; fi` is neutral, `else`/`elif` stay inside their `if`."""
    code = line.strip()
    if not code or code.startswith("#") or _MIDDLE.match(code):
        return 0
    return (1 if _OPENER.search(code) else 0) - (1 if _CLOSER.match(code) else 0)


def repeats_itself(line: str) -> bool:
    """Whether `line` ends with a unit of LOOP_UNIT characters, holding a letter, repeated
    LOOP_TIMES times in a row (a small model caught in a loop within a line). A run of one
    character is not a loop here (`mktemp -t x.XXXXXXXXXXXX`); the line bound ends a long one."""
    shortest, longest = LOOP_UNIT
    for size in range(shortest, min(longest, len(line) // LOOP_TIMES) + 1):
        unit = line[-size:]
        if line.endswith(unit * LOOP_TIMES) and any(ch.isalpha() for ch in unit) and len(set(unit)) > 1:
            return True
    return False


def worth_showing(text: str) -> bool:
    """Whether a line or inline suggestion is worth showing: one of its lines holds more than
    blanks and comment markers. A lone `#`, or `#` lines (`#\n#`, the start of a comment block
    a small model often offers at a line start), save a keystroke or two, and hide the
    suggestion that would come once the user typed on."""
    return any(line.strip().lstrip("#").strip() for line in text.split("\n"))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _first_nonblank_line(text: str, start: int, limit: int = 4096) -> str | None:
    """The first non-blank line of text[start:], looking at no more than `limit` characters."""
    while start < len(text) and start < limit:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if text[start:end].strip():
            return text[start:end]
        start = end + 1
    return None


@dataclass
class StopRules:
    """Where a suggestion ends, from the text around the cursor.

    line     the rest of the cursor line: stop at the first newline.
    inline   single line like `line` unless multiline (and nothing but blanks follows the
             cursor on its line); then stop at the end of the block: before a blank line, a line
             indented less than the cursor line, a closer of an outer block, a new statement at
             the cursor line's level when the cursor line had code; after the closer of a block
             the suggestion opened.
    generate the code for a comment: it ends at the end of its block, before a blank line once
             every block it opened is closed (and before a blank line followed by a comment).
    text     a free continuation (`bashlsp generate`, eval's raw samples): it ends only at
             <|eof|>, at the token budget, or before the first of the query's `stop` strings.
    All modes: never repeat what follows the cursor: the suggestion ends before a line equal to
    the first non-blank line after the cursor line, and (single line) loses a tail equal to the
    rest of the cursor line. Multi-line: a line equal to the line before it ends the suggestion
    (a small model caught in a loop).
    """

    mode: str
    multiline: bool
    line_before: str  # the cursor line up to the cursor
    line_after: str  # the cursor line after the cursor
    next_line: str | None  # the first non-blank line below the cursor line
    stop: tuple[str, ...] = ()  # text mode: stop strings

    @classmethod
    def for_query(cls, query: CompletionQuery) -> StopRules:
        line_before = query.prefix[query.prefix.rfind("\n") + 1 :]
        newline = query.suffix.find("\n")
        line_after = query.suffix if newline < 0 else query.suffix[:newline]
        next_line = None if newline < 0 else _first_nonblank_line(query.suffix, newline + 1)
        return cls(query.mode, query.multiline, line_before, line_after, next_line, tuple(s for s in query.stop if s))

    @property
    def at_line_start(self) -> bool:
        """A line or inline suggestion with nothing but indentation before the cursor."""
        return self.mode in ("line", "inline") and not self.line_before.strip()

    @property
    def single_line(self) -> bool:
        return self.mode == "line" or (self.mode == "inline" and (not self.multiline or bool(self.line_after.strip())))

    def cut(self, text: str, final: bool, truncated: bool = False) -> int | None:
        """Where the suggestion `text` ends, or None while it may still grow. `final`: nothing
        more will come; `truncated`: it stopped at the token limit (drop a partial last line)."""
        if self.mode == "text":
            cuts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
            return min(cuts) if cuts else (len(text) if final else None)
        if self.single_line:
            return self._cut_single(text, final)
        if self.mode == "generate":
            return self._cut_generate(text, final)
        return self._cut_block(text, final, truncated)

    def _cut_single(self, text: str, final: bool) -> int | None:
        end = text.find("\n")
        if end < 0:
            if not final:
                return None
            end = len(text)
        after = self.line_after.strip()
        line = text[:end].rstrip()
        if after and line.endswith(after):
            end = len(line) - len(after)
        return end

    def _cut_block(self, text: str, final: bool, truncated: bool) -> int | None:
        lines = text.split("\n")
        complete = len(lines) if final else len(lines) - 1  # the last piece may still grow
        if final and truncated and len(lines) > 1:
            complete -= 1  # a line cut by the token limit is not offered
        cursor_line = self.line_before + lines[0]
        base = _indent(cursor_line)
        has_code = bool(self.line_before.strip())  # the user started a statement on this line
        depth = max(0, block_delta(cursor_line))
        continued = cursor_line.rstrip().endswith("\\")
        pos = len(lines[0])  # offset of the newline that ends line i-1
        for i in range(1, complete):
            line = lines[i]
            delta = block_delta(line)
            stop_before = (
                not line.strip()
                or (self.next_line is not None and line.strip() == self.next_line.strip())
                or (i > 1 and line == lines[i - 1])  # a small model caught in a loop
                or _indent(line) < base
                or (delta < 0 and depth == 0)
                or (depth == 0 and has_code and not continued and _indent(line) == base)
            )
            if stop_before:
                return pos
            depth += delta
            continued = line.rstrip().endswith("\\")
            pos += 1 + len(line)
            if delta < 0 and depth == 0:
                return pos  # the closer of the block the suggestion opened ends it
        if final:
            return pos if complete < len(lines) else len(text)
        partial = lines[complete] if complete >= 1 else ""
        if partial.strip() and (
            _indent(partial) < base or (depth == 0 and has_code and not continued and _indent(partial) == base)
        ):
            return pos  # decided by the growing line's indentation alone: no need to decode the rest of it
        return None

    def _cut_generate(self, text: str, final: bool) -> int | None:
        lines = text.split("\n")
        complete = len(lines) if final else len(lines) - 1
        pos = 0  # offset of the start of line i
        depth, continued = 0, False  # blocks the script opened and has not closed; a trailing backslash
        for i in range(complete):
            line = lines[i]
            if line.strip() and self.next_line is not None and line.rstrip() == self.next_line.rstrip():
                return max(0, pos - 1)
            if i > 0 and not line.strip() and depth <= 0 and not continued:
                return max(0, pos - 1)  # the end of the block: a blank line after complete statements
            if i > 0 and line.startswith("#") and not lines[i - 1].strip():
                return max(0, pos - 1 - len(lines[i - 1]) - 1)
            if i > 0 and line.strip() and line == lines[i - 1]:  # a small model caught in a loop
                return max(0, pos - 1)
            depth += block_delta(line)
            continued = line.rstrip().endswith("\\")
            pos += len(line) + 1
        if final:
            return len(text)
        # a blank line followed by a comment may still be forming: "...\n\n#"
        return None
