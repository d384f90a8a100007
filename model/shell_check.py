"""`bash -n` and `shellcheck`, run on suggested and generated code before it is offered.

Like bash-language-server's executables module: each program is looked up and tried once
(`--version`); a missing or broken one is switched off with one warning, and every later check
says "unknown" instead of failing. The checks run in a subprocess with a timeout and a clean
environment (no BASH_ENV, so nothing of the user's is sourced).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SYNTAX_TIMEOUT_S = 3.0
SHELLCHECK_TIMEOUT_S = 10.0
MAX_CHECK_CHARS = 2 * 1024 * 1024
_ERROR_LINE = re.compile(r"line (\d+):")


@dataclass
class SyntaxResult:
    ok: bool | None  # None: could not check (bash missing, timeout, too large)
    message: str = ""
    line: int | None = None  # 1-based line bash names
    end_of_file: bool = False  # the error is only "a construct is still open at the end"


@dataclass
class Finding:
    line: int  # 1-based
    column: int
    code: int
    level: str  # error | warning | info | style
    message: str

    def describe(self) -> str:
        return f"SC{self.code} ({self.level}, line {self.line}): {self.message}"


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "HOME", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


class Executable:
    """A program found and tried once; `path` is None when it is unusable."""

    def __init__(self, name: str, warn: Callable[[str], None], version_args: tuple[str, ...] = ("--version",)) -> None:
        self.name = name
        self.path: str | None = None
        self.problem: str | None = None
        found = shutil.which(name)
        if found is None:
            self.problem = f"{name} was not found on PATH"
        else:
            try:
                subprocess.run([found, *version_args], capture_output=True, timeout=10, check=True, env=_clean_env())
                self.path = found
            except (OSError, subprocess.SubprocessError) as exc:
                self.problem = f"{name} at {found} does not run: {exc}"
        if self.problem:
            warn(f"{self.problem}; the checks that need it are switched off")

    @property
    def available(self) -> bool:
        return self.path is not None

    def run(self, args: list[str], text: str, timeout: float) -> subprocess.CompletedProcess | None:
        if self.path is None:
            return None
        try:
            return subprocess.run(
                [self.path, *args],
                input=text.encode("utf-8", "replace"),
                capture_output=True,
                timeout=timeout,
                env=_clean_env(),
            )
        except subprocess.TimeoutExpired:
            logger.warning("%s timed out after %.0f s", self.name, timeout)
        except OSError as exc:
            logger.warning("%s failed: %s", self.name, exc)
        return None


class ShellTools:
    def __init__(self, warn: Callable[[str], None] = logger.warning) -> None:
        self.bash = Executable("bash", warn)
        self.shellcheck = Executable("shellcheck", warn)

    def check_syntax(self, text: str) -> SyntaxResult:
        """`bash -n` on `text` (extglob on, as scripts that use it set it at run time)."""
        if len(text) > MAX_CHECK_CHARS:
            return SyntaxResult(ok=None, message="too large to check")
        done = self.bash.run(["-O", "extglob", "-n"], text, SYNTAX_TIMEOUT_S)
        if done is None:
            return SyntaxResult(ok=None, message="bash is unavailable")
        if done.returncode == 0:
            return SyntaxResult(ok=True)
        message = done.stderr.decode("utf-8", "replace").strip()
        match = _ERROR_LINE.search(message)
        return SyntaxResult(
            ok=False,
            message=message,
            line=int(match.group(1)) if match else None,
            end_of_file="unexpected end of file" in message,
        )

    def findings(self, text: str, severity: str = "warning") -> list[Finding] | None:
        """shellcheck's findings at `severity` or worse; None when shellcheck is unavailable."""
        if not self.shellcheck.available or len(text) > MAX_CHECK_CHARS:
            return None
        done = self.shellcheck.run(
            ["--format=json1", "--shell=bash", f"--severity={severity}", "-"], text, SHELLCHECK_TIMEOUT_S
        )
        if done is None:
            return None
        try:
            comments = json.loads(done.stdout or b"{}").get("comments", [])
        except (ValueError, AttributeError):
            logger.warning("shellcheck printed something that is not its JSON report")
            return None
        return [
            Finding(
                line=c.get("line", 0),
                column=c.get("column", 0),
                code=c.get("code", 0),
                level=c.get("level", "?"),
                message=c.get("message", ""),
            )
            for c in comments
            if isinstance(c, dict)
        ]


def introduces_syntax_error(tools: ShellTools, before: str, inserted: str, after: str) -> bool:
    """Whether inserting `inserted` between `before` and `after` breaks the script's syntax.

    A suggestion in the middle of a block may leave that block open ("unexpected end of file"),
    which is fine while the user is still typing it; an error inside the inserted lines is not.
    Unknown (bash missing) counts as no error.
    """
    with_it = tools.check_syntax(before + inserted + after)
    if with_it.ok is not False:
        return False
    without = tools.check_syntax(before + after)
    if without.ok:
        return True  # the document was fine and the suggestion broke it
    alone = tools.check_syntax(before + inserted)
    if alone.ok is not False or alone.end_of_file:
        return False
    cursor_line = before.count("\n") + 1
    # An error bash places before the cursor line is in the user's text: we cannot judge.
    return alone.line is None or alone.line >= cursor_line
