"""Completion (popup items) and inline completion (ghost text) for one cursor position."""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types

from ..model.engine import CompletionQuery
from ..model.engine.stops import worth_showing
from ..model.errors import DocumentError
from ..model.shell_check import ShellTools, introduces_syntax_error
from ..model.tokenizer import clean_text
from . import convert
from .context import ProjectContext
from .documents import Document
from .lookup import Copy
from .services import Services
from .settings import Settings
from .symbols import COMMAND_CONTEXT, VARIABLE_CONTEXT, cursor_context, document_symbols

# How much text around the cursor goes to the engine (it cuts further to its context size).
PREFIX_CHARS = 16_000
SUFFIX_CHARS = 4_000
MAX_SYMBOL_ITEMS = 200
# Ghost text at a line start copies a line from the document or the project (server/lookup.py)
# instead of asking the model when the copy scores at least this; anywhere, it copies when the
# model offers nothing. Mid-line the model's answer is kept: copies there lost keystroke savings.
# Chosen with `bashlsp bench context repo --copy-min` (docs/benchmarks.md, issue 14).
COPY_MIN = 0.8
# The model as judge of a weaker copy at a line start (a score from JUDGE_MIN, under COPY_MIN):
# the copy is the answer when the model's mean log-probability per token of it (with the
# newline that ends it; its first JUDGE_TOKENS tokens) reaches JUDGE_LOGPROB, else the model
# writes its own line. One forward of the copy's tokens after the cached prompt, no decoding.
# Off (None): with default-nano-6 it moved next-line EM and edit similarity by under a point
# either way, on the set it was tuned on (-2.0) and on the user-style set, for a forward at the
# line starts it judges (`bashlsp bench context repo --judge`, docs/benchmarks.md, issue 14).
JUDGE_MIN = 0.5
JUDGE_LOGPROB: float | None = None
JUDGE_TOKENS = 32


@dataclass
class Cursor:
    doc: Document
    line: int
    column: int  # code points
    position: types.Position  # in the editor's units, clamped into the document
    line_before: str
    line_after: str

    @classmethod
    def at(cls, doc: Document, position: types.Position) -> Cursor:
        line, column = doc.clamp(position)
        text = doc.line_text(line)
        return cls(doc, line, column, doc.position(line, column), text[:column], text[column:])

    def prefix(self) -> str:
        return self.doc.prefix(self.line, self.column, PREFIX_CHARS)

    def suffix(self) -> str:
        return self.doc.suffix(self.line, self.column, SUFFIX_CHARS)

    def back(self, chars: int) -> types.Position:
        """The position `chars` code points left of the cursor on its line."""
        return self.doc.position(self.line, max(0, self.column - chars))


async def symbol_items(cursor: Cursor, run) -> list[types.CompletionItem]:
    """Variables after `$`/`${`, functions where a command starts: certain, from the file. The
    document is scanned off the event loop by `run` (a worker-thread runner)."""
    context = cursor_context(cursor.line_before)
    match = VARIABLE_CONTEXT.search(context)
    if match is not None:
        brace, partial = match.group(1), match.group(2)
        close = "}" if brace and not cursor.line_after.startswith("}") else ""
        start = cursor.back(len(partial))  # before the await: the document may change meanwhile
        symbols = await document_symbols(cursor.doc, cursor.line, run)
        return [
            convert.symbol_completion_item(name, "variable", start, cursor.position, name + close, rank)
            for rank, name in enumerate(symbols.variables[:MAX_SYMBOL_ITEMS])
        ]
    match = COMMAND_CONTEXT.search(context)
    if match is not None:
        partial = match.group(1)
        start = cursor.back(len(partial))
        symbols = await document_symbols(cursor.doc, cursor.line, run)
        return [
            convert.symbol_completion_item(name, "function", start, cursor.position, name, rank)
            for rank, name in enumerate(symbols.functions[:MAX_SYMBOL_ITEMS])
            if name.startswith(partial) and name != partial
        ]
    return []


async def completion(
    services: Services,
    settings: Settings,
    doc: Document,
    position: types.Position,
    trigger: types.CompletionTriggerKind | None = None,
) -> types.CompletionList:
    cursor = Cursor.at(doc, position)
    # Alternatives when the popup opens; while the user types on (the list is incomplete, so the
    # editor asks again at each keystroke) only the best line, which is about twice as fast.
    refining = trigger == types.CompletionTriggerKind.TriggerForIncompleteCompletions
    alternatives = 1 if refining else settings.completion.alternatives
    # Tracked before the first await, so the newest request wins in the order requests arrive,
    # and everything read from the document is read before it (an edit may land meanwhile).
    with services.requests.track(doc.uri, "completion") as ticket:
        query = None
        if services.host.may_serve:
            prefix = cursor.prefix()
            query = CompletionQuery(
                uri=doc.uri,
                prefix=prefix,
                suffix=cursor.suffix(),
                mode="line",
                max_tokens=settings.maxTokens,
                temperature=settings.temperature,
                top_p=settings.topP,
                num_samples=alternatives,
                context=services.context.for_cursor(doc.uri, prefix),  # the same chunks as ghost text: one cache
            )
        word = doc.word_before(cursor.line, cursor.column)
        word_start = cursor.back(len(word))
        items = await symbol_items(cursor, services.tools.run)
        if query is not None:
            suggestions = (await services.host.complete(query, ticket.stop.is_set)).suggestions
            for rank, suggestion in enumerate(suggestions[:alternatives]):
                items.append(convert.model_completion_item(suggestion, word, word_start, cursor.position, rank))
    return convert.completion_list(items)


def ghost_text(shell: ShellTools, prefix: str, text: str, suffix: str) -> str | None:
    """What the editor is offered of the model's inline suggestion `text` between `prefix` and
    `suffix`: several lines only if they do not break the script's syntax (bash -n), else their
    first line alone, as a one-line suggestion is offered (unchecked: a line being typed is
    rarely valid yet), when it is worth showing; None: nothing. Dropping all of it lost the
    first lines that were right (6 of the 436 line starts of `bashlsp bench context repo`)."""
    if "\n" not in text.strip("\n") or not introduces_syntax_error(shell, prefix, text, suffix):
        return text
    first = text.split("\n", 1)[0]
    return first if worth_showing(first) else None


def at_line_start(prefix: str) -> bool:
    """Whether the cursor after `prefix` has only indentation before it on its line."""
    return not prefix[prefix.rfind("\n") + 1 :].strip()


def copy_instead(copy: Copy | None, copy_min: float | None = COPY_MIN) -> bool:
    """Whether the ghost text at a line start is the copy, without running the model (None:
    copies are off)."""
    return copy is not None and copy_min is not None and copy.score >= copy_min


def judged(copy: Copy | None, copy_min: float | None = COPY_MIN, judge_min: float | None = JUDGE_MIN) -> bool:
    """Whether the copy at a line start goes to the model as judge (None: no copies, no judge)."""
    return copy is not None and None not in (copy_min, judge_min) and judge_min <= copy.score < copy_min


def judged_text(copy: Copy, suffix: str) -> str:
    """What the judge scores: the copy, and the newline that ends its line when the rest of the
    cursor line is blank (the model must also find that the line ends there)."""
    return copy.text + "\n" if not suffix.split("\n", 1)[0].strip() else copy.text


def judge_accepts(logprobs: list[float], threshold: float) -> bool:
    """Whether the model, as judge, finds a copy with these token log-probabilities likely enough."""
    return bool(logprobs) and sum(logprobs) / len(logprobs) >= threshold


def inline_query(context: ProjectContext, settings: Settings, uri: str, prefix: str, suffix: str) -> CompletionQuery:
    """The model query of ghost text between `prefix` and `suffix`: the request's, and the one
    answered ahead of time while the editor is idle (server/prefill.py), which must be equal to it."""
    return CompletionQuery(
        uri=uri,
        prefix=prefix,
        suffix=suffix,
        mode="inline",
        max_tokens=settings.maxTokens,
        temperature=settings.temperature,
        top_p=settings.topP,
        num_samples=1,
        multiline=settings.inlineCompletion.multiline,
        context=context.for_cursor(uri, prefix),
    )


async def inline_completion(
    services: Services,
    settings: Settings,
    doc: Document,
    position: types.Position,
    selected: types.SelectedCompletionInfo | None = None,
) -> types.InlineCompletionList:
    """Ghost text at `position`. Each item says which range it replaces: VS Code shows an item
    only if its text starts with what that range holds, and reads an item without a range as
    replacing the word before the cursor (so `ho "` after `ec` showed nothing). With the popup
    open (`selected`), the item must continue the selected popup item: it replaces that item's
    range with the item's text followed by the model's continuation of it."""
    if not services.host.may_serve:
        return convert.inline_completion_list([])
    if selected is None:
        start = end = Cursor.at(doc, position)
        typed = ""
    else:
        start, end = Cursor.at(doc, selected.range.start), Cursor.at(doc, selected.range.end)
        if (start.line, start.column) > (end.line, end.column):
            raise DocumentError("selectedCompletionInfo.range ends before it starts")
        typed = selected.text
    prefix, suffix = start.prefix() + clean_text(typed), end.suffix()
    replaced = types.Range(start=start.position, end=end.position)
    if selected is None and (rest := services.shown.reuse(doc.uri, "inline", prefix, suffix)) is not None:
        # The user typed what the ghost text starts with: its rest, without the model (issue 14).
        with services.requests.track(doc.uri, "inline"):  # newest wins: an older request for it stops
            return convert.inline_completion_list([doc.native(rest)], replaced)
    # At a line start the copy is looked up first: a strong one is the answer. Mid-line only if
    # the model offers nothing (a lookup costs 1-7 ms on a 16 KB prefix).
    line_start = selected is None and at_line_start(prefix)
    copy = services.context.copy(doc.uri, prefix, suffix) if line_start else None
    if copy_instead(copy):
        with services.requests.track(doc.uri, "inline"):  # newest wins: an older request for it stops
            services.context.copies += 1
            services.shown.remember(doc.uri, "inline", prefix, suffix, copy.text)
            return convert.inline_completion_list([doc.native(copy.text)], replaced)
    query = inline_query(services.context, settings, doc.uri, prefix, suffix)
    tools = services.tools
    texts, shown = [], []  # as the editor shows them, and as the model wrote them
    with services.requests.track(doc.uri, "inline") as ticket:
        if JUDGE_LOGPROB is not None and judged(copy):  # a weaker copy: the answer if the model finds it likely
            scores = await services.host.score(query, [judged_text(copy, suffix)], ticket.stop.is_set, JUDGE_TOKENS)
            services.context.judged += 1
            if scores and judge_accepts(scores[0], JUDGE_LOGPROB):
                services.context.copies += 1
                services.shown.remember(doc.uri, "inline", prefix, suffix, copy.text)
                return convert.inline_completion_list([doc.native(copy.text)], replaced)
        for suggestion in (await services.host.complete(query, ticket.stop.is_set)).suggestions:
            text = suggestion.text
            if "\n" in text.strip("\n"):  # several lines: bash -n runs off the event loop
                checked = await tools.run(ghost_text, tools.shell, prefix, text, suffix)
                if checked != text:
                    what = "cut to its first line" if checked else "dropped"
                    lines = len(text.splitlines())
                    services.notify("log", f"inline suggestion {what}: bash -n rejects its {lines} lines", False)
                if checked is None:
                    continue
                text = checked
            texts.append(typed + doc.native(text))
            shown.append(text)
    if not texts and selected is None:  # the model offers nothing: a weaker copy is better than that
        copy = copy if line_start else services.context.copy(doc.uri, prefix, suffix)
        if copy is not None:
            texts, shown = [doc.native(copy.text)], [copy.text]
            services.context.copies += 1
    if selected is None:
        services.shown.remember(doc.uri, "inline", prefix, suffix, shown[0] if shown else None)
    return convert.inline_completion_list(texts[:1], replaced)
