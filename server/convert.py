"""Every conversion to lsprotocol types, and the one place a BashlspError becomes an LSP error."""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import default_converter

from ..model.engine import Suggestion
from ..model.errors import BashlspError, Cancelled, ConfigError, DocumentError
from ..model.shell_check import Finding

SOURCE = "bashlsp"
GENERATE_TITLE = "Generate script from comment"
GENERATE_KIND = types.CodeActionKind.Refactor  # "refactor": editors list it with the refactorings

CONVERTER = default_converter()  # lsprotocol's cattrs converter (camelCase JSON <-> attrs classes)


# -- errors ----------------------------------------------------------------------------------------


def response_error(exc: BaseException) -> types.ResponseError:
    """The LSP error for an exception a handler raised."""
    if isinstance(exc, JsonRpcException):
        return exc.to_response_error()
    if isinstance(exc, Cancelled):
        return types.ResponseError(code=types.LSPErrorCodes.RequestCancelled, message=str(exc) or "request cancelled")
    if isinstance(exc, (DocumentError, ConfigError)):
        return types.ResponseError(code=types.ErrorCodes.InvalidParams, message=str(exc))
    if isinstance(exc, BashlspError):
        return types.ResponseError(code=types.LSPErrorCodes.RequestFailed, message=str(exc))
    return types.ResponseError(
        code=types.ErrorCodes.InternalError, message=f"internal error: {type(exc).__name__}: {exc}"
    )


def log_params(level: str, message: str) -> types.LogMessageParams:
    return types.LogMessageParams(type=_MESSAGE_TYPES[level], message=message)


def show_params(level: str, message: str) -> types.ShowMessageParams:
    return types.ShowMessageParams(type=_MESSAGE_TYPES[level], message=message)


_MESSAGE_TYPES = {
    "error": types.MessageType.Error,
    "warning": types.MessageType.Warning,
    "info": types.MessageType.Info,
    "log": types.MessageType.Log,
    "debug": types.MessageType.Debug,
}


# -- completion ------------------------------------------------------------------------------------


def _range(start: types.Position, end: types.Position) -> types.Range:
    return types.Range(start=start, end=end)


def model_completion_item(
    suggestion: Suggestion, word: str, word_start: types.Position, cursor: types.Position, rank: int
) -> types.CompletionItem:
    """A popup item for the rest of the line: it replaces the partial word before the cursor
    with that word followed by the model's text, so the editor filters on the word."""
    new_text = word + suggestion.text
    label = new_text.strip() or new_text
    return types.CompletionItem(
        label=label if len(label) <= 80 else label[:77] + "...",
        kind=types.CompletionItemKind.Text,
        detail=f"{SOURCE} model · {suggestion.score:+.2f}",
        sort_text=f"0{rank:03d}",  # best score first
        filter_text=new_text,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=_range(word_start, cursor), new_text=new_text),
        preselect=rank == 0 or None,
        data={"source": SOURCE, "score": suggestion.score, "tokens": suggestion.tokens},
    )


def symbol_completion_item(
    name: str, kind: str, replace_start: types.Position, cursor: types.Position, new_text: str, rank: int
) -> types.CompletionItem:
    return types.CompletionItem(
        label=name,
        kind=types.CompletionItemKind.Variable if kind == "variable" else types.CompletionItemKind.Function,
        detail=f"{kind} defined in this file",
        sort_text=f"1{rank:04d}",
        filter_text=name,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=_range(replace_start, cursor), new_text=new_text),
        data={"source": SOURCE, "kind": kind},
    )


def completion_list(items: list[types.CompletionItem]) -> types.CompletionList:
    # Incomplete: the model's items depend on every keystroke, so the editor must ask again.
    return types.CompletionList(is_incomplete=True, items=items)


def inline_completion_list(texts: list[str], replaced: types.Range | None = None) -> types.InlineCompletionList:
    """Ghost-text items that each replace `replaced` (the editor's text there is a prefix of theirs)."""
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=t, range=replaced) for t in texts])


# -- generate from comment -------------------------------------------------------------------------


def insertion_edit(
    uri: str, version: int | None, at: types.Position, text: str, document_changes: bool = True
) -> types.WorkspaceEdit:
    """Insert `text` at `at`; versioned (documentChanges) when the client supports it, so an
    editor whose document has changed since refuses the edit instead of misplacing it."""
    edit = types.TextEdit(range=_range(at, at), new_text=text)
    if not document_changes:
        return types.WorkspaceEdit(changes={uri: [edit]})
    document = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=document, edits=[edit])])


def generate_action(uri: str, selection: types.Range, resolvable: bool) -> types.CodeAction:
    """The "Generate script from comment" action. With codeAction/resolve support the edit is
    computed only when the user picks it; otherwise picking it runs the command, which
    generates and applies the edit with workspace/applyEdit."""
    arguments = {
        "uri": uri,
        "range": {
            "start": {"line": selection.start.line, "character": selection.start.character},
            "end": {"line": selection.end.line, "character": selection.end.character},
        },
    }
    if resolvable:
        return types.CodeAction(title=GENERATE_TITLE, kind=GENERATE_KIND, data=arguments)
    command = types.Command(title=GENERATE_TITLE, command="bashlsp.generateFromComment", arguments=[arguments])
    return types.CodeAction(title=GENERATE_TITLE, kind=GENERATE_KIND, command=command)


def example_action(title: str, edit: types.WorkspaceEdit) -> types.CodeAction:
    """An "Insert example: ..." action: a retrieved command, inserted below the comment (issue 13)."""
    return types.CodeAction(title=title, kind=GENERATE_KIND, edit=edit)


def findings_comment(findings: list[Finding], indent: str = "") -> str:
    """shellcheck's findings as comment lines placed above the generated code (clearly marked,
    so the user can act on them and delete them; diagnostics would go stale as the file changes)."""
    return "".join(
        f"{indent}# [bashlsp] shellcheck SC{f.code} ({f.level}) at generated line {f.line}: {f.message}\n"
        for f in findings
    )


def to_json(value: Any) -> Any:
    """lsprotocol objects (nested anywhere in dicts/lists) as plain JSON values."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "__attrs_attrs__"):
        return CONVERTER.unstructure(value)
    return value
