"""Generate script from comment: code for the comment block at the cursor, checked before use.

The prompt is the document up to the end of the comment block (and the text after it as the
fill-in-the-middle suffix). Which scripts are tried and which one wins is
`bashlsp.model.generation.generate_script` (shared with `bashlsp eval`); this module is the LSP
glue: the comment block, the model and tools on the server's threads, the edit. If no script
passes, nothing is inserted and the editor is told why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from ..model.engine import CompletionQuery
from ..model.errors import DocumentError
from ..model.examples import few_shot_prompt, script_start, uses_examples
from ..model.generation import Generated, attempts, generate_script
from . import convert, retrieval
from .completion import PREFIX_CHARS, SUFFIX_CHARS
from .documents import Document
from .requests import Ticket
from .services import Services
from .settings import Settings

MAX_COMMENT_LINES = 200


@dataclass
class CommentBlock:
    first: int  # line numbers, inclusive
    last: int
    indent: str


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


async def generate(
    services: Services, settings: Settings, ticket: Ticket, doc: Document, block: CommentBlock
) -> Generated:
    if block.last + 1 < len(doc.lines):
        prefix = doc.prefix(block.last + 1, 0, PREFIX_CHARS)
        suffix = doc.suffix(block.last + 1, 0, SUFFIX_CHARS)
    else:
        prefix = doc.prefix(block.last, len(doc.line_text(block.last)), PREFIX_CHARS) + "\n"
        suffix = ""
    # Command examples for the comment go ahead of the document as few-shot pairs (issue 13), for
    # a model trained on such prompts, and the script starts with the best example's utility; the
    # others get them as Insert example actions only.
    tools = services.tools
    engine = services.host.engine
    examples = []
    start = ""
    if engine is not None and uses_examples(engine.loaded.meta):
        comment = retrieval.comment_text(doc, block)
        examples = await tools.run(
            services.retrieval.search, comment, retrieval.FEW_SHOT, services.documents.documents()
        )
        start = script_start(examples, comment)
        prefix = few_shot_prompt(examples, prefix) + start

    async def complete(num_samples: int, temperature: float, max_tokens: int):
        query = CompletionQuery(
            # Its own cache entry: the document's keeps its window start, which would cut the examples off.
            uri=f"{doc.uri}#examples" if examples else doc.uri,
            prefix=prefix,
            suffix=suffix,
            mode="generate",
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=settings.topP,
            num_samples=num_samples,
        )
        return (await services.host.complete(query, ticket.stop.is_set)).suggestions

    async def check_syntax(script: str):
        return await tools.run(tools.shell.check_syntax, script)

    async def findings(script: str):
        return await tools.run(tools.shell.findings, script, "info")

    use_shellcheck = settings.shellcheck.enable and tools.shell.shellcheck.available
    generated = await generate_script(
        complete,
        check_syntax,
        findings if use_shellcheck else None,
        attempts(settings.temperature, settings.generate.samples, settings.generate.maxTokens),
        start,
    )
    if generated.script is None and services.host.engine is None:
        generated.problem = "no model is loaded"
    return generated


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
    services: Services, settings: Settings, doc: Document, selection: types.Range, document_changes: bool = True
) -> tuple[types.WorkspaceEdit | None, Generated]:
    """The edit that inserts generated code below the comment block at `selection` of `doc` (an
    open document the server serves)."""
    if not settings.generate.enable:
        raise DocumentError("Generate script from comment is switched off (setting generate.enable)")
    uri = doc.uri
    block = comment_block(doc, selection)
    if block is None:
        raise DocumentError(
            "Generate script from comment needs the cursor on a comment line (or comment lines selected)"
        )
    version = doc.version
    with services.requests.track(uri, "generate") as ticket:
        generated = await generate(services, settings, ticket, doc, block)
    if generated.script is None:
        services.notify("warning", f"Generate script from comment: {generated.problem}; nothing was inserted", True)
        return None, generated
    if generated.findings:
        services.notify(
            "info",
            f"Generate script from comment: shellcheck has {len(generated.findings)} finding(s); "
            "they are noted above the code",
            False,
        )
    if doc.version != version or services.documents.get(uri) is not doc:
        raise DocumentError(f"{uri} changed while the script was generated; try again")
    at, lead = insertion_point(doc, block)
    text = doc.native(lead + convert.findings_comment(generated.findings, block.indent) + generated.script)
    return convert.insertion_edit(uri, doc.version, at, text, document_changes), generated
