"""Generate script from comment as a pure function (bashlsp.model.generation): the tries, the
bash -n gate and the ranking, with stand-ins for the engine and the tools."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bashlsp.model.generation import (
    MAX_TOKENS,
    RETRY_MAX_TOKENS,
    RETRY_TEMPERATURE,
    Try,
    attempts,
    generate_script,
    has_code_line,
)
from bashlsp.model.shell_check import Finding, ShellTools, SyntaxResult


@dataclass
class Scripted:
    text: str
    score: float = -1.0


def run(answers, findings=None, tries=None, syntax=None, start=""):
    """generate_script over canned answers per try; returns (result, the calls made)."""
    calls, tries_made = [], []

    async def complete(num_samples, temperature, max_tokens):
        calls.append((num_samples, temperature))
        tries_made.append(num_samples)
        return answers[len(tries_made) - 1] if len(tries_made) <= len(answers) else []

    async def check_syntax(script):
        calls.append(("check", script))
        if syntax is not None:
            return syntax(script)
        return SyntaxResult(ok="BAD" not in script, message="line 1: syntax error near BAD")

    async def lint(script):
        return findings(script)

    result = asyncio.run(generate_script(complete, check_syntax, lint if findings else None, tries, start))
    return result, calls


def test_a_given_start_begins_every_script_and_is_checked_with_it():
    """The prompt ends with the start (the best example's utility); the model writes the rest."""
    result, calls = run([[Scripted("-name BAD\n")], [Scripted("-name '*.sh'\n")]], start="find ")
    assert result.script == "find -name '*.sh'\n" and result.attempt == 1
    assert ("check", "find -name BAD\n") in calls


def test_the_first_try_that_passes_wins_and_later_tries_are_not_made():
    result, calls = run([[Scripted("ls -l\n")], [Scripted("never asked")]])
    assert result.script == "ls -l\n" and result.attempt == 0 and result.tried == 1
    assert calls == [(1, 0.0), ("check", "ls -l\n")]


def test_a_failing_greedy_script_leads_to_the_sampled_try():
    result, calls = run([[Scripted("BAD if")], [Scripted("BAD fi"), Scripted("\n\necho ok\n\n")]])
    assert result.script == "echo ok\n" and result.attempt == 1 and result.tried == 3
    assert [c for c in calls if c[0] != "check"] == [(1, 0.0), (4, RETRY_TEMPERATURE)]


def test_scripts_without_code_are_not_checked_or_offered():
    result, calls = run([[Scripted("# only a comment\n\n")], [Scripted(""), Scripted("  # more\n")]])
    assert result.script is None and result.tried == 0
    assert result.problem == "the model produced no code for this comment"
    assert not [c for c in calls if c[0] == "check"]


def test_nothing_passes_names_the_first_error():
    result, _ = run([[Scripted("BAD 1")], [Scripted("BAD 2"), Scripted("BAD 3")]])
    assert result.script is None and result.tried == 3
    assert result.problem == "none of 3 generated scripts passed bash -n (line 1: syntax error near BAD)"


def test_unknown_syntax_counts_as_passing():
    """bash missing or timed out (ok None): the server still offers the script."""
    result, _ = run([[Scripted("echo hi")]], syntax=lambda script: SyntaxResult(ok=None, message="bash is unavailable"))
    assert result.script == "echo hi\n"


def test_ranking_prefers_fewer_serious_findings_then_fewer_findings_then_score():
    def finding(level):
        return Finding(line=1, column=1, code=2086, level=level, message="m")

    lint = {
        "a\n": [finding("warning")],
        "b\n": [finding("info"), finding("style")],
        "c\n": [finding("info")],
        "d\n": [finding("info")],
    }
    answers = [[], [Scripted("a", -0.1), Scripted("b", -0.2), Scripted("c", -0.9), Scripted("d", -0.5)]]
    result, _ = run(answers, findings=lambda script: lint[script])
    assert result.script == "d\n" and result.findings == lint["d\n"] and result.attempt == 1


def test_attempts_follow_the_editor_temperature():
    assert attempts() == [(1, 0.0, MAX_TOKENS), (4, RETRY_TEMPERATURE, RETRY_MAX_TOKENS)]
    assert attempts(1.5, 2, 32) == [(1, 1.5, 32), (2, 1.5, 32)]  # the retry bound is never above the editor's
    tries = [Try(1, 0.0), Try(2, 0.5), Try(3, 1)]
    result, calls = run([[Scripted("BAD")], [Scripted("BAD")], [Scripted("pwd")]], tries=tries)
    assert result.attempt == 2 and [c for c in calls if c[0] != "check"] == [(1, 0.0), (2, 0.5), (3, 1)]


def test_has_code_line():
    assert has_code_line("ls -l\n")
    assert has_code_line("# list\n  ls -l")
    assert not has_code_line("")
    assert not has_code_line("# more words\n  # and more\n\n")


def test_with_the_real_bash_check():
    """The server's check (`bash -O extglob -n`) as the syntax gate."""
    tools = ShellTools(warn=lambda message: None)

    async def check_syntax(script):
        return tools.check_syntax(script)

    async def complete(num_samples, temperature, max_tokens):
        return [Scripted("if true; then\n")] if temperature == 0 else [Scripted("rm -- !(*.keep)\n")]

    result = asyncio.run(generate_script(complete, check_syntax))
    assert result.script == "rm -- !(*.keep)\n" and result.attempt == 1 and result.tried == 2
