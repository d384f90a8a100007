"""Generate script from comment: code for the comment block at the cursor, checked before use.

The prompt is the document up to the end of the comment block (and the text after it as the
fill-in-the-middle suffix). The greedy script is tried first; if `bash -n` rejects it, several
sampled ones are, and the first that passes wins (among those, the one with the fewest
shellcheck findings). If none passes, nothing is inserted and the editor is told why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types

from ..model.errors import DocumentError
from ..model.shell_check import Finding, SyntaxResult
from . import convert
from .completion import PREFIX_CHARS, SUFFIX_CHARS
from .documents import Document
from .engine import CompletionQuery, Suggestion

MAX_COMMENT_LINES = 200
RETRY_TEMPERATURE = 0.8


@dataclass
class CommentBlock:
    first: int  # line numbers, inclusive
    last: int
    indent: str


@dataclass
class Generated:
    script: str | None  # the code to insert (ends with a newline), None if nothing passed
    findings: list[Finding] = field(default_factory=list)
    tried: int = 0
    problem: str | None = None  # why nothing is offered

    def as_dict(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "tried": self.tried,
            "problem": self.problem,
            "findings": [f.__dict__ for f in self.findings],
        }


def _is_comment(text: str) -> bool:
    return text.lstrip().startswith("#")


def comment_block(doc: Document, selection: types.Range) -> CommentBlock | None:
    """The comment lines the action applies to: the selected lines if they are all comments
    (blank lines allowed), or the run of comment lines around an empty selection. The shebang
    is not a comment here."""
    start, _ = doc.clamp(selection.start)
    end, end_column = doc.clamp(selection.end)
    if end > start and end_column == 0:
        end -= 1  # a selection that ends at a line start does not include that line

    def usable(line: int) -> bool:
        text = doc.line_text(line)
        return _is_comment(text) and not (line == 0 and text.startswith("#!"))

    if start == end:
        if not usable(start):
            return None
        while start > 0 and usable(start - 1) and end - start < MAX_COMMENT_LINES:
            start -= 1
        while end + 1 < len(doc.lines) and usable(end + 1) and end - start < MAX_COMMENT_LINES:
            end += 1
    else:
        if end - start >= MAX_COMMENT_LINES:
            return None
        lines = range(start, end + 1)
        if not any(usable(i) for i in lines) or any(doc.line_text(i).strip() and not usable(i) for i in lines):
            return None
    first_text = doc.line_text(start)
    return CommentBlock(first=start, last=end, indent=first_text[: len(first_text) - len(first_text.lstrip())])


def insertion_point(doc: Document, block: CommentBlock) -> tuple[types.Position, str]:
    """Where the code goes (the start of the line after the block) and what must precede it."""
    if block.last + 1 < len(doc.lines):
        return doc.position(block.last + 1, 0), ""
    return doc.position(block.last, len(doc.line_text(block.last))), "\n"  # the block ends the file


def generation_attempts(settings) -> list[tuple[int, float]]:
    """(samples, temperature) of each try: the script at the editor's temperature (greedy by
    default), then `generate.samples` sampled ones. `bashlsp eval` measures the same tries."""
    return [(1, settings.temperature), (settings.generate.samples, max(settings.temperature, RETRY_TEMPERATURE))]


def _rank(candidate: tuple[Suggestion, list[Finding] | None]) -> tuple:
    suggestion, findings = candidate
    serious = sum(1 for f in findings or [] if f.level in ("error", "warning"))
    return (serious, len(findings or []), -suggestion.score)


async def generate(ls, ticket, doc: Document, block: CommentBlock) -> Generated:
    settings = ls.settings
    if block.last + 1 < len(doc.lines):
        prefix = doc.prefix(block.last + 1, 0, PREFIX_CHARS)
        suffix = doc.suffix(block.last + 1, 0, SUFFIX_CHARS)
    else:
        prefix = doc.prefix(block.last, len(doc.line_text(block.last)), PREFIX_CHARS) + "\n"
        suffix = ""
    attempts = generation_attempts(settings)
    tried, first_error = 0, None
    use_shellcheck = settings.shellcheck.enable and ls.tools.shellcheck.available
    for num_samples, temperature in attempts:
        query = CompletionQuery(
            uri=doc.uri,
            prefix=prefix,
            suffix=suffix,
            mode="generate",
            max_tokens=settings.generate.maxTokens,
            temperature=temperature,
            top_p=settings.topP,
            num_samples=num_samples,
        )
        suggestions = await ls.complete(ticket, query)
        passing: list[tuple[Suggestion, list[Finding] | None]] = []
        for suggestion in suggestions:
            script = suggestion.text.strip("\n")
            if not script.strip():
                continue
            tried += 1
            result: SyntaxResult = await ls.run_tool(ls.tools.check_syntax, script + "\n")
            if result.ok is False:
                first_error = first_error or result.message
                continue
            findings = await ls.run_tool(ls.tools.findings, script + "\n", "info") if use_shellcheck else None
            passing.append((suggestion, findings))
        if passing:
            best, findings = min(passing, key=_rank)
            return Generated(script=best.text.strip("\n") + "\n", findings=findings or [], tried=tried)
        if ls.host.engine is None:
            break
    if ls.host.engine is None:
        problem = "no model is loaded"
    elif tried == 0:
        problem = "the model produced no code for this comment"
    else:
        problem = f"none of {tried} generated scripts passed bash -n ({(first_error or '').splitlines()[0] if first_error else 'syntax error'})"
    return Generated(script=None, tried=tried, problem=problem)


def parse_target(arguments: Any) -> tuple[str, types.Range]:
    """(uri, range) from the command's arguments: [{"uri", "range"}], [{"textDocument": {"uri"},
    "range"}], [uri, range] or [uri, line]."""
    args = list(arguments or [])
    first = args[0] if args else None
    try:
        if isinstance(first, dict):
            uri = first.get("uri") or (first.get("textDocument") or {}).get("uri")
            raw_range = first.get("range")
        else:
            uri, raw_range = first, args[1] if len(args) > 1 else None
        if isinstance(raw_range, int) and not isinstance(raw_range, bool):
            raw_range = {"start": {"line": raw_range, "character": 0}, "end": {"line": raw_range, "character": 0}}
        selection = convert.CONVERTER.structure(raw_range, types.Range)
    except Exception as exc:  # cattrs raises several types for a malformed range
        raise DocumentError(f'bashlsp.generateFromComment needs [{{"uri": ..., "range": ...}}]: {exc}') from exc
    if not isinstance(uri, str) or not uri:
        raise DocumentError('bashlsp.generateFromComment needs [{"uri": ..., "range": ...}]: the uri is missing')
    return uri, selection


async def generate_edit(
    ls, uri: str, selection: types.Range, document_changes: bool = True
) -> tuple[types.WorkspaceEdit | None, Generated]:
    """The edit that inserts generated code below the comment block at `selection`."""
    if not ls.settings.generate.enable:
        raise DocumentError("Generate script from comment is switched off (setting generate.enable)")
    doc = ls.served_document(uri)
    if doc is None:
        raise DocumentError(f"{uri} is not an open shell script")
    block = comment_block(doc, selection)
    if block is None:
        raise DocumentError(
            "Generate script from comment needs the cursor on a comment line (or comment lines selected)"
        )
    version = doc.version
    ticket = ls.begin(uri, "generate")
    try:
        generated = await generate(ls, ticket, doc, block)
    finally:
        ls.requests.end(ticket)
    if generated.script is None:
        ls.notify("warning", f"Generate script from comment: {generated.problem}; nothing was inserted", True)
        return None, generated
    if generated.findings:
        ls.notify(
            "info",
            f"Generate script from comment: shellcheck has {len(generated.findings)} finding(s); "
            "they are noted above the code",
            False,
        )
    if doc.version != version or ls.documents.get(uri) is not doc:
        raise DocumentError(f"{uri} changed while the script was generated; try again")
    at, lead = insertion_point(doc, block)
    text = doc.native(lead + convert.findings_comment(generated.findings, block.indent) + generated.script)
    return convert.insertion_edit(uri, doc.version, at, text, document_changes), generated
