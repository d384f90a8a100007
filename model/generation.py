"""Generate script from comment: which scripts are tried, which one is offered.

A pure function of three callables, so the language server (its worker-thread engine and tool
runner) and `bashlsp eval` (the engine and tools called directly) run the same tries:

- `complete(samples, temperature, max_tokens)`: scripts for the comment, as engine suggestions
  (text, score);
- `check_syntax(script)`: a `SyntaxResult` (`ShellTools.check_syntax`: `bash -O extglob -n`);
- `findings(script)`: shellcheck findings used to rank the scripts that pass, or None.

The tries (`attempts`): the script at the editor's temperature (greedy by default), then
`samples` sampled ones, decoded as one batch and bounded to RETRY_MAX_TOKENS (the batch lasts as
long as its longest row). The first try with a script that has a line of code and passes
`bash -n` wins; among its passing scripts, the one with the fewest serious shellcheck findings,
then the fewest findings, then the likeliest. A try's scripts are checked concurrently (`bash -n`
on all, then shellcheck on those that pass). Generated code is only parsed, never executed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .shell_check import Finding, SyntaxResult

RETRY_TEMPERATURE = 0.8  # the sampled tries: varied enough to get past a greedy script that does not parse
SAMPLES = 4  # sampled scripts in the second try (the editor setting generate.samples)
MAX_TOKENS = 128  # most tokens for one script (the editor setting generate.maxTokens)
# Most tokens for a sampled script. The engine ends a script at the end of its block, so a
# sampled row still running here is mostly one that never closes what it opened (fails `bash -n`
# anyway), and the batch waited for it (latency before and after: docs/benchmarks.md).
RETRY_MAX_TOKENS = 64


class Try(NamedTuple):
    samples: int
    temperature: float
    max_tokens: int = MAX_TOKENS


class Scored(Protocol):
    text: str
    score: float


@dataclass
class Generated:
    script: str | None  # the code to insert (ends with a newline), None if nothing passed
    findings: list[Finding] = field(default_factory=list)
    tried: int = 0  # scripts with code that were checked
    problem: str | None = None  # why nothing is offered
    attempt: int | None = None  # index of the try that gave the script

    def as_dict(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "tried": self.tried,
            "problem": self.problem,
            "findings": [f.__dict__ for f in self.findings],
        }


def attempts(temperature: float = 0.0, samples: int = SAMPLES, max_tokens: int = MAX_TOKENS) -> list[Try]:
    """The tries: one script at `temperature` of at most `max_tokens`, then `samples` sampled ones
    of at most min(max_tokens, RETRY_MAX_TOKENS)."""
    return [
        Try(1, temperature, max_tokens),
        Try(samples, max(temperature, RETRY_TEMPERATURE), min(max_tokens, RETRY_MAX_TOKENS)),
    ]


def has_code_line(code: str) -> bool:
    """Whether a script has a line that is neither blank nor a comment: only comments is no
    script, though `bash -n` passes it."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in code.split("\n"))


def _rank(candidate: tuple[Scored, list[Finding] | None]) -> tuple:
    suggestion, findings = candidate
    serious = sum(1 for f in findings or [] if f.level in ("error", "warning"))
    return (serious, len(findings or []), -suggestion.score)


class _Started(NamedTuple):
    text: str
    score: float


async def generate_script(
    complete: Callable[[int, float, int], Awaitable[Sequence[Scored]]],
    check_syntax: Callable[[str], Awaitable[SyntaxResult]],
    findings: Callable[[str], Awaitable[list[Finding] | None]] | None = None,
    tries: Sequence[Try] | None = None,
    start: str = "",
) -> Generated:
    """The script to offer for a comment (see the module docstring); `tries` defaults to `attempts()`.
    `start`: the beginning of the script, already at the end of the prompt `complete` continues
    (the top retrieved example's utility, `examples.script_start`); each script is `start` and
    what the model wrote after it."""
    tried, first_error = 0, None
    for index, (num_samples, temperature, max_tokens) in enumerate(attempts() if tries is None else tries):
        written = await complete(num_samples, temperature, max_tokens)
        if start:
            written = [_Started(start + s.text, s.score) for s in written]
        suggestions = [s for s in written if has_code_line(s.text)]
        tried += len(suggestions)
        scripts = [s.text.strip("\n") + "\n" for s in suggestions]
        results = await asyncio.gather(*(check_syntax(script) for script in scripts))
        ok = [(s, script) for s, script, result in zip(suggestions, scripts, results) if result.ok is not False]
        first_error = first_error or next((r.message for r in results if r.ok is False), None)
        found = (
            await asyncio.gather(*(findings(script) for _, script in ok)) if findings is not None else [None] * len(ok)
        )
        passing: list[tuple[Scored, list[Finding] | None]] = [(s, f) for (s, _), f in zip(ok, found)]
        if passing:
            best, found = min(passing, key=_rank)
            return Generated(script=best.text.strip("\n") + "\n", findings=found or [], tried=tried, attempt=index)
    if tried == 0:
        problem = "the model produced no code for this comment"
    else:
        reason = first_error.splitlines()[0] if first_error else "syntax error"
        problem = f"none of {tried} generated scripts passed bash -n ({reason})"
    return Generated(script=None, tried=tried, problem=problem)


def generate_with_engine(engine, shell, prompt: str, uri: str, rank: bool = True, start: str = "") -> Generated:
    """`generate_script` for `prompt` with a local engine and shell tools, outside the server
    (`bashlsp generate --from-comment`, eval): the action's tries, checks and, with `rank` and
    shellcheck installed, its ranking; `start` as there (this adds it to the prompt). Blocks until
    the script is chosen."""
    prompt += start
    from .engine import CompletionQuery

    async def complete(num_samples: int, temperature: float, max_tokens: int):
        query = CompletionQuery(
            uri=uri,
            prefix=prompt,
            suffix="",
            mode="generate",
            max_tokens=max_tokens,
            temperature=temperature,
            num_samples=num_samples,
        )
        return engine.complete(query).suggestions

    async def check_syntax(script: str):
        return shell.check_syntax(script)

    async def findings(script: str):
        return shell.findings(script, "info")

    ranking = findings if rank and shell.shellcheck.available else None
    return asyncio.run(generate_script(complete, check_syntax, ranking, tries=attempts(), start=start))
