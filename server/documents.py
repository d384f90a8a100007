"""The open documents: which are shell, their text (incremental sync), positions.

The server keeps its own copy of each open document instead of pygls' workspace, because:
- pygls splits lines with `str.splitlines`, which also breaks at \\x0b, \\x0c, \\x1c-\\x1e, \\x85,
  \\u2028 and \\u2029, while LSP lines end only at \\n, \\r\\n and \\r: positions after such a
  character would point at the wrong place;
- pygls re-splits and re-joins the whole text on every keystroke, which costs tens of ms for a
  5 MB document; here an edit touches only the lines it changes.
Positions from the editor are clamped, never trusted: a line past the end means the end of the
document, a character past the end of its line means the end of that line (as LSP asks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from lsprotocol import types

from ..model.shell import HEAD_BYTES, is_binary
from ..model.shell import shell_reason as file_shell_reason
from ..model.tokenizer import clean_text

MAX_DOCUMENT_CHARS = 8 * 1024 * 1024  # larger documents are declined (logged once)
HEAD_LINES = 64  # the lines the shell detector reads (with at most HEAD_BYTES bytes)

_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
_WORD_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
PREFIX_CUT_STEP = 1024  # a cut inside one very long line moves in steps, so the engine's cache holds


def split_lines(text: str) -> list[str]:
    """LSP lines, each with its line break; the last item is the text after the last break
    (possibly ""), so `len(lines) - 1` is the last line number an editor can address."""
    parts = _LINE_BREAK.split(text)
    lines = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
    lines.append(parts[-1])
    return lines


def strip_break(line: str) -> str:
    return line.rstrip("\r\n")


def uri_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path or "")


def shell_reason(uri: str, language_id: str | None, head: str) -> str | None:
    """Why the document is a shell script, or None if it is not one: the detector the trainer
    uses too (`model.shell`), given the document's path, editor language id and first lines."""
    return file_shell_reason(PurePosixPath(uri_path(uri)), _head_bytes(head), language_id)


def _head_bytes(head: str) -> bytes:
    return head.encode("utf-8")[:HEAD_BYTES]


# -- positions -------------------------------------------------------------------------------------


def _units(char: str, encoding: str) -> int:
    code = ord(char)
    if encoding == types.PositionEncodingKind.Utf8:
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    if encoding == types.PositionEncodingKind.Utf16:
        return 2 if code >= 0x10000 else 1
    return 1


def index_from_units(line: str, units: int, encoding: str) -> int:
    """The code-point index in `line` (without its break) of a client character offset.
    Past the end means the end; inside a multi-unit character means before it."""
    if units <= 0:
        return 0
    if encoding == types.PositionEncodingKind.Utf32 or line.isascii():
        return min(units, len(line))
    seen = 0
    for index, char in enumerate(line):
        seen += _units(char, encoding)
        if seen > units:
            return index
    return len(line)


def units_from_index(line: str, index: int, encoding: str) -> int:
    if encoding == types.PositionEncodingKind.Utf32 or line.isascii():
        return index
    return sum(_units(c, encoding) for c in line[:index])


# -- documents -------------------------------------------------------------------------------------


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    lines: list[str]
    encoding: str = types.PositionEncodingKind.Utf16
    chars: int = 0  # total length, kept up to date by edits
    declined: str | None = None  # why the server does not serve it (not shell, too large, binary)
    shell: str | None = None  # why it is a shell script
    symbols_cache: tuple = field(default=(None, None), repr=False)  # (key, Symbols) of the last scan (symbols.py)
    symbol_chunks: dict = field(default_factory=dict, repr=False)  # lines of a chunk -> its Symbols

    # -- whole-document state

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def _reclassify(self) -> None:
        head = "".join(self.lines[:HEAD_LINES])[:HEAD_BYTES]
        self.shell = shell_reason(self.uri, self.language_id, head)
        if self.chars > MAX_DOCUMENT_CHARS:
            # No character count in the reason: it is logged once per reason, not per keystroke.
            self.declined = f"too large (over the limit of {MAX_DOCUMENT_CHARS} characters)"
        elif is_binary(_head_bytes(head)):
            self.declined = "looks binary (NUL or control characters)"
        elif self.shell is None:
            self.declined = "not a shell script"
        else:
            self.declined = None

    def replace_text(self, text: str) -> None:
        text = clean_text(text)
        self.lines = split_lines(text)
        self.chars = len(text)
        self._reclassify()

    # -- positions

    def clamp(self, position: types.Position) -> tuple[int, int]:
        """(line, code-point column) of a client position, clamped into the document."""
        if position.line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(strip_break(self.lines[last]))
        line = strip_break(self.lines[position.line])
        return position.line, index_from_units(line, position.character, self.encoding)

    def position(self, line: int, column: int) -> types.Position:
        text = strip_break(self.lines[line])
        return types.Position(line=line, character=units_from_index(text, column, self.encoding))

    @property
    def line_break(self) -> str:
        """The document's line break (that of its first line; "\n" for one-line documents)."""
        first = self.lines[0]
        return "\r\n" if first.endswith("\r\n") else "\r" if first.endswith("\r") else "\n"

    def native(self, text: str) -> str:
        """Model text (\n line breaks) with the document's line breaks."""
        return text if self.line_break == "\n" else text.replace("\n", self.line_break)

    def line_text(self, line: int) -> str:
        return strip_break(self.lines[line]) if 0 <= line < len(self.lines) else ""

    # -- edits

    def apply_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        if not isinstance(change, types.TextDocumentContentChangePartial) or change.range is None:
            self.replace_text(change.text)
            return
        start, end = self.clamp(change.range.start), self.clamp(change.range.end)
        if end < start:
            start, end = end, start
        # Re-split one line on either side too, so a \r and a \n that meet across the edit
        # become one \r\n line break, as they would in the editor.
        first, last = max(0, start[0] - 1), min(len(self.lines) - 1, end[0] + 1)
        before = "".join(self.lines[first : start[0]]) + self.lines[start[0]][: start[1]]
        after = self.lines[end[0]][end[1] :] + "".join(self.lines[end[0] + 1 : last + 1])
        old_chars = sum(len(line) for line in self.lines[first : last + 1])
        text = clean_text(change.text)
        segment = before + text + after
        new_lines = split_lines(segment)
        if last < len(self.lines) - 1:
            # Not at the end of the document: the segment ends with a line break, and the
            # trailing "" item of split_lines is the start of the next, untouched line.
            new_lines.pop()
        self.lines[first : last + 1] = new_lines
        if not self.lines:
            self.lines = [""]
        self.chars += len(segment) - old_chars
        if first == 0 or self.declined is not None or self.chars > MAX_DOCUMENT_CHARS:
            self._reclassify()

    # -- windows of text around a position

    def prefix(self, line: int, column: int, max_chars: int) -> str:
        """Text before (line, column), at most about `max_chars`, starting at a line start that
        stays put while the user types nearby (so the engine can reuse its cache)."""
        head = self.lines[line][:column]
        if len(head) > max_chars:
            # One line longer than the window (minified code, a base64 blob): its tail only.
            # Without the cut a 1 MB line went to the engine whole (seconds per request).
            cut = -(-(len(head) - max_chars) // PREFIX_CUT_STEP) * PREFIX_CUT_STEP
            return head[cut:]
        budget = max_chars - len(head)
        start = line
        while start > 0 and budget - len(self.lines[start - 1]) >= 0:
            start -= 1
            budget -= len(self.lines[start])
        if start > 0:
            start = min(line, start + (-start) % 64)  # snap forward to a multiple of 64 lines
        return "".join(self.lines[start:line]) + head

    def suffix(self, line: int, column: int, max_chars: int) -> str:
        """Text after (line, column), at most `max_chars`, ending at a line end where possible."""
        parts = [self.lines[line][column:]]
        total = len(parts[0])
        row = line + 1
        while row < len(self.lines) and total + len(self.lines[row]) <= max_chars:
            parts.append(self.lines[row])
            total += len(self.lines[row])
            row += 1
        return "".join(parts)[:max_chars]

    def word_before(self, line: int, column: int) -> str:
        # rstrip, not a regex search for `[A-Za-z0-9_]*\Z`: the search retries at every
        # position of a long word and took 20 s for a 40,000-character one (quadratic).
        head = self.lines[line][:column]
        return head[len(head.rstrip(_WORD_CHARS)) :]


class DocumentStore:
    """uri -> Document for every document the editor has open."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}
        self.encoding: str = types.PositionEncodingKind.Utf16

    def __len__(self) -> int:
        return len(self._docs)

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = Document(uri=uri, language_id=language_id or "", version=version, lines=[""], encoding=self.encoding)
        doc.replace_text(text)
        self._docs[uri] = doc
        return doc

    def change(self, uri: str, version: int, changes) -> Document | None:
        doc = self._docs.get(uri)
        if doc is None:
            return None
        for change in changes:
            doc.apply_change(change)
        doc.version = version
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def documents(self) -> list[Document]:
        return list(self._docs.values())
