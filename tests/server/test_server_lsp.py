"""The real server over stdio (pytest-lsp), serving the tiny test checkpoint.

One server for the whole module (starting one costs seconds); every test opens its own
documents. Model output is compared with the Engine run in this process on the same query,
so the tests check the server's wiring without hard-coding what a tiny model says.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from concurrent.futures import Future

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from support import wait_for_log

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.engine import CompletionQuery, Engine
from bashlsp.model.shell_check import ShellTools
from bashlsp.server.completion import ghost_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]
CAPABILITIES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True, workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
    ),
    text_document=types.TextDocumentClientCapabilities(
        completion=types.CompletionClientCapabilities(),
        inline_completion=types.InlineCompletionClientCapabilities(),
        code_action=types.CodeActionClientCapabilities(),  # no resolve support: the action carries the command
    ),
)
SCRIPT = """#!/bin/bash
NAME=world
backup_dir=/tmp/backup
greet() {
  echo "hello $1"
}
# copy every log file into the backup directory
for f in *.log; do
  cp "$f" "$backup_dir/"
done
echo "$
"""
APPLIED_EDITS: list[types.ApplyWorkspaceEditParams] = []


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module")
async def client(lsp_client: LanguageClient, tiny_checkpoint):
    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams):
        APPLIED_EDITS.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    options = {"checkpoint": str(tiny_checkpoint), "completion": {"alternatives": 1}, "maxTokens": "many"}
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options=options)
    )
    yield
    await lsp_client.shutdown_session()


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine(load_checkpoint(tiny_checkpoint))


def open_doc(client: LanguageClient, text: str, suffix: str = ".sh", language_id: str = "shellscript") -> str:
    uri = f"file:///tmp/bashlsp-test/{uuid.uuid4().hex}{suffix}"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
        )
    )
    return uri


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def query_for(uri: str, text: str, line: int, column: int, mode: str, **kw) -> CompletionQuery:
    lines = text.split("\n")
    offset = sum(len(x) + 1 for x in lines[:line]) + column
    return CompletionQuery(uri=uri, prefix=text[:offset], suffix=text[offset:], mode=mode, **kw)


async def raw_request(client: LanguageClient, message: dict | bytes, msg_id=None):
    """Send bytes or a message as is (the client's typed API refuses bad params) and wait for
    the answer to `msg_id` (None for a parse error's answer)."""
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    future: Future = Future()
    client.protocol._request_futures[msg_id] = future
    client.protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return plain(await asyncio.wait_for(asyncio.wrap_future(future), 60))


def plain(value):
    """JSON values back from pygls' client, which turns untyped objects into namedtuples."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# -- tests -----------------------------------------------------------------------------------------


async def test_capabilities_and_settings_warning(client: LanguageClient):
    await wait_for_log(client, "serving tiny")
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.modelInfo"))
    assert info["loaded"] and info["id"] == "tiny" and info["device"] == "cpu"
    assert info["meta"]["metrics"]["train_loss"] > 0
    warning = await wait_for_log(client, "maxTokens")
    assert warning.type == types.MessageType.Warning and "using 48" in warning.message


async def test_completion_variables_and_model_line(client: LanguageClient, engine: Engine):
    uri = open_doc(client, SCRIPT)
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(10, 7))
    )
    variables = [i for i in result.items if i.kind == types.CompletionItemKind.Variable]
    assert [i.label for i in variables] == ["NAME", "backup_dir", "f"]
    assert all(i.text_edit.range == types.Range(start=pos(10, 7), end=pos(10, 7)) for i in variables)
    model_items = [i for i in result.items if i.kind == types.CompletionItemKind.Text]
    expected = engine.complete(query_for(uri, SCRIPT, 10, 7, "line", max_tokens=48, num_samples=1)).suggestions
    assert [i.text_edit.new_text for i in model_items] == [s.text for s in expected][:1]

    # In a word: the item replaces the partial word with the whole line's rest.
    text = SCRIPT + "gre"
    uri = open_doc(client, text)
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(11, 3))
    )
    functions = [i for i in result.items if i.kind == types.CompletionItemKind.Function]
    assert [i.label for i in functions] == ["greet"]
    expected = engine.complete(query_for(uri, text, 11, 3, "line", max_tokens=48, num_samples=1)).suggestions
    model_items = [i for i in result.items if i.kind == types.CompletionItemKind.Text]
    assert [i.text_edit.new_text for i in model_items] == ["gre" + s.text for s in expected][:1]
    for item in model_items:
        assert item.text_edit.range == types.Range(start=pos(11, 0), end=pos(11, 3))


async def test_alternatives_when_the_popup_opens_best_line_while_refining(client: LanguageClient, tiny_checkpoint):
    # The editor sends its whole "bashlsp" section: a setting left out goes back to its default.
    pinned = {"checkpoint": str(tiny_checkpoint)}
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"bashlsp": {**pinned, "completion": {"alternatives": 3}}})
    )
    uri = open_doc(client, SCRIPT + "ec")
    ident = types.TextDocumentIdentifier(uri=uri)

    async def model_requests() -> dict:
        info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.modelInfo"))
        return {kind: info["stats"].get(kind, {}).get("requests", 0) for kind in ("line", "linex3")}

    before = await model_requests()
    await client.text_document_completion_async(
        types.CompletionParams(
            text_document=ident,
            position=pos(11, 2),
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )
    opened = await model_requests()
    await client.text_document_completion_async(
        types.CompletionParams(
            text_document=ident,
            position=pos(11, 2),
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.TriggerForIncompleteCompletions),
        )
    )
    refined = await model_requests()
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"bashlsp": {**pinned, "completion": {"alternatives": 1}}})
    )
    assert opened["linex3"] == before["linex3"] + 1 and opened["line"] == before["line"]
    assert refined["line"] == opened["line"] + 1 and refined["linex3"] == opened["linex3"]


async def test_inline_single_line_with_text_after_cursor(client: LanguageClient, engine: Engine):
    text = 'echo "$NAME is here" > "$backup_dir/'
    text = SCRIPT.replace('echo "$\n', text + '"\necho done\n')
    uri = open_doc(client, text)
    line, column = 10, len('echo "$NAME is here" > "$backup_dir/')
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos(line, column),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    expected = engine.complete(query_for(uri, text, line, column, "inline", max_tokens=48, multiline=True)).suggestions
    assert [i.insert_text for i in result.items] == [s.text for s in expected][:1]
    for item in result.items:
        assert "\n" not in item.insert_text  # text after the cursor on its line: one line only
        assert not item.insert_text.rstrip().endswith('"')  # never repeats what follows the cursor


async def test_inline_multi_line_is_syntax_checked(client: LanguageClient, engine: Engine):
    tools = ShellTools()
    text = SCRIPT.replace('echo "$\n', 'for f in "$backup_dir"/*; do\n\necho finished\n')
    uri = open_doc(client, text)
    line, column = 11, 0
    model_info = types.ExecuteCommandParams(command="bashlsp.modelInfo")
    copies = (await client.workspace_execute_command_async(model_info))["projectContext"]["copiedAnswers"]
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos(line, column),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    query = query_for(uri, text, line, column, "inline", max_tokens=48, multiline=True)
    shown = [ghost_text(tools, query.prefix, s.text, query.suffix) for s in engine.complete(query).suggestions]
    expected = [text for text in shown if text is not None]  # lines that break the syntax: the first alone
    if (await client.workspace_execute_command_async(model_info))["projectContext"]["copiedAnswers"] == copies:
        assert [i.insert_text for i in result.items] == expected[:1]
    else:  # a line copied from a script like it (server/lookup.py), when the model offers nothing
        assert not expected and len(result.items) == 1
    for item in result.items:
        assert "echo finished" not in item.insert_text  # never repeats the lines that follow


async def test_code_action_and_generate_command(client: LanguageClient):
    uri = open_doc(client, SCRIPT)
    none = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=pos(8, 2), end=pos(8, 2)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert not none  # a code line: nothing to generate from
    # Raw JSON: lsprotocol's converter reads any code action that has a "command" field as a
    # Command (its _code_action_hook), losing the action's title and kind.
    actions = await raw_request(
        client,
        {
            "jsonrpc": "2.0",
            "id": "ca1",
            "method": "textDocument/codeAction",
            "params": {
                "textDocument": {"uri": uri},
                "range": {"start": {"line": 6, "character": 4}, "end": {"line": 6, "character": 4}},
                "context": {"diagnostics": []},
            },
        },
        "ca1",
    )
    assert (actions[0]["title"], actions[0]["kind"]) == ("Generate script from comment", "refactor")
    # Then the shipped index's best commands for the comment (tests/server/test_server_examples.py).
    assert all(a["title"].startswith("Insert example: ") and "edit" in a for a in actions[1:])
    command = actions[0]["command"]
    assert command["command"] == "bashlsp.generateFromComment"

    APPLIED_EDITS.clear()
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command["command"], arguments=command["arguments"])
    )
    if result["script"] is None:
        # Nothing passed bash -n: said so, nothing inserted.
        assert result["problem"] and not result["applied"] and not APPLIED_EDITS
        await wait_for_log(client, "nothing was inserted")
        return
    assert ShellTools().check_syntax(result["script"]).ok
    assert result["applied"] and len(APPLIED_EDITS) == 1
    change = APPLIED_EDITS[0].edit.document_changes[0]
    assert change.text_document.uri == uri and change.text_document.version == 1
    edit = change.edits[0]
    assert edit.range.start == pos(7, 0) and edit.range.end == pos(7, 0)  # below the comment
    assert edit.new_text.endswith(result["script"])
    for finding in result["findings"]:
        assert f"SC{finding['code']}" in edit.new_text


async def test_code_action_resolve_computes_the_edit(client: LanguageClient):
    # Editors that support codeAction/resolve get the action without an edit, and resolve it.
    uri = open_doc(client, SCRIPT)
    data = {"uri": uri, "range": {"start": {"line": 6, "character": 0}, "end": {"line": 6, "character": 0}}}
    action = await raw_request(
        client,
        {
            "jsonrpc": "2.0",
            "id": "res1",
            "method": "codeAction/resolve",
            "params": {"title": "Generate script from comment", "kind": "refactor", "data": data},
        },
        "res1",
    )
    assert action["title"] == "Generate script from comment"
    if "edit" in action:
        edit = action["edit"]["documentChanges"][0]["edits"][0]
        assert edit["range"]["start"] == {"line": 7, "character": 0}
        assert ShellTools().check_syntax(edit["newText"]).ok
    else:
        await wait_for_log(client, "nothing was inserted")


async def test_cancellation_answers_and_next_request_is_served(client: LanguageClient):
    uri = open_doc(client, SCRIPT)
    arguments = [
        {
            "uri": uri,
            "range": {"start": {"line": 6, "character": 0}, "end": {"line": 6, "character": 0}},
            "apply": False,
        }
    ]
    msg_id = f"cancel-{uuid.uuid4().hex}"
    pending = client.protocol.send_request(  # sent now (send_request_async would wait to be awaited)
        types.WORKSPACE_EXECUTE_COMMAND,
        types.ExecuteCommandParams(command="bashlsp.generateFromComment", arguments=arguments),
        msg_id=msg_id,
    )
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcException) as cancelled:
        await asyncio.wrap_future(pending)
    assert cancelled.value.code == -32800

    # Newest per document wins: a second generate for the same document stops the first.
    first, second = (
        asyncio.wrap_future(
            client.protocol.send_request(
                types.WORKSPACE_EXECUTE_COMMAND,
                types.ExecuteCommandParams(command="bashlsp.generateFromComment", arguments=arguments),
            )
        )
        for _ in range(2)
    )
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(outcomes[0], JsonRpcException) and outcomes[0].code == -32800
    assert isinstance(outcomes[1], dict)

    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(10, 7))
    )
    assert any(i.label == "NAME" for i in result.items)


async def test_non_shell_document_gets_nothing(client: LanguageClient):
    uri = open_doc(client, "import os\n# a comment\nprint(os.name)\n", suffix=".py", language_id="python")
    ident = types.TextDocumentIdentifier(uri=uri)
    assert (
        await client.text_document_completion_async(types.CompletionParams(text_document=ident, position=pos(2, 3)))
        is None
    )
    inline = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=ident,
            position=pos(2, 3),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    assert inline is None
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=ident,
            range=types.Range(start=pos(1, 0), end=pos(1, 0)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions is None
    never_opened = types.TextDocumentIdentifier(uri="file:///tmp/bashlsp-test/never-opened.sh")
    assert (
        await client.text_document_completion_async(
            types.CompletionParams(text_document=never_opened, position=pos(0, 0))
        )
        is None
    )


async def test_positions_past_the_end_are_clamped(client: LanguageClient):
    uri = open_doc(client, SCRIPT)
    ident = types.TextDocumentIdentifier(uri=uri)
    for position in (pos(10, 500), pos(5000, 0), pos(2**31 - 1, 2**31 - 1)):
        result = await client.text_document_completion_async(
            types.CompletionParams(text_document=ident, position=position)
        )
        assert isinstance(result, types.CompletionList)
        for item in result.items:  # edits land inside the document
            assert item.text_edit.range.end.line <= 11
    # An edit past the end appends; the document stays usable.
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(start=pos(999, 9), end=pos(999, 9)), text="$")
            ],
        )
    )
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=ident, position=pos(11, 1))
    )
    assert any(i.label == "NAME" for i in result.items)


async def test_five_megabyte_document(client: LanguageClient):
    block = SCRIPT.replace("#!/bin/bash\n", "")
    text = "#!/bin/bash\n" + block * (5 * 1024 * 1024 // len(block))
    assert len(text) > 5_000_000
    uri = open_doc(client, text)
    last = text.count("\n")
    started = time.perf_counter()
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(last - 1, 7))
    )
    assert any(i.label == "backup_dir" for i in result.items)
    # Typing at the end of a 5 MB document: each edit touches one line, not the whole text.
    for version, char in enumerate("NA", start=2):
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos(last - 1, 7 + version - 2), end=pos(last - 1, 7 + version - 2)),
                        text=char,
                    )
                ],
            )
        )
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos(last - 1, 9),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    assert isinstance(result, types.InlineCompletionList)
    assert time.perf_counter() - started < 30


async def test_invalid_utf8_and_lone_surrogates(client: LanguageClient, tmp_path):
    # A client that pastes a file's raw bytes into the JSON (invalid UTF-8 on disk).
    path = tmp_path / "latin1.sh"
    path.write_bytes(b"#!/bin/bash\n# caf\xe9 \xff\xfe\nNAME=x\necho $")
    uri = path.as_uri()
    item = b'{"uri": "%s", "languageId": "shellscript", "version": 1, "text": "%s"}' % (
        uri.encode(),
        path.read_bytes().replace(b"\n", b"\\n"),
    )
    body = b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": %s}}' % item
    client.protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(3, 6))
    )
    assert [i.label for i in result.items if i.kind == types.CompletionItemKind.Variable] == ["NAME"]
    # JSON may carry lone surrogates (\udcff), which are not text the tokenizer can encode.
    uri = open_doc(client, "#!/bin/bash\necho \udcff\nNAME=1\necho $")
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(3, 6))
    )
    assert any(i.label == "NAME" for i in result.items)


async def test_configuration_change_is_parsed_and_reported(client: LanguageClient, tiny_checkpoint):
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={
                "bashlsp": {"checkpoint": str(tiny_checkpoint), "temperature": 5, "completion": {"alternatives": 1}}
            }
        )
    )
    warning = await wait_for_log(client, "temperature must be a number from 0 to 2")
    assert warning.type == types.MessageType.Warning
    assert not any("model settings changed" in m.message for m in client.log_messages)  # same model: no reload


async def test_every_request_gets_an_answer(client: LanguageClient):
    uri = open_doc(client, SCRIPT)
    for number, params in enumerate(
        [
            None,
            1,
            "x",
            [],
            {"textDocument": {"uri": uri}},
            {"textDocument": {"uri": uri}, "position": {"line": -1, "character": 0}},
        ]
    ):
        msg_id = 9000 + number
        with pytest.raises(JsonRpcException) as error:
            await raw_request(
                client, {"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/completion", "params": params}, msg_id
            )
        assert error.value.code == -32602, params
    with pytest.raises(JsonRpcException) as error:
        await raw_request(client, {"jsonrpc": "2.0", "id": "u1", "method": "bashlsp/noSuchMethod", "params": {}}, "u1")
    assert error.value.code == -32601
    with pytest.raises(JsonRpcException) as error:
        await raw_request(client, {"jsonrpc": "1.0", "id": "v1", "method": "shutdown"}, "v1")
    assert error.value.code == -32600
    with pytest.raises(JsonRpcException) as error:
        await raw_request(client, b'{"jsonrpc": "2.0", "id": 5, "method": ', None)
    assert error.value.code == -32700
    with pytest.raises(JsonRpcException) as error:  # a notification's method sent as a request
        await raw_request(client, {"jsonrpc": "2.0", "id": "n1", "method": "textDocument/didClose", "params": {}}, "n1")
    assert error.value.code == -32601
    with pytest.raises(JsonRpcException) as error:
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="bashlsp.generateFromComment", arguments=[{"uri": uri}])
        )
    assert error.value.code == -32602
    # And the server is still serving.
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(10, 7))
    )
    assert any(i.label == "NAME" for i in result.items)
