"""Retrieved command examples in the real server over stdio (issue 13): "Insert example" code
actions from a tiny index built here from fixture pairs, the personal index in the checkpoint
store, the open workspace documents (secrets redacted), and a corrupt index that leaves the
action working from the model alone."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from support import wait_for_log

from bashlsp.model.examples import Example, personal_index_path, write_index

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]
CAPABILITIES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True, workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
    ),
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"])
        )
    ),
)
PAIRS = [
    ("Find files with the SGID bit set", "find / -perm -2000", "tldr", "find"),
    ("Find files by name", "find . -name '*.txt'", "tldr", "find"),
    ("Display information on CPU usage", "mpstat -P ALL", "tldr", "mpstat"),
    ("Create a gzipped archive", "tar czf dir.tar.gz dir", "man", "tar.1"),
]
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
STORE_SECRET = "hunter2-personal-secret"


def _example_files() -> Path:
    """The indexes the servers read (built before they start: pytest-lsp starts a server before
    the fixture's other arguments exist)."""
    root = Path(tempfile.mkdtemp(prefix="bashlsp-test-examples-"))
    atexit.register(shutil.rmtree, root, True)
    write_index(root / "examples.sqlite", [Example(d, c, s, p, "CC-BY-4.0") for d, c, s, p in PAIRS], {})
    personal = [Example("rotate the nightly logs", "logrotate -f /etc/nightly.conf", "personal", "cron.sh", "own")]
    write_index(personal_index_path(root / "store"), personal, {}, kind="personal")
    (root / "corrupt.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    return root


EXAMPLES = _example_files()


def _config(index: Path) -> ClientServerConfig:
    return ClientServerConfig(server_command=SERVER, server_env=dict(os.environ, BASHLSP_EXAMPLE_INDEX=str(index)))


@pytest_lsp.fixture(config=_config(EXAMPLES / "examples.sqlite"), scope="module")
async def client(lsp_client: LanguageClient, tiny_checkpoint):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=CAPABILITIES,
            initialization_options={"checkpoint": str(tiny_checkpoint), "store": str(EXAMPLES / "store")},
        )
    )
    yield
    await lsp_client.shutdown_session()


def open_doc(client: LanguageClient, text: str) -> str:
    uri = f"file:///tmp/bashlsp-test/{uuid.uuid4().hex}.sh"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="shellscript", version=1, text=text)
        )
    )
    return uri


async def actions_at(client: LanguageClient, uri: str, line: int) -> list[types.CodeAction]:
    position = types.Position(line=line, character=0)
    return await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=position, end=position),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )


def inserted(action: types.CodeAction) -> types.TextEdit:
    (change,) = action.edit.document_changes
    (edit,) = change.edits
    return edit


async def test_insert_example_actions_follow_generate(client: LanguageClient):
    uri = open_doc(client, "#!/bin/bash\n# Find SGID files\necho done\n")
    actions = await actions_at(client, uri, 1)
    assert actions[0].title == "Generate script from comment"
    titles = [a.title for a in actions[1:]]
    assert titles[0] == "Insert example: find / -perm -2000 — tldr find"
    assert len(titles) <= 3 and all(t.startswith("Insert example: ") for t in titles)
    edit = inserted(actions[1])
    assert edit.range.start == types.Position(line=2, character=0) == edit.range.end  # below the comment
    assert edit.new_text == "# tldr find: Find files with the SGID bit set\nfind / -perm -2000\n"


async def test_personal_and_workspace_examples_are_offered_without_secrets(client: LanguageClient):
    open_doc(
        client,
        "#!/bin/bash\n# deploy the site with the release token\n"
        f"curl -H 'Authorization: Bearer {GITHUB_TOKEN}' https://example.com/deploy\n"
        f"# ship the nightly backup\nPASSWORD={STORE_SECRET} backup --all\n",
    )
    uri = open_doc(client, "#!/bin/bash\n# deploy the site\n")
    actions = await actions_at(client, uri, 1)
    workspace = [a for a in actions if "— workspace" in a.title]
    assert workspace, [a.title for a in actions]
    texts = " ".join(inserted(a).new_text + a.title for a in actions[1:])
    assert GITHUB_TOKEN not in texts and "REDACTED" in texts
    uri = open_doc(client, "#!/bin/bash\n# ship the nightly backup\n")
    texts = " ".join(inserted(a).new_text for a in (await actions_at(client, uri, 1))[1:])
    assert "backup --all" in texts and STORE_SECRET not in texts
    uri = open_doc(client, "#!/bin/bash\n# rotate logs nightly\n")
    titles = [a.title for a in (await actions_at(client, uri, 1))]
    assert "Insert example: logrotate -f /etc/nightly.conf — personal cron.sh" in titles


async def test_huge_and_foreign_comments(client: LanguageClient):
    uri = open_doc(client, "#!/bin/bash\n# " + "find files " * 10_000 + "\n")  # a 110 KB comment
    actions = await actions_at(client, uri, 1)
    assert actions[0].title == "Generate script from comment"
    uri = open_doc(client, "#!/bin/bash\n# ファイルを探す 🙂\n")
    actions = await actions_at(client, uri, 1)
    assert [a.title for a in actions] == ["Generate script from comment"]


@pytest_lsp.fixture(config=_config(EXAMPLES / "corrupt.sqlite"), scope="module")
async def broken_client(lsp_client: LanguageClient, tiny_checkpoint):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options={"checkpoint": str(tiny_checkpoint)})
    )
    yield
    await lsp_client.shutdown_session()


async def test_a_corrupt_index_is_reported_and_generation_still_works(broken_client: LanguageClient):
    uri = open_doc(broken_client, "#!/bin/bash\n# Find SGID files\n")
    actions = await actions_at(broken_client, uri, 1)
    assert [a.title for a in actions] == ["Generate script from comment"]
    message = await wait_for_log(broken_client, "corrupt.sqlite")
    assert "goes on without it" in message.message
    resolved = await broken_client.code_action_resolve_async(actions[0])
    assert resolved.title == "Generate script from comment"  # answered: a script or a message, no error
