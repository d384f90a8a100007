"""The install a user gets: the built wheel in a fresh venv (no torch), serving with its bundled
model, and the commands that need torch naming the extra that brings it.

CI builds the wheel from the sdist (`python -m build`) and passes it in $BASHLSP_WHEEL; without
it this test builds one from the tree. Installing needs the package index (PyPI).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig

ROOT = Path(__file__).resolve().parents[2]
TRAIN_HINT = "pip install 'bashlsp[train]'"
GPU_HINT = "pip install 'bashlsp[gpu]'"
SCRIPT = """#!/bin/bash
# Back up a directory to a dated tarball.
set -euo pipefail

SRC="${1:-/etc}"
mkdir -p "$SRC"
ech
"""


def run(cmd: list, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)


def venv_size_mb(venv: Path) -> float:
    return sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with nothing but the wheel and what it requires."""
    base = tmp_path_factory.mktemp("wheel-install")
    wheel = os.environ.get("BASHLSP_WHEEL")
    if not wheel:
        built = run([sys.executable, "-m", "build", "--wheel", "--outdir", base / "dist", ROOT])
        assert built.returncode == 0, f"python -m build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
        wheel = next((base / "dist").glob("bashlsp-*.whl"))
    venv = base / "venv"
    assert run([sys.executable, "-m", "venv", venv]).returncode == 0
    start = time.monotonic()
    installed = run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel])
    assert installed.returncode == 0, f"pip install of the wheel failed:\n{installed.stderr[-3000:]}"
    # The figures README quotes (run with -s to see them).
    print(f"\nwheel install: {time.monotonic() - start:.1f} s, venv {venv_size_mb(venv):.0f} MB ({wheel})")
    return venv


def test_the_wheel_installs_without_torch_and_ships_the_model(venv):
    python = venv / "bin" / "python"
    listed = run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"])
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "bashlsp" in names and "numpy" in names
    assert not names & {"torch", "nvidia-cublas-cu12", "triton"}, sorted(names)
    bundled = run(
        [python, "-c", "from bashlsp.model.checkpoint import bundled_checkpoint; print(bundled_checkpoint())"]
    )
    assert bundled.returncode == 0, bundled.stderr
    assert bundled.stdout.strip().startswith(str(venv)), "the bundled model must come from the installed wheel"
    version = run([venv / "bin" / "bashlsp", "--version"])
    assert version.returncode == 0 and version.stdout.startswith("bashlsp "), version


@pytest.mark.parametrize(
    "command",
    [["bashlsp-train", "--once", "scripts"], ["bashlsp", "eval", "scripts"], ["bashlsp", "generate", "echo"]],
    ids=["train", "eval", "generate"],
)
def test_commands_that_need_torch_name_the_extra(venv, tmp_path, command):
    (tmp_path / "scripts").mkdir()
    done = run([venv / "bin" / command[0], *command[1:]], cwd=tmp_path, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "needs PyTorch" in done.stderr and TRAIN_HINT in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


async def start_client(venv: Path, tmp_path: Path, options: dict):
    env = dict(os.environ, BASHLSP_STORE=str(tmp_path / "store"), XDG_DATA_HOME=str(tmp_path / "data"))
    config = ClientServerConfig(server_command=[str(venv / "bin" / "bashlsp"), "serve", "--stdio"], server_env=env)
    client = await config.start()
    capabilities = types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            completion=types.CompletionClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities(),
        )
    )
    await client.initialize_session(types.InitializeParams(capabilities=capabilities, initialization_options=options))
    return client


async def wait_for_message(client, needle: str, timeout: float = 120) -> str:
    async def wait():
        while True:
            for message in [*client.log_messages, *client.messages]:
                if needle in message.message:
                    return message.message
            await client.wait_for_notification(types.WINDOW_LOG_MESSAGE)

    return await asyncio.wait_for(wait(), timeout)


@pytest.mark.timeout(300)
async def test_the_installed_server_completes_with_the_bundled_model(venv, tmp_path):
    client = await start_client(venv, tmp_path, {})
    try:
        await wait_for_message(client, "bashlsp: serving ")
        info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.modelInfo"))
        assert info["loaded"] and info["device"] == "cpu" and info["backend"] == "numpy", info
        assert info["id"].startswith("default"), info  # the bundled model: the fresh store is empty
        uri = (tmp_path / "backup.sh").as_uri()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="shellscript", version=1, text=SCRIPT)
            )
        )
        line = SCRIPT.count("\n") - 1
        at = types.Position(line=line, character=3)
        ident = types.TextDocumentIdentifier(uri=uri)
        completion = await client.text_document_completion_async(
            types.CompletionParams(text_document=ident, position=at)
        )
        texts = [item.text_edit.new_text for item in completion.items if item.text_edit]
        assert texts and all(text.startswith("ech") for text in texts), texts
        inline = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=ident,
                position=at,
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            )
        )
        assert inline.items, "no ghost text from the bundled model"
        assert inline.items[0].range == types.Range(start=at, end=at)
    finally:
        await client.shutdown_session()


@pytest.mark.timeout(300)
async def test_asking_for_a_gpu_without_torch_serves_on_the_cpu_and_names_the_extra(venv, tmp_path):
    client = await start_client(venv, tmp_path, {"device": "cuda"})
    try:
        warning = await wait_for_message(client, GPU_HINT)
        assert "using the CPU" in warning, warning
        await wait_for_message(client, "bashlsp: serving ")
        info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="bashlsp.modelInfo"))
        assert info["loaded"] and info["device"] == "cpu", info
    finally:
        await client.shutdown_session()
