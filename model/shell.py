"""Decide whether a file or an open document is a shell script (sh/bash family); stdlib only.

The one shell detector of bashlsp, in the bottom layer because three parts ask the same
question: the corpus builder (Debian packages), personal training and eval (the user's
scripts), and the server (is this open document one it serves?). All want precision over
recall: a Python or Perl file in a shell corpus teaches the model wrong habits, while missing
one odd shell file costs little.

The rules, in the order they are applied (the first that matches gives the reason):

1. Binary content (NUL bytes, many control bytes, or mostly non-UTF-8 high bytes) is never shell.
2. A ``#!`` line decides on its own: ``sh``, ``bash``, ``dash``, ``ksh``, ``mksh``, ``ash`` or
   ``posh`` (directly or through ``env``) is shell; any other interpreter is not, even for a
   file named ``*.sh``. zsh, csh and fish are not accepted: their syntax is not bash's.
   A ``#!`` naming nothing (a shebang still being typed) says nothing; the next rules decide.
2a. An open document whose editor language id is a shell one (``shellscript``, ``sh``, ``bash``).
3. A file without a shebang inside a zsh or fish directory (``/usr/share/zsh/vendor-completions/``,
   ``site-functions/``, ``fish/``) is not shell: zsh completion files parse as bash but are not.
4. Extension ``.sh`` or ``.bash``.
5. A bash startup file by name (``.bashrc``, ``bash.bashrc``, ``.profile``, ...).
6. A file in a bash-completion directory (``bash-completion/completions/``, ``bash_completion.d/``):
   these are bash, sourced without a shebang.
7. An editor mode line naming shell: Emacs ``-*- sh -*-`` / ``-*- mode: sh -*-`` or Vim
   ``vim: ft=sh`` / ``vi: set filetype=bash:`` in the first lines.
8. A shell library without a shebang: a name like ``*functions*``, ``*-sh-setup``, ``*.subr``,
   ``*.shlib`` with content that looks like shell; or, for a file with no extension at all,
   content that looks strongly like shell (function definitions and several block closers such
   as ``fi``/``done``/``esac``). Callers should still check such files with ``bash -n``
   (`bash_accepts`, the one function here that runs a program).
"""

from __future__ import annotations

import codecs
import re
import subprocess
from pathlib import PurePath

BASH_CHECK_TIMEOUT_S = 30

# How many leading bytes callers should pass as `head`; enough to see a shebang and, for
# shebang-less libraries, a few functions.
HEAD_BYTES = 8192

# Larger files with a shell name are generated (configure) or data, not code anyone writes: the
# cap for packaged scripts (the corpus builder).
MAX_SCRIPT_BYTES = 1 << 20
# The cap for a user's own scripts (personal training, the workspace index): a hand-written script
# is rarely larger, and one that is costs training and indexing time out of proportion.
MAX_USER_SCRIPT_BYTES = 256 * 1024
# Folders of tools, not of the user's scripts: never walked.
SKIPPED_DIR_NAMES = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".tox", ".mypy_cache"})

SHELL_LANGUAGE_IDS = frozenset({"shellscript", "sh", "bash"})  # LSP language ids editors give shell
SHELL_INTERPRETERS = frozenset({"sh", "bash", "dash", "ksh", "ksh93", "mksh", "ash", "posh"})
SHELL_EXTENSIONS = frozenset({".sh", ".bash"})
STARTUP_FILE_NAMES = frozenset(
    {
        ".bashrc",
        "bashrc",
        "bash.bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".bash_aliases",
        ".profile",
    }
)
# Emacs and Vim mode lines that name a shell mode. Only the first MODE_LINE_LINES lines count.
MODE_LINE_LINES = 5
_EMACS_MODE_LINE = re.compile(r"-\*-\s*(?:mode:\s*)?(sh|bash|ksh|shell-script)\s*(?:;[^\n]*)?-\*-", re.IGNORECASE)
_VIM_MODE_LINE = re.compile(r"\b(?:vi|vim|ex):.*\b(?:ft|filetype|syntax)=(sh|bash|ksh)\b")

# Extensions a shebang-less shell library may carry when its name already says "library".
LIBRARY_EXTENSIONS = frozenset({"", ".subr", ".shlib", ".lib", ".inc", ".functions"})
LIBRARY_NAME_PATTERN = re.compile(r"(functions|-sh-setup$|-sh-lib$|-sh-i18n$|\.subr$|\.shlib$)")

# Control bytes that ordinary text never holds. Tab, newline, carriage return, form feed,
# vertical tab, backspace and escape (colour codes in scripts) are allowed.
_TEXT_CONTROL_BYTES = {0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}
_SUSPICIOUS_BYTES = bytes(b for b in range(0x20) if b not in _TEXT_CONTROL_BYTES) + b"\x7f"

# Lines that, taken together, only shell code has. Each pattern counts once per line.
_FUNCTION_DEFINITION = re.compile(r"^\s*(function\s+[\w:.@+-]+\s*(\(\s*\))?|[\w:.@+-]+\s*\(\s*\))\s*\{?\s*(#.*)?$")
_BLOCK_CLOSER = re.compile(r"^\s*(fi|done|esac)\b\s*(;.*|[|&<>].*|#.*)?$")
# `(?=(\s*))\1` takes the indentation atomically: a plain `\s*` gave back one space at a time and
# retried every branch (`.*;;` scans the line), quadratic on a long run of spaces.
_SHELL_SIGNAL = re.compile(
    r"""^(?=(\s*))\1(
        (el)?if\s+.*;\s*then\b | (el)?if\s+\[\[?\s | then\b | else\b | do\b
      | for\s+\w+(\s+in\b|\s*$) | while\s+.*(;\s*do\b|$) | case\s+.+\s+in\s*$
      | [^\s()]+\)\s*$ | .*;;\s*(\#.*)?$
      | (local|export|readonly|declare|typeset)\s+-?\w
      | \w+=(["'$(]|\S*$) | (return|exit)(\s+\S+)?\s*$ | \}\s*$
      | \[\[?\s.*\]\]?\s*(&&|\|\|) | (\.|source)\s+\S+\s*$
    )""",
    re.VERBOSE,
)


def is_binary(head: bytes) -> bool:
    """True if `head` (a file's first bytes) is not text a shell script could be made of.

    Binary means: a NUL byte; more than 5 % control bytes that text never holds; or bytes that
    are not valid UTF-8 *and* make up more than 30 % of the head with their high bit set (so a
    script in Latin-1 with a few accented letters is text, not binary; the corpus builder drops
    it later for not being UTF-8). A multi-byte character cut off at the end of `head` is fine.
    """
    if not head:
        return False
    if b"\x00" in head:
        return True
    suspicious = sum(head.count(bytes([b])) for b in _SUSPICIOUS_BYTES)
    if suspicious > 0.05 * len(head):
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        high_bit = sum(1 for b in head if b >= 0x80)
        return high_bit > 0.3 * len(head)
    return False


def shebang_interpreter(head: bytes) -> str | None:
    """The interpreter named by a ``#!`` line, as a base name ('bash', 'python3'), or None.

    ``#!/usr/bin/env bash`` and ``#!/usr/bin/env -S bash -e`` give 'bash'; options after the
    interpreter (``#!/bin/bash -e``) are ignored. Returns '' for a ``#!`` line naming nothing.
    """
    if not head.startswith(b"#!"):
        return None
    first_line = head[2:].split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    words = first_line.split()
    if not words:
        return ""
    program = words[0].rsplit("/", 1)[-1]
    if program == "env":
        # Skip env's options (-S, -i, -u NAME) and VAR=value assignments to reach the command.
        rest = words[1:]
        while rest and (rest[0].startswith("-") or "=" in rest[0]):
            option = rest.pop(0)
            if option in ("-u", "--unset", "-C", "--chdir") and rest:
                rest.pop(0)
        return rest[0].rsplit("/", 1)[-1] if rest else ""
    return program


def is_bash_completion_path(path: PurePath) -> bool:
    """True for files inside a bash-completion directory (`.../bash-completion/completions/x`,
    `.../bash_completion.d/x`), which bash sources without needing a shebang."""
    parts = path.parts[:-1]
    if "bash_completion.d" in parts:
        return True
    return any(a == "bash-completion" and b == "completions" for a, b in zip(parts, parts[1:]))


def is_other_shell_path(path: PurePath) -> bool:
    """True for files under a zsh or fish directory (`zsh/`, `site-functions/`, `fish/`,
    `vendor_completions.d` of fish): their completion files are zsh or fish code."""
    parts = [part.lower() for part in path.parts[:-1]]
    return any("zsh" in part or "fish" in part or part == "site-functions" for part in parts)


def mode_line_shell(text: str) -> str | None:
    """The shell named by an Emacs or Vim mode line in the first lines of `text`, or None."""
    for line in text.splitlines()[:MODE_LINE_LINES]:
        match = _EMACS_MODE_LINE.search(line) or _VIM_MODE_LINE.search(line)
        if match:
            return match.group(1).lower()
    return None


def shell_line_counts(text: str) -> tuple[int, int, int, int]:
    """Count (function definitions, block closers, shell-typical lines, code lines) in `text`.

    Code lines are the non-blank lines that are not comments. Used to judge shebang-less files.
    """
    functions = closers = signals = code = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        code += 1
        if _FUNCTION_DEFINITION.match(line):
            functions += 1
            signals += 1
        elif _BLOCK_CLOSER.match(line):
            closers += 1
            signals += 1
        elif _SHELL_SIGNAL.match(line):
            signals += 1
    return functions, closers, signals, code


def looks_like_shell(text: str, *, strict: bool) -> bool:
    """Judge from content alone whether shebang-less `text` is shell code.

    Lenient (the file's name already says it is a shell library): at least three shell-typical
    lines making up at least 30 % of the code lines. Strict (nothing else speaks for it): at
    least one function definition, three block closers (fi/done/esac), and shell-typical lines
    making up at least half of the code lines. Prose, configuration files and other languages
    fail the share test.
    """
    functions, closers, signals, code = shell_line_counts(text)
    if code == 0:
        return False
    if strict:
        return functions >= 1 and closers >= 3 and signals >= 0.5 * code
    return signals >= 3 and signals >= 0.3 * code


def _decode_head(head: bytes) -> str:
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head, final=False)


def shell_reason(path: PurePath, head: bytes, language_id: str | None = None) -> str | None:
    """Why the file at `path`, starting with bytes `head`, counts as a shell script; None if not.

    `head` should be the file's first HEAD_BYTES bytes (the whole file if shorter); the server
    passes an open document's path and its editor `language_id` too. The reason is one of:
    'shebang <interpreter>', 'languageId <id>', 'extension .sh', 'extension .bash', 'shell
    startup file', 'bash-completion file', 'mode line <shell>', 'shell library'. See the module
    docstring for the rules. Does not run anything: callers that need certainty run ``bash -n``.
    """
    if is_binary(head):
        return None
    interpreter = shebang_interpreter(head)
    if interpreter:
        # A shebang is the author's own statement of the language; it wins over the name.
        return f"shebang {interpreter}" if interpreter in SHELL_INTERPRETERS else None
    if language_id in SHELL_LANGUAGE_IDS:
        return f"languageId {language_id}"
    if is_other_shell_path(path):
        return None
    suffix = path.suffix.lower()
    if suffix in SHELL_EXTENSIONS:
        return f"extension {suffix}"
    if path.name in STARTUP_FILE_NAMES:
        return "shell startup file"
    if is_bash_completion_path(path):
        return "bash-completion file"
    text = _decode_head(head)
    mode = mode_line_shell(text)
    if mode is not None:
        return f"mode line {mode}"
    if suffix not in LIBRARY_EXTENSIONS:
        return None
    if LIBRARY_NAME_PATTERN.search(path.name) and looks_like_shell(text, strict=False):
        return "shell library"
    if suffix == "" and looks_like_shell(text, strict=True):
        return "shell library"
    return None


def bash_accepts(text: str) -> bool:
    """True if ``bash -n`` parses `text` (nothing is executed). extglob is on because
    bash-completion and many scripts enable it at run time, and bash parses ``@(a|b)`` only
    when it is on. A parse that takes over BASH_CHECK_TIMEOUT_S seconds counts as a failure."""
    try:
        result = subprocess.run(
            ["bash", "-O", "extglob", "-n"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=BASH_CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0
