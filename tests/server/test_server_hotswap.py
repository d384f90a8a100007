"""Hot-swap over stdio: the server follows a checkpoint store while requests keep running."""

from __future__ import annotations

import asyncio
import shutil
import sys

import pytest
import pytest_lsp
import torch
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from support import wait_for_log

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint

SERVER = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]
TEXT = '#!/bin/bash\nNAME=world\nfor f in *.log; do\n  echo "$f"\ndone\necho "$NA'


@pytest.fixture
def store(tmp_path, tiny_checkpoint) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "store")
    loaded = load_checkpoint(tiny_checkpoint)
    store.publish(loaded.model, loaded.tokenizer, {"metrics": {"generation": 1}})
    return store


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, store: CheckpointStore):
    options = {"store": str(store.root), "completion": {"alternatives": 1}}
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), initialization_options=options)
    )
    yield
    await lsp_client.shutdown_session()


def publish_variant(store: CheckpointStore, source, generation: int) -> str:
    """A new checkpoint: the served one with slightly different weights."""
    loaded = load_checkpoint(source)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return store.publish(loaded.model, loaded.tokenizer, {"metrics": {"generation": generation}})


async def model_info(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.modelInfo"))


async def test_hot_swap_under_requests_and_corrupt_checkpoint(
    client: LanguageClient, store: CheckpointStore, tiny_checkpoint
):
    first_id = store.current_id()
    await wait_for_log(client, f"serving {first_id}")
    uri = "file:///tmp/bashlsp-test/swap.sh"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="shellscript", version=1, text=TEXT)
        )
    )
    ident = types.TextDocumentIdentifier(uri=uri)
    position = types.Position(line=5, character=9)

    swapped = asyncio.Event()
    answered: list[object] = []

    async def keep_asking() -> None:
        # One request after another, as an editor does while the user types, until the swap is
        # announced and a few more after it.
        extra = 0
        while extra < 5:
            result = await client.text_document_completion_async(
                types.CompletionParams(text_document=ident, position=position)
            )
            answered.append(result)
            if swapped.is_set():
                extra += 1

    asking = asyncio.create_task(keep_asking())
    new_id = await asyncio.to_thread(publish_variant, store, tiny_checkpoint, 2)
    await wait_for_log(client, f"now serving {new_id}")
    swapped.set()
    await asking  # raises if any request failed
    assert all(isinstance(r, types.CompletionList) and any(i.label == "NAME" for i in r.items) for r in answered)
    info = await model_info(client)
    assert info["id"] == new_id and info["swaps"] == 1 and info["meta"]["metrics"]["generation"] == 2

    # A corrupt checkpoint is published: it is not served, the editor is told, the old one stays.
    bad_id = "bad-checkpoint"
    bad = store.path_of(bad_id)
    shutil.copytree(store.path_of(new_id), bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    store.use(bad_id, validate=False)
    message = await wait_for_log(client, f"checkpoint {bad_id} was not loaded")
    assert message.type == types.MessageType.Error and f"still serving {new_id}" in message.message
    assert any(bad_id in m.message for m in client.messages)  # shown, not only logged
    info = await model_info(client)
    assert info["id"] == new_id
    result = await client.text_document_completion_async(types.CompletionParams(text_document=ident, position=position))
    assert any(i.label == "NAME" for i in result.items)

    # reloadModel asks for the store's current one explicitly: still refused, with an error.
    with pytest.raises(Exception) as refused:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.reloadModel"))
    assert "not a valid safetensors file" in str(refused.value)

    # Rolling back makes the good checkpoint current again: served without a restart.
    store.rollback()
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.reloadModel"))
    assert info["id"] == new_id


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def modelless_client(lsp_client: LanguageClient, tmp_path):
    options = {"checkpoint": str(tmp_path / "no-such-checkpoint")}
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), initialization_options=options)
    )
    yield
    await lsp_client.shutdown_session()


async def test_without_a_model_the_server_answers_empty_and_says_why(modelless_client: LanguageClient):
    client = modelless_client
    message = await wait_for_log(client, "no model could be loaded")
    assert message.type == types.MessageType.Error
    assert any("no model could be loaded" in m.message for m in client.messages)  # shown to the user
    uri = "file:///tmp/bashlsp-test/nomodel.sh"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="shellscript", version=1, text=TEXT)
        )
    )
    ident = types.TextDocumentIdentifier(uri=uri)
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=ident, position=types.Position(line=5, character=9))
    )
    assert [i.label for i in result.items] == ["NAME", "f"]  # what the file says; nothing from a model
    inline = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=ident,
            position=types.Position(line=5, character=9),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    assert list(inline.items) == []
    info = await model_info(client)
    assert not info["loaded"] and "no-such-checkpoint" in info["problem"]
