"""What is certain from the document itself: the variables and functions it defines.

Found with regular expressions over the lines (no full parse): assignments (plain, export,
local, declare/typeset/readonly), `for NAME in`, `read [-opts] NAME...`, `select NAME`, and
function definitions (`name() {`, `function name {`). Good enough to offer `$NAME` after `$`/`${`
and function names where a command starts.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Every pattern here runs over the user's lines: each must take time linear in the line (no nested
# quantifiers over overlapping classes; no unbounded scan that every start position repeats).
# tests/server/test_regex_linear.py holds them to it. The subscript of `arr[...]=` is bounded for that reason.
_ASSIGN = re.compile(
    rf"(?:^|[;&|({{]\s*|\b(?:export|local|declare|typeset|readonly)\s+(?:-[A-Za-z]+\s+)*)({_NAME})(?:\[[^\]]{{0,200}}\])?\+?="
)
# Names separated by whitespace, one way only: `(NAME\s*)+` split one long name into names in
# exponentially many ways before failing at `=""` (issue 19: `export RBENV_THEME_PROMPT_PREFIX=""`).
_DECLARE_ONLY = re.compile(
    rf"^\s*(?:export|local|declare|typeset|readonly)\s+(?:-[A-Za-z]+\s+)*({_NAME}(?:\s+{_NAME})*)\s*$"
)
_FOR = re.compile(rf"\b(?:for|select)\s+({_NAME})\s+in\b")
_READ = re.compile(r"\bread\s+([^;&|]*)")
_FUNCTION = re.compile(
    r"^\s*(?:function\s+([A-Za-z_][\w:.-]*)\s*(?:\(\s*\))?\s*[{(]?|([A-Za-z_][\w:.-]*)\s*\(\s*\)\s*[{(]?)"
)
# `read -p PROMPT` / `-d DELIM` / `-n N` / `-t T` / `-u FD` / `-a ARRAY` take an argument.
_READ_OPTS_WITH_ARG = set("adinNptu")

# Where the cursor asks for a variable: `$na`, `${na`; group 1 is "{" or "", group 2 the partial name.
VARIABLE_CONTEXT = re.compile(rf"\$(\{{?)({_NAME}|)\Z")
# Where a command name starts: line start, after ; & | ( ` or `then do else`.
COMMAND_CONTEXT = re.compile(r"(?:^|[;&|(`]|\b(?:then|do|else|elif|if|while|until|!)\s)\s*([A-Za-z_][\w:.-]*)\Z")


@dataclass(frozen=True)
class Symbols:
    variables: tuple[str, ...]
    functions: tuple[str, ...]


def _read_names(args: str) -> list[str]:
    """The variable names of `read ARGS`, skipping options and their arguments."""
    try:
        words = shlex.split(args, comments=True)
    except ValueError:  # an unclosed quote while the user types
        words = args.split()
    names, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-") and len(word) > 1:
            skip = word[-1] in _READ_OPTS_WITH_ARG  # `-rp PROMPT`: the last option takes the next word
        elif re.fullmatch(_NAME, word):
            names.append(word)
        else:
            break  # a redirection or anything else ends the names
    return names


# Definitions sit at a line's start or after a separator near it; longer lines (minified code,
# data blobs) are scanned up to here, so one line costs bounded time whatever its length.
MAX_SCAN_LINE_CHARS = 4096


def scan(lines) -> Symbols:
    """Variables and functions defined in `lines`, in order of first definition."""
    variables: dict[str, None] = {}
    functions: dict[str, None] = {}
    for raw in lines:
        line = raw[:MAX_SCAN_LINE_CHARS].rstrip("\r\n")
        code = line.lstrip()
        if not code or code.startswith("#"):
            continue
        for match in _ASSIGN.finditer(line):
            variables.setdefault(match.group(1))
        if (match := _DECLARE_ONLY.match(line)) is not None:
            for name in match.group(1).split():
                variables.setdefault(name)
        for match in _FOR.finditer(line):
            variables.setdefault(match.group(1))
        for match in _READ.finditer(line):
            for name in _read_names(match.group(1)):
                variables.setdefault(name)
        if (match := _FUNCTION.match(line)) is not None:
            functions.setdefault(match.group(1) or match.group(2))
    return Symbols(variables=tuple(variables), functions=tuple(functions))


CHUNK_LINES = 256
# The cursor's context is read from the end of its line: a partial name longer than this is not
# worth completing, and a 1 MB line must not be searched at every keystroke.
CONTEXT_CHARS = 512


def cursor_context(line_before: str) -> str:
    """The end of the line before the cursor that the context patterns look at. A cut line starts
    with a NUL so that `^` cannot take the cut for a line start."""
    return line_before if len(line_before) <= CONTEXT_CHARS else "\x00" + line_before[-CONTEXT_CHARS:]


def scan_window(lines: list[str], previous: dict) -> tuple[Symbols, dict]:
    """Symbols of `lines` (document lines from a multiple of CHUNK_LINES), scanned in chunks
    of CHUNK_LINES, each reused from `previous` when its lines are the same; returns the symbols and
    the chunks for the next call. Pure: runs on any thread."""
    chunks: dict[tuple[str, ...], Symbols] = {}
    variables: dict[str, None] = {}
    functions: dict[str, None] = {}
    for offset in range(0, len(lines), CHUNK_LINES):
        chunk = tuple(lines[offset : offset + CHUNK_LINES])
        found = chunks.get(chunk) or previous.get(chunk) or scan(chunk)
        chunks[chunk] = found
        variables.update(dict.fromkeys(found.variables))
        functions.update(dict.fromkeys(found.functions))
    return Symbols(variables=tuple(variables), functions=tuple(functions)), chunks


async def document_symbols(doc, line: int, run, before: int = 20000, after: int = 1000) -> Symbols:
    """Symbols of a document (a window of lines around `line` for huge ones), scanned by `run`
    (an awaitable runner on a worker thread): the event loop only copies the window's line list.

    Chunks are cached by their lines: an edit touches one chunk, so typing in a 5 MB document
    rescans 256 lines, not 21,000 (a new line shifts the chunks after it: those are few)."""
    start = max(0, line - before) // CHUNK_LINES * CHUNK_LINES
    end = min(len(doc.lines), line + after)
    key = (doc.version, start, end)
    if doc.symbols_cache[0] == key:
        return doc.symbols_cache[1]
    symbols, chunks = await run(scan_window, doc.lines[start:end], doc.symbol_chunks)
    if doc.version == key[0]:  # an edit while scanning: the next request scans its version
        doc.symbol_chunks = chunks
        doc.symbols_cache = (key, symbols)
    return symbols
