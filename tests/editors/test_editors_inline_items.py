"""Inline items an editor can show: the real server over stdio (pytest-lsp), checked by the rule
VS Code applies before it shows ghost text.

VS Code shows an inline item only if the document's text in the item's range is a prefix of the
item's text and the range ends at the cursor's line; an item without a range is read as
replacing the word before the cursor to the end of the line. With the suggest popup open it sends
the selected item (`selectedCompletionInfo`) and shows only an inline item that continues it:
same range, text starting with the selected text. The server once answered `ho "` after `  ec`
with no range, which VS Code read as "replace `ec` with `ho "`" and never showed.
"""

from __future__ import annotations

import sys
import uuid

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.engine import CompletionQuery, Engine
from bashlsp.model.shell_check import ShellTools, introduces_syntax_error

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]
SCRIPT = """#!/bin/bash
backup_dir=/tmp/backup
for f in *.log; do
  ec
done
"""
LINE, COLUMN = 3, 4  # after "  ec"
# Where the tiny model is sure enough to continue `echo` mid-line (stops.MIN_TOKEN_PROB): lines
# like its training scripts'.
POPUP_SCRIPT = """#!/bin/bash
set -e

LOG_DIR="/var/log/myapp"

if [ ! -d "$LOG_DIR" ]; then
    ec
fi
"""
POPUP_LINE, POPUP_COLUMN = 6, 6  # after "    ec"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module")
async def client(lsp_client: LanguageClient, tiny_checkpoint):
    capabilities = types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(inline_completion=types.InlineCompletionClientCapabilities())
    )
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=capabilities, initialization_options={"checkpoint": str(tiny_checkpoint)})
    )
    yield
    await lsp_client.shutdown_session()


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine(load_checkpoint(tiny_checkpoint))


def open_doc(client: LanguageClient, text: str) -> str:
    uri = f"file:///tmp/bashlsp-inline/{uuid.uuid4().hex}.sh"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="shellscript", version=1, text=text)
        )
    )
    return uri


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def offset(text: str, position: types.Position) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: position.line]) + position.character


def expected_continuation(engine: Engine, uri: str, prefix: str, suffix: str) -> str | None:
    """What the server should offer after `prefix`: the engine's text, unless it is several
    lines that break the script's syntax (the server drops those)."""
    query = CompletionQuery(uri=uri, prefix=prefix, suffix=suffix, mode="inline", max_tokens=48, multiline=True)
    for suggestion in engine.complete(query).suggestions:
        text = suggestion.text
        if "\n" not in text.strip("\n") or not introduces_syntax_error(ShellTools(), prefix, text, suffix):
            return text
    return None


def editor_shows(text: str, cursor: types.Position, item: types.InlineCompletionItem) -> bool:
    """VS Code's test for showing an inline item (see the module docstring)."""
    if item.range is None:
        line = text.split("\n")[cursor.line]
        word_start = len(line[: cursor.character]) - len(line[: cursor.character].rstrip("abcdefghijklmnopqrstuvwxyz_"))
        replaced = types.Range(start=pos(cursor.line, word_start), end=pos(cursor.line, len(line)))
    else:
        replaced = item.range
    if replaced.end.line != cursor.line or replaced.end.character < cursor.character:
        return False
    held = text[offset(text, replaced.start) : offset(text, replaced.end)]
    return item.insert_text.startswith(held) and len(item.insert_text) > len(held)


async def inline(
    client: LanguageClient,
    uri: str,
    selected: types.SelectedCompletionInfo | None = None,
    at: types.Position | None = None,
):
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=at or pos(LINE, COLUMN),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic, selected_completion_info=selected
            ),
        )
    )


async def test_mid_word_item_replaces_nothing_and_continues_the_word(client: LanguageClient, engine: Engine):
    uri = open_doc(client, SCRIPT)
    result = await inline(client, uri)
    cut = offset(SCRIPT, pos(LINE, COLUMN))
    expected = expected_continuation(engine, uri, SCRIPT[:cut], SCRIPT[cut:])
    assert expected, "the tiny model should continue `  ec`"
    assert [item.insert_text for item in result.items] == [expected]
    item = result.items[0]
    assert item.range == types.Range(start=pos(LINE, COLUMN), end=pos(LINE, COLUMN))
    assert editor_shows(SCRIPT, pos(LINE, COLUMN), item)
    # The old answer, the same text without a range, is what VS Code would not show.
    assert not editor_shows(SCRIPT, pos(LINE, COLUMN), types.InlineCompletionItem(insert_text=item.insert_text))


async def test_with_the_popup_open_the_item_continues_the_selected_item(client: LanguageClient, engine: Engine):
    uri = open_doc(client, POPUP_SCRIPT)
    cursor = pos(POPUP_LINE, POPUP_COLUMN)
    selected_range = types.Range(start=pos(POPUP_LINE, 4), end=cursor)
    selected = types.SelectedCompletionInfo(range=selected_range, text="echo")
    result = await inline(client, uri, selected, cursor)
    start, end = offset(POPUP_SCRIPT, selected_range.start), offset(POPUP_SCRIPT, selected_range.end)
    expected = expected_continuation(engine, uri, POPUP_SCRIPT[:start] + "echo", POPUP_SCRIPT[end:])
    assert expected, "the tiny model should continue `    echo`"
    assert [item.insert_text for item in result.items] == ["echo" + expected]
    item = result.items[0]
    assert item.range == selected_range  # VS Code requires the selected item's range
    assert editor_shows(POPUP_SCRIPT, cursor, item)


async def test_a_selected_range_that_ends_before_it_starts_is_invalid_params(client: LanguageClient):
    uri = open_doc(client, SCRIPT)
    backwards = types.Range(start=pos(LINE, COLUMN), end=pos(LINE, 2))
    with pytest.raises(JsonRpcException) as error:
        await inline(client, uri, types.SelectedCompletionInfo(range=backwards, text="echo"))
    assert error.value.code == types.ErrorCodes.InvalidParams
    assert "selectedCompletionInfo.range" in str(error.value)
