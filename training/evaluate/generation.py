"""Comment-to-script generation: the share of generated scripts that pass `bash -n`.

From `#!/bin/bash\\n# <description>\\n`: single raw samples (T=0.8, top-p 0.95, up to 128 tokens,
the engine's text mode with code first below the comment, stopping at a blank line or end of
file; `generation_pass_rate`), and the server's Generate script from comment (the engine's
generate mode and the tries of `bashlsp.model.generation`; `server_generation_pass_rate`): the
share for which a user is offered a script. Checked with the server's `bash -O extglob -n`
(`bashlsp.model.shell_check`: parse only, generated code is never executed). A generation
without a line of code (empty, or only comments) counts as a failure: it passes `bash -n`
trivially but completes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...model.engine import CompletionQuery, Engine
from ...model.errors import BashlspError
from ...model.generation import (
    MAX_TOKENS,
    RETRY_TEMPERATURE,
    SAMPLES,
    generate_with_engine,
    has_code_line,
)
from ...model.shell_check import ShellTools
from .completers import as_served
from .progress import progress_bar

DEFAULT_GENERATIONS = 40
GENERATION_TOKENS = 128
GENERATION_TEMPERATURE = 0.8
GENERATION_TOP_P = 0.95
GENERATION_HEADER = "#!/bin/bash\n"


def shell_tools():
    """The server's `bash -n` (and shellcheck) runner; a clear error when bash is missing, since
    then no generation could be judged."""
    tools = ShellTools(warn=lambda message: None)  # shellcheck is optional here
    if not tools.bash.available:
        raise BashlspError(f"generations are checked with bash -n: {tools.bash.problem}")
    return tools


def generation_prompt(description: str) -> str:
    return f"{GENERATION_HEADER}# {' '.join(description.split())}\n"


_NOT_A_DESCRIPTION = re.compile(r"^(!|\s*-\*-|\s*(vim?|ex):|\s*shellcheck\b|\s*(TODO|FIXME|XXX)\b)", re.IGNORECASE)


def comment_descriptions(text: str, max_block_lines: int = 3) -> list[str]:
    """Descriptions from comment blocks directly followed by code, as a writer of the script used
    them: a block of at most `max_block_lines` `# ...` lines (joined) whose next line is code.
    Skips the shebang, mode lines, shellcheck directives, TODO notes and comments without a word."""
    descriptions = []
    block: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#!"):  # a shebang is no description
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped[1:].strip())
            continue
        if stripped and block and len(block) <= max_block_lines:
            description = " ".join(" ".join(block).split())
            if (
                description
                and not _NOT_A_DESCRIPTION.match(description)
                and re.search(r"[A-Za-z]{3}", description)
                and len(description) <= 200
            ):
                descriptions.append(description)
        block = []
    return descriptions


def read_generation_pairs(path: Path) -> tuple[list[str], str]:
    """Descriptions from a tldr pairs file (JSON lines with description, command, page, split):
    the holdout pairs when the file marks a split, else all of them."""
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BashlspError(f"{path}:{number}: not JSON: {exc}") from exc
                if not isinstance(record, dict) or not isinstance(record.get("description"), str):
                    raise BashlspError(f"{path}:{number}: expected an object with a 'description' string")
                records.append(record)
    except OSError as exc:
        raise BashlspError(f"cannot read {path}: {exc}") from exc
    holdout = [r for r in records if r.get("split") == "holdout"]
    if holdout:
        return [r["description"] for r in holdout], f"{path} (holdout pairs)"
    return [r["description"] for r in records], f"{path} (all pairs: none marked holdout)"


def generation_pass_rate(
    loaded,
    descriptions: Sequence[str],
    seed: int = 0,
    max_new_tokens: int = GENERATION_TOKENS,
    temperature: float = GENERATION_TEMPERATURE,
    top_p: float = GENERATION_TOP_P,
    progress: bool = False,
) -> dict:
    """Share of scripts generated from `#!/bin/bash\\n# <description>\\n` that pass `bash -n`.

    One sample per description (the engine's text mode, seeded with seed + its index) whose first
    bytes must begin code, as in the server, stopping at a blank line or end of file. Generations
    without a line of code (empty, or comments only) count as failures."""
    tools = shell_tools()
    engine = Engine(as_served(loaded))
    passed = no_code = cut = 0
    examples = []
    for index, description in enumerate(progress_bar(descriptions, "generation", progress)):
        prompt = generation_prompt(description)
        query = CompletionQuery(
            uri="bashlsp-eval-raw",
            prefix=prompt,
            suffix="",
            mode="text",
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=("\n\n",),  # the script ends at its first blank line
            code_first=True,  # as the server's generate-from-comment does
        )
        engine.rng = np.random.default_rng(seed + index)
        samples = engine.complete(query).suggestions
        code = samples[0].text if samples else ""
        has_code = has_code_line(code)
        ok = has_code and tools.check_syntax(prompt + code).ok is True
        passed += ok
        no_code += not has_code
        cut += bool(samples) and samples[0].tokens >= max_new_tokens
        if len(examples) < 3:
            examples.append({"description": description, "generated": code, "passes": ok})
    total = len(descriptions)
    return {
        "pass_rate": passed / total if total else float("nan"),
        "passed": passed,
        "total": total,
        "no_code": no_code,  # empty or comments only
        "cut_at_max_tokens": cut,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "examples": examples,
    }


def server_generation_pass_rate(loaded, descriptions: Sequence[str], seed: int = 0, progress: bool = False) -> dict:
    """Share of descriptions for which the server's Generate-script-from-comment, with its
    default settings, offers a script: the engine in generate mode (its stop rules) and the
    tries of `bashlsp.model.generation` (the greedy script, then SAMPLES sampled ones; the
    first that has code and passes `bash -n` wins). What an editor user gets, where
    generation_pass_rate measures single raw samples."""
    tools = shell_tools()
    engine = Engine(as_served(loaded), seed=seed)
    offered = first_try = tried = 0
    examples = []

    for description in progress_bar(descriptions, "generation (server)", progress):
        generated = generate_with_engine(
            engine, tools, generation_prompt(description), "bashlsp-eval-generate", rank=False
        )
        tried += generated.tried
        offered += generated.script is not None
        first_try += generated.attempt == 0
        if len(examples) < 3:
            examples.append({"description": description, "script": generated.script})
    total = len(descriptions)
    return {
        "pass_rate": offered / total if total else float("nan"),
        "offered": offered,
        "greedy_passed": first_try,  # offered on the first (greedy) attempt
        "total": total,
        "scripts_checked": tried,  # scripts with a line of code that bash -n checked
        "samples": SAMPLES,
        "retry_temperature": RETRY_TEMPERATURE,
        "max_new_tokens": MAX_TOKENS,
        "examples": examples,
    }
