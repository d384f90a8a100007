"""The LSP methods bashlsp serves, one thin handler each, named after its method.

A handler finds the document, checks that the feature is on, and calls the module that does the
work (completion.py, generate.py, hotswap.py). Errors: raise a BashlspError; the protocol turns
it into an LSP error in one place (convert.response_error). Requests for documents that are not
open or not shell scripts get an empty answer, not an error.
"""

from __future__ import annotations

import asyncio
import functools

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from ..model.errors import Cancelled, DocumentError
from . import completion, convert, generate, retrieval
from .language_server import BashLanguageServer
from .prefill import cursor_after
from .watchdog import bounded
from .workspace import folders_from_initialize

COMPLETION_TRIGGERS = ["$", "{"]


# -- lifecycle -------------------------------------------------------------------------------------


def initialize(ls: BashLanguageServer, params: types.InitializeParams) -> None:
    ls.documents.encoding = ls.workspace.position_encoding or types.PositionEncodingKind.Utf16
    ls.apply_settings(params.initialization_options, "initializationOptions")
    ls.host.configure(ls.settings)
    ls.host.start()  # on the model worker: the first requests wait for it
    ls.tools.warm()  # find bash and shellcheck off the event loop
    ls.context.start(folders_from_initialize(params.workspace_folders, params.root_uri, params.root_path))


def initialized(ls: BashLanguageServer, params: types.InitializedParams) -> None:
    for problem in ls.startup_problems:  # from the command line's settings, now that the editor listens
        ls.notify("warning", f"bashlsp command line: {problem}")


def shutdown(ls: BashLanguageServer, params: None) -> None:
    ls.requests.stop_all()
    ls.host.unwatch()


def exit(ls: BashLanguageServer, params: None) -> None:  # noqa: A001 - the LSP method's name
    ls.close()


def workspace_did_change_configuration(ls: BashLanguageServer, params: types.DidChangeConfigurationParams) -> None:
    data = params.settings
    if isinstance(data, dict) and "bashlsp" in data:
        _apply_configuration(ls, data["bashlsp"], "workspace/didChangeConfiguration")
    elif _client_pulls_configuration(ls):
        asyncio.ensure_future(_pull_configuration(ls))


def _client_pulls_configuration(ls: BashLanguageServer) -> bool:
    workspace = ls.client_capabilities.workspace
    return bool(workspace and workspace.configuration)


async def _pull_configuration(ls: BashLanguageServer) -> None:
    result = await ls.workspace_configuration_async(
        types.ConfigurationParams(items=[types.ConfigurationItem(section="bashlsp")])
    )
    _apply_configuration(ls, result[0] if result else None, "workspace/configuration")


def _apply_configuration(ls: BashLanguageServer, data, where: str) -> None:
    ls.apply_settings(data, where)
    if ls.host.configure(ls.settings):
        ls.notify("info", "bashlsp: model settings changed; loading the model they name", False)

        async def reload() -> None:
            try:
                await ls.host.reload()
            except Exception as exc:  # already reported to the editor by the host
                ls.notify("log", f"reload after a settings change failed: {exc}")
            ls.host.watch()

        asyncio.ensure_future(reload())


# -- documents -------------------------------------------------------------------------------------


def text_document_did_open(ls: BashLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    doc = ls.documents.open(item.uri, item.language_id, item.version, item.text)
    if doc.declined is not None:
        ls.served_document(doc.uri)  # logs why it is declined, once
        return
    ls.context.opened(doc)
    ls.ahead.schedule(doc.uri, None)  # the cursor is not known yet: the end, where a script grows


def text_document_did_change(ls: BashLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.documents.change(params.text_document.uri, params.text_document.version, params.content_changes)
    if doc is None or doc.declined is not None or not params.content_changes:
        return
    cursor = cursor_after(doc, params.content_changes[-1])
    if cursor is not None:
        ls.context.changed(doc, cursor.line)
    ls.ahead.schedule(doc.uri, cursor)


def text_document_did_save(ls: BashLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    doc = ls.documents.get(params.text_document.uri)
    if doc is not None:
        ls.context.saved(doc)


def text_document_did_close(ls: BashLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.forget_document(params.text_document.uri)
    ls.context.closed(params.text_document.uri)
    ls.shown.forget(params.text_document.uri)
    ls.ahead.cancel(params.text_document.uri)


# -- completion ------------------------------------------------------------------------------------


async def text_document_completion(
    ls: BashLanguageServer, params: types.CompletionParams
) -> types.CompletionList | None:
    doc = ls.served_document(params.text_document.uri)
    if doc is None or not ls.settings.completion.enable:
        return None
    trigger = params.context.trigger_kind if params.context is not None else None
    return await completion.completion(ls.services, ls.settings, doc, params.position, trigger)


async def text_document_inline_completion(
    ls: BashLanguageServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    doc = ls.served_document(params.text_document.uri)
    if doc is None or not ls.settings.inlineCompletion.enable:
        return None
    selected = params.context.selected_completion_info if params.context is not None else None
    return await completion.inline_completion(ls.services, ls.settings, doc, params.position, selected)


# -- generate from comment -------------------------------------------------------------------------


def _resolve_supported(ls: BashLanguageServer) -> bool:
    text_document = ls.client_capabilities.text_document
    code_action = text_document.code_action if text_document else None
    support = code_action.resolve_support if code_action else None
    return bool(support and "edit" in support.properties)


def _document_changes(ls: BashLanguageServer) -> bool:
    workspace = ls.client_capabilities.workspace
    workspace_edit = workspace.workspace_edit if workspace else None
    return bool(workspace_edit and workspace_edit.document_changes)


def _kind_requested(only: list[str] | None) -> bool:
    if not only:
        return True
    kind = str(convert.GENERATE_KIND.value)
    return any(kind == k or kind.startswith(f"{k}.") for k in map(str, only))


async def text_document_code_action(
    ls: BashLanguageServer, params: types.CodeActionParams
) -> list[types.CodeAction] | None:
    doc = ls.served_document(params.text_document.uri)
    if doc is not None and params.range.start == params.range.end:  # editors ask as the cursor moves
        ls.ahead.schedule(doc.uri, params.range.start)
    if doc is None or not ls.settings.generate.enable or not ls.host.may_serve:
        return None
    if not _kind_requested(params.context.only):
        return None
    block = generate.comment_block(doc, params.range)
    if block is None:
        return None
    actions = [convert.generate_action(doc.uri, params.range, _resolve_supported(ls))]
    # The best retrieved commands as further answers (issue 13); searched off the event loop.
    version = doc.version
    examples = await ls.tools.run(
        ls.retrieval.search, retrieval.comment_text(doc, block), retrieval.ACTIONS, ls.documents.documents()
    )
    if doc.version != version or ls.documents.get(doc.uri) is not doc:
        return actions  # edited meanwhile: the examples' edits would land in the wrong place
    at, lead = generate.insertion_point(doc, block)
    for example in examples:
        text = doc.native(lead + retrieval.example_text(example, block.indent))
        edit = convert.insertion_edit(doc.uri, doc.version, at, text, _document_changes(ls))
        actions.append(convert.example_action(retrieval.example_title(example), edit))
    return actions


async def code_action_resolve(ls: BashLanguageServer, action: types.CodeAction) -> types.CodeAction:
    if action.title != convert.GENERATE_TITLE or not isinstance(action.data, dict):
        return action
    uri, selection = generate.parse_target([action.data])
    edit, _ = await _generate_edit(ls, uri, selection)
    action.edit = edit
    return action


async def _generate_edit(ls: BashLanguageServer, uri: str, selection: types.Range):
    doc = ls.served_document(uri)
    if doc is None:
        raise DocumentError(f"{uri} is not an open shell script")
    return await generate.generate_edit(ls.services, ls.settings, doc, selection, _document_changes(ls))


def _command(handler):
    """pygls runs a command inside its own generator, which never answers if the command's task
    is cancelled (a CancelledError escapes its callback): turn it into Cancelled, which answers
    -32800."""

    @functools.wraps(handler)
    async def run(ls: BashLanguageServer, *arguments):
        try:
            return await handler(ls, *arguments)
        except asyncio.CancelledError:
            raise Cancelled("request cancelled") from None

    return run


@_command
async def generate_from_comment(ls: BashLanguageServer, *arguments) -> dict:
    """workspace/executeCommand bashlsp.generateFromComment [{"uri", "range", "apply"?}].
    Generates the code, applies it with workspace/applyEdit when the client can (and "apply" is
    not false), and returns {"applied", "edit", "script", "findings", "tried", "problem"}."""
    uri, selection = generate.parse_target(arguments)
    edit, generated = await _generate_edit(ls, uri, selection)
    result = {"applied": False, "edit": convert.to_json(edit), **generated.as_dict()}
    wants_apply = not (arguments and isinstance(arguments[0], dict) and arguments[0].get("apply") is False)
    workspace = ls.client_capabilities.workspace
    if edit is not None and wants_apply and workspace and workspace.apply_edit:
        try:
            response = await ls.workspace_apply_edit_async(
                types.ApplyWorkspaceEditParams(edit=edit, label=convert.GENERATE_TITLE)
            )
            result["applied"] = bool(response and response.applied)
        except JsonRpcException as exc:  # the editor refused or failed: the edit is still returned
            ls.notify("warning", f"Generate script from comment: the editor did not apply the edit: {exc}")
    return result


# -- model commands --------------------------------------------------------------------------------


@_command
async def reload_model(ls: BashLanguageServer, *arguments) -> dict:
    """workspace/executeCommand bashlsp.reloadModel: load the checkpoint the settings name now."""
    info = await ls.host.reload(force=True)
    return convert.to_json(info)


def model_info(ls: BashLanguageServer, *arguments) -> dict:
    """workspace/executeCommand bashlsp.modelInfo: which checkpoint, trained on what, metrics, stats."""
    return convert.to_json(ls.info())


COMMANDS = {
    "bashlsp.generateFromComment": generate_from_comment,
    "bashlsp.reloadModel": reload_model,
    "bashlsp.modelInfo": model_info,
}


def register(ls: BashLanguageServer) -> None:
    feature = ls.feature
    feature(types.INITIALIZE)(initialize)
    feature(types.INITIALIZED)(initialized)
    feature(types.SHUTDOWN)(shutdown)
    feature(types.EXIT)(exit)
    feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(workspace_did_change_configuration)
    feature(types.TEXT_DOCUMENT_DID_OPEN)(text_document_did_open)
    feature(types.TEXT_DOCUMENT_DID_CHANGE)(text_document_did_change)
    feature(types.TEXT_DOCUMENT_DID_CLOSE)(text_document_did_close)
    feature(types.TEXT_DOCUMENT_DID_SAVE)(text_document_did_save)
    # Every request handler is bounded (server/watchdog.py): past its bound it is answered with an error.
    feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=COMPLETION_TRIGGERS))(
        bounded("completion", text_document_completion)
    )
    feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(
        bounded("inline completion", text_document_inline_completion)
    )
    feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[convert.GENERATE_KIND], resolve_provider=True),
    )(bounded("code actions", text_document_code_action))
    feature(types.CODE_ACTION_RESOLVE)(bounded("Generate script from comment", code_action_resolve))
    for name, handler in COMMANDS.items():
        feature_name = "Generate script from comment" if name == "bashlsp.generateFromComment" else f"command {name}"
        ls.command(name)(bounded(feature_name, handler) if asyncio.iscoroutinefunction(handler) else handler)
