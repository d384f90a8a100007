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
_ASSIGN = re.compile(
    rf"(?:^|[;&|({{]\s*|\b(?:export|local|declare|typeset|readonly)\s+(?:-[A-Za-z]+\s+)*)({_NAME})(?:\[[^\]]*\])?\+?="
)
_DECLARE_ONLY = re.compile(rf"^\s*(?:export|local|declare|typeset|readonly)\s+(?:-[A-Za-z]+\s+)*((?:{_NAME}\s*)+)$")
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


def scan(lines) -> Symbols:
    """Variables and functions defined in `lines`, in order of first definition."""
    variables: dict[str, None] = {}
    functions: dict[str, None] = {}
    for raw in lines:
        line = raw.rstrip("\r\n")
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


def document_symbols(doc, line: int, before: int = 20000, after: int = 1000) -> Symbols:
    """Symbols of a document (a window of lines around `line` for huge ones).

    Scanned in chunks of lines, each cached by its lines: an edit touches one chunk, so typing
    in a 5 MB document rescans 256 lines, not 21,000 (a new line shifts the chunks after it:
    those are few)."""
    start = max(0, line - before) // CHUNK_LINES * CHUNK_LINES
    end = min(len(doc.lines), line + after)
    key = (doc.version, start, end)
    if doc._symbols_cache[0] == key:
        return doc._symbols_cache[1]
    previous = doc._symbol_chunks
    chunks: dict[tuple[str, ...], Symbols] = {}
    variables: dict[str, None] = {}
    functions: dict[str, None] = {}
    for chunk_start in range(start, end, CHUNK_LINES):
        lines = tuple(doc.lines[chunk_start : min(end, chunk_start + CHUNK_LINES)])
        found = chunks.get(lines) or previous.get(lines) or scan(lines)
        chunks[lines] = found
        variables.update(dict.fromkeys(found.variables))
        functions.update(dict.fromkeys(found.functions))
    symbols = Symbols(variables=tuple(variables), functions=tuple(functions))
    doc._symbol_chunks = chunks
    doc._symbols_cache = (key, symbols)
    return symbols
