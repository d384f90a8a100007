"""The VS Code extension (editors/vscode): it builds and packages, its settings are the server's,
and the client library it uses drives the real server for completion, ghost text and the code action.

Node and npm run in subprocesses. `.ci/run` does `npm ci`; run by hand, the first test that needs
node_modules installs them the same way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import EDITOR_COMMENTED, EDITOR_TYPED, memorized_checkpoint

from bashlsp.model.device import DEVICE_CHOICES
from bashlsp.server.settings import Settings, parse_settings, settings_schema

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
PACKAGE_JSON = json.loads((EXTENSION / "package.json").read_text())
PROPERTIES = PACKAGE_JSON["contributes"]["configuration"]["properties"]

# Settings the extension reads itself (how to start the server, LSP tracing); never sent to the server.
CLIENT_ONLY = {"bashlsp.path", "bashlsp.trace.server", "bashlsp.install.requirement", "bashlsp.install.python"}
SERVER_COMMANDS = {"bashlsp.generateFromComment", "bashlsp.reloadModel", "bashlsp.modelInfo"}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not installed: the VS Code extension cannot be built here",
)


def run(cmd: list[str], timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=EXTENSION, capture_output=True, text=True, timeout=timeout, **kwargs)


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if not (EXTENSION / "node_modules" / ".package-lock.json").exists():
        check(run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=600))
    return EXTENSION / "node_modules"


@pytest.fixture(scope="module")
def compiled_extension(node_modules) -> Path:
    check(run(["npm", "run", "compile"]))
    return EXTENSION / "out"


# --- settings: what the extension declares is what the server understands -------------------


def server_keys_declared() -> dict[str, dict]:
    return {name.removeprefix("bashlsp."): spec for name, spec in PROPERTIES.items() if name not in CLIENT_ONLY}


def test_every_declared_setting_is_a_server_setting_with_the_same_default():
    declared = server_keys_declared()
    schema = settings_schema()
    assert set(declared) == set(schema), (
        f"declared but unknown to the server: {sorted(set(declared) - set(schema))}; "
        f"server settings missing from package.json: {sorted(set(schema) - set(declared))}"
    )
    for key, default in schema.items():
        spec = declared[key]
        assert spec["type"] == JSON_TYPES[type(default)], (
            f"bashlsp.{key}: type {spec['type']}, server has {type(default).__name__}"
        )
        assert spec["default"] == default and type(spec["default"]) in (type(default), int), (
            f"bashlsp.{key}: default {spec['default']!r}, server has {default!r}"
        )


def test_client_only_settings_are_not_server_settings():
    assert CLIENT_ONLY <= set(PROPERTIES)
    assert not {name.removeprefix("bashlsp.") for name in CLIENT_ONLY} & set(settings_schema())
    assert all(name.startswith("bashlsp.") for name in PROPERTIES)


def test_declared_choices_and_ranges_are_what_the_server_accepts():
    declared = server_keys_declared()
    assert declared["device"]["enum"] == list(DEVICE_CHOICES)
    for choice in DEVICE_CHOICES:
        assert parse_settings({"device": choice})[1] == []

    def problems(key: str, value) -> list[str]:
        node: dict = {}
        data = node
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        return parse_settings(data)[1]

    checked = 0
    for key, spec in declared.items():
        step = 1 if spec["type"] == "integer" else 0.25
        if "minimum" in spec:
            assert problems(key, spec["minimum"]) == [], f"{key}: the declared minimum is rejected by the server"
            assert problems(key, spec["minimum"] - step), f"{key}: the server accepts less than the declared minimum"
            checked += 1
        if "exclusiveMinimum" in spec:
            assert problems(key, spec["exclusiveMinimum"]), f"{key}: the server accepts the declared exclusive minimum"
            assert problems(key, spec["exclusiveMinimum"] + step) == []
            checked += 1
        if "maximum" in spec:
            assert problems(key, spec["maximum"]) == [], f"{key}: the declared maximum is rejected by the server"
            assert problems(key, spec["maximum"] + step), f"{key}: the server accepts more than the declared maximum"
            checked += 1
    assert checked >= 6  # maxTokens, temperature, topP, generate.maxTokens, generate.samples


@needs_node
def test_extension_sends_settings_the_server_accepts(compiled_extension):
    """The nested object the extension's own code builds from package.json parses cleanly to the defaults."""
    script = (
        "const s = require('./out/settings.js'); const pkg = require('./package.json');"
        "const d = s.declaredDefaults(pkg);"
        "process.stdout.write(JSON.stringify(s.nestSettings(s.serverSettingKeys(pkg), (k) => d[k])));"
    )
    sent = json.loads(check(run(["node", "-e", script])).stdout)
    assert "path" not in sent and "trace" not in sent
    settings, problems = parse_settings(sent)
    assert problems == []
    assert settings == Settings()
    assert sent["inlineCompletion"] == {"enable": True, "multiline": True}


# --- build and package -----------------------------------------------------------------------


def test_manifest_declares_the_commands_and_activation():
    contributes = PACKAGE_JSON["contributes"]
    titles = {c["command"]: c["title"] for c in contributes["commands"]}
    assert sorted(titles.values()) == [
        "Generate script from comment",
        "Install the server (private venv)",
        "Reload model",
        "Show model info",
    ]
    # The language client registers the server's own command ids; the extension's must differ.
    assert not set(titles) & SERVER_COMMANDS
    assert "onLanguage:shellscript" in PACKAGE_JSON["activationEvents"]
    client_version = PACKAGE_JSON["dependencies"]["vscode-languageclient"]
    assert int(client_version.lstrip("^~").split(".")[0]) >= 11, (
        "inline completion is stable from vscode-languageclient 11"
    )


@needs_node
def test_extension_compiles_and_packages(compiled_extension, tmp_path):
    # `vsce package` compiles again (the vscode:prepublish script), as it would for a release.
    vsix = tmp_path / "bashlsp.vsix"
    proc = check(run(["npx", "--no-install", "vsce", "package", "--allow-missing-repository", "--out", str(vsix)]))
    assert vsix.is_file(), proc.stdout
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("extension/package.json"))
    assert {
        "extension/out/extension.js",
        "extension/out/settings.js",
        "extension/out/modelInfo.js",
        "extension/out/server.js",
    } <= names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any(n.startswith(("extension/src/", "extension/test/")) for n in names)
    assert not any(n.startswith("extension/node_modules/typescript/") for n in names), "devDependencies were packaged"
    assert manifest["contributes"]["configuration"]["properties"] == PROPERTIES


# --- the protocol, with the client library the extension uses --------------------------------

# Completion and ghost text at "ech|" (the last line) of a script like the fixtures.
TYPED = EDITOR_TYPED.removesuffix("\n")  # the cursor ends the document, after "ech"
# "Generate script from comment" on line 1 of a new file.
COMMENTED = EDITOR_COMMENTED


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return memorized_checkpoint(tmp_path_factory)


def items_of(result) -> list[dict]:
    if result is None:
        return []
    return result["items"] if isinstance(result, dict) else result


def assert_script_inserted(text_before: str, text_after: str, log: str) -> None:
    """A script went in right below the comment (line 1), and the result passes bash -n."""
    before, after = text_before.split("\n"), text_after.split("\n")
    assert after[:2] == before[:2], "the comment and the lines above it must stay"
    assert after[len(after) - (len(before) - 2) :] == before[2:], "the lines below the comment must stay"
    inserted = after[2 : len(after) - (len(before) - 2)]
    assert sum(1 for line in inserted if line.strip()) >= 2, f"no script was inserted below the comment\n{log}"
    syntax = subprocess.run(["bash", "-n"], input=text_after, capture_output=True, text=True)
    assert syntax.returncode == 0, f"the generated script fails bash -n: {syntax.stderr}\n{text_after}"


@needs_node
@pytest.mark.timeout(240)
def test_protocol_completion_inline_completion_and_code_action(compiled_extension, checkpoint, tmp_path):
    typed, commented, commanded = tmp_path / "backup.sh", tmp_path / "count.sh", tmp_path / "count2.sh"
    typed.write_text(TYPED)
    commented.write_text(COMMENTED)
    commanded.write_text(COMMENTED)
    last_line = TYPED.count("\n")
    scenario = {
        "serverCommand": [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"],
        "settings": {"checkpoint": str(checkpoint), "store": str(tmp_path / "store"), "device": "cpu"},
        "document": str(typed),
        "completionAt": {"line": last_line, "character": 3},
        "inlineAt": {"line": last_line, "character": 3},
        "generateDocument": str(commented),
        "commentLine": 1,
        "commandDocument": str(commanded),
        "timeoutMs": 90000,
    }
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    proc = run(["node", "test/protocol-client.js", str(tmp_path / "scenario.json")], timeout=200)
    assert proc.returncode == 0, f"protocol client failed:\n{proc.stderr}"
    result = json.loads(proc.stdout)
    log = "\n".join(m["message"] for m in result["logMessages"]) + "\n" + result["stderr"]

    caps = result["capabilities"]
    for provider in ("completionProvider", "inlineCompletionProvider", "codeActionProvider"):
        assert caps.get(provider) not in (None, False), f"the server does not offer {provider}: {caps}"
    assert SERVER_COMMANDS <= set(caps["executeCommandProvider"]["commands"])
    assert not [m for m in result["logMessages"] if "unknown setting" in m["message"]], log

    # The status bar (the extension's modelInfo.js on the server's bashlsp.modelInfo).
    assert result["modelInfo"]["loaded"] is True, result["modelInfo"]
    assert result["statusBar"]["loaded"] == {
        "text": f"bashlsp: {checkpoint.name} (cpu)",
        "loading": False,
        "problem": False,
    }

    # Completion: items VS Code would show for the typed word "ech", replacing it.
    items = items_of(result["completion"])
    assert items, f"no completion items\n{log}"
    for item in items:
        assert (item.get("filterText") or item["label"]).startswith("ech"), f"VS Code would filter out {item!r}"
        edit = item["textEdit"]
        edit_range = edit.get("range") or edit["replace"]
        assert edit_range["start"] == {"line": last_line, "character": 0}
        assert edit_range["end"] == {"line": last_line, "character": 3}
        assert edit["newText"].startswith("ech")

    # Inline completion: ghost text that continues "ech". Each item says what it replaces (VS Code
    # reads an item without a range as replacing the word, and would show nothing).
    ghosts = items_of(result["inlineCompletion"])
    assert ghosts, f"no inline completion\n{log}"
    for ghost in ghosts:
        text = ghost["insertText"] if isinstance(ghost["insertText"], str) else ghost["insertText"]["value"]
        replaced = ghost["range"]
        assert replaced["start"]["line"] == replaced["end"]["line"] == last_line, ghost
        assert replaced["end"]["character"] == 3, ghost
        line = "ech"[: replaced["start"]["character"]] + text
        assert line.startswith("echo"), f"ghost text does not continue the word: {ghost!r}"

    # The code action: offered on the comment, applied, and the script below it passes bash -n.
    titles = [a["title"] for a in result["codeActions"] or []]
    assert "Generate script from comment" in titles, f"code actions: {titles}\n{log}"
    assert_script_inserted(result["textBefore"], result["textAfter"], log)

    # The extension's command: the server applies the edit itself (workspace/applyEdit).
    assert result["generateCommandResult"]["applied"] is True, result["generateCommandResult"]
    assert [e["origin"] for e in result["appliedEdits"]] == ["codeAction.edit", "workspace/applyEdit"]
    assert_script_inserted(result["commandTextBefore"], result["commandTextAfter"], log)

    # didChangeConfiguration, as the extension sends it, turns ghost text off.
    assert items_of(result["inlineAfterDisable"]) == []
    assert result["exit"]["code"] == 0, log


# --- finding the server: the setting, PATH, the private venv, or a clear "none" ------------------

FIND_SERVER_JS = """
const { findServer } = require(process.argv[1]);
const [configured, pathVariable, venv] = JSON.parse(process.argv[2]);
process.stdout.write(JSON.stringify(findServer(configured, pathVariable, venv) ?? null));
"""


@needs_node
def test_the_extension_finds_its_server_or_says_there_is_none(compiled_extension, tmp_path):
    def find(configured, path_variable, venv):
        args = json.dumps([configured, path_variable, str(venv)])
        proc = check(run(["node", "-e", FIND_SERVER_JS, str(compiled_extension / "server.js"), args]))
        return json.loads(proc.stdout)

    def executable(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
        return path

    on_path = executable(tmp_path / "bin" / "bashlsp")
    private = executable(tmp_path / "venv" / "bin" / "bashlsp")
    custom = executable(tmp_path / "elsewhere" / "my-bashlsp")
    empty_venv = tmp_path / "no-venv"
    (tmp_path / "plain").write_text("not executable")

    assert find("bashlsp", str(on_path.parent), tmp_path / "venv") == {"command": str(on_path), "source": "PATH"}
    assert find("", "/nonexistent", tmp_path / "venv") == {"command": str(private), "source": "private venv"}
    assert find("bashlsp", "/nonexistent", empty_venv) is None  # nothing to start: the extension says so
    assert find(str(custom), "/nonexistent", empty_venv) == {"command": str(custom), "source": "setting"}
    # A path the user set wins, and a wrong one is reported, never silently replaced.
    assert find(str(tmp_path / "plain"), str(on_path.parent), tmp_path / "venv") is None
    assert find("my-bashlsp", str(custom.parent), empty_venv) == {"command": str(custom), "source": "setting"}
