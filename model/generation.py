"""Generate script from comment: which scripts are tried, which one is offered.

A pure function of three callables, so the language server (its worker-thread engine and tool
runner) and `bashlsp eval` (the engine and tools called directly) run the same tries:

- `complete(samples, temperature)`: scripts for the comment, as engine suggestions (text, score);
- `check_syntax(script)`: a `SyntaxResult` (`ShellTools.check_syntax`: `bash -O extglob -n`);
- `findings(script)`: shellcheck findings used to rank the scripts that pass, or None.

The tries (`attempts`): the script at the editor's temperature (greedy by default), then
`samples` sampled ones. The first try with a script that has a line of code and passes
`bash -n` wins; among its passing scripts, the one with the fewest serious shellcheck findings,
then the fewest findings, then the likeliest. Generated code is only parsed, never executed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .shell_check import Finding, SyntaxResult

RETRY_TEMPERATURE = 0.8  # the sampled tries: varied enough to get past a greedy script that does not parse
SAMPLES = 4  # sampled scripts in the second try (the editor setting generate.samples)
MAX_TOKENS = 128  # most tokens for one script (the editor setting generate.maxTokens)


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


def attempts(temperature: float = 0.0, samples: int = SAMPLES) -> list[tuple[int, float]]:
    """(samples, temperature) of each try: one script at `temperature`, then `samples` sampled ones."""
    return [(1, temperature), (samples, max(temperature, RETRY_TEMPERATURE))]


def has_code_line(code: str) -> bool:
    """Whether a script has a line that is neither blank nor a comment: only comments is no
    script, though `bash -n` passes it."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in code.split("\n"))


def _rank(candidate: tuple[Scored, list[Finding] | None]) -> tuple:
    suggestion, findings = candidate
    serious = sum(1 for f in findings or [] if f.level in ("error", "warning"))
    return (serious, len(findings or []), -suggestion.score)


async def generate_script(
    complete: Callable[[int, float], Awaitable[Sequence[Scored]]],
    check_syntax: Callable[[str], Awaitable[SyntaxResult]],
    findings: Callable[[str], Awaitable[list[Finding] | None]] | None = None,
    tries: Sequence[tuple[int, float]] | None = None,
) -> Generated:
    """The script to offer for a comment (see the module docstring); `tries` defaults to `attempts()`."""
    tried, first_error = 0, None
    for index, (num_samples, temperature) in enumerate(attempts() if tries is None else tries):
        passing: list[tuple[Scored, list[Finding] | None]] = []
        for suggestion in await complete(num_samples, temperature):
            script = suggestion.text.strip("\n")
            if not has_code_line(script):
                continue
            tried += 1
            result = await check_syntax(script + "\n")
            if result.ok is False:
                first_error = first_error or result.message
                continue
            found = await findings(script + "\n") if findings is not None else None
            passing.append((suggestion, found))
        if passing:
            best, found = min(passing, key=_rank)
            return Generated(script=best.text.strip("\n") + "\n", findings=found or [], tried=tried, attempt=index)
    if tried == 0:
        problem = "the model produced no code for this comment"
    else:
        reason = first_error.splitlines()[0] if first_error else "syntax error"
        problem = f"none of {tried} generated scripts passed bash -n ({reason})"
    return Generated(script=None, tried=tried, problem=problem)


def generate_with_engine(engine, shell, prompt: str, uri: str, rank: bool = True) -> Generated:
    """`generate_script` for `prompt` with a local engine and shell tools, outside the server
    (`bashlsp generate --from-comment`, eval): the action's tries, checks and, with `rank` and
    shellcheck installed, its ranking. Blocks until the script is chosen."""
    import asyncio

    from .engine import CompletionQuery

    async def complete(num_samples: int, temperature: float):
        query = CompletionQuery(
            uri=uri,
            prefix=prompt,
            suffix="",
            mode="generate",
            max_tokens=MAX_TOKENS,
            temperature=temperature,
            num_samples=num_samples,
        )
        return engine.complete(query).suggestions

    async def check_syntax(script: str):
        return shell.check_syntax(script)

    async def findings(script: str):
        return shell.findings(script, "info")

    ranking = findings if rank and shell.shellcheck.available else None
    return asyncio.run(generate_script(complete, check_syntax, ranking, tries=attempts()))
