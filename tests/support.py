"""Helpers shared by the tests of every layer (tests/model, server, training, editors, e2e).

One module, imported as `support` (pytest puts tests/ on sys.path for conftest.py): the fixture
data and a tiny real checkpoint, the `bashlsp` command in a subprocess, a raw LSP client that
writes bytes as they are, pytest-lsp helpers, the editors' memorised checkpoint, a folder
snapshot that proves the trainer never writes there, and a user's scripts with a style of their
own. Fixtures that use them are in conftest.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from lsprotocol import types
from pytest_lsp import LanguageClient

from bashlsp.model.architectures import build_model
from bashlsp.model.checkpoint import save_checkpoint
from bashlsp.model.gpt import GPT, GPTConfig
from bashlsp.model.tokenizer import BashTokenizer

# -- the fixture scripts, a tiny real checkpoint, the `bashlsp` command (was conftest.py) ------

FIXTURES = Path(__file__).parent / "fixtures"

FIXTURE_SCRIPTS = sorted((FIXTURES / "scripts").glob("*.sh"))


def fixture_texts() -> list[str]:
    return [p.read_text() for p in FIXTURE_SCRIPTS]


def tiny_config(vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=64)


def make_tiny_checkpoint(directory: Path, steps: int = 60, seed: int = 0) -> Path:
    """Train a real (tiny) tokenizer and model on the fixture scripts and save a checkpoint."""
    torch.manual_seed(seed)
    # One thread: for a model this small, two threads only add synchronisation (measured
    # ~10x slower under load on the 2-core CI machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_tiny(directory, steps)
    finally:
        torch.set_num_threads(threads)


def _train_tiny(directory: Path, steps: int) -> Path:
    texts = fixture_texts()
    tokenizer = BashTokenizer.train(texts * 4, vocab_size=384)
    model = GPT(tiny_config(tokenizer.vocab_size))
    ids = []
    for text in texts:
        ids += tokenizer.encode(text) + [tokenizer.eof_id]
    data = torch.tensor(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = 64
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (8,))
        x = torch.stack([data[s : s + seq] for s in starts])
        y = torch.stack([data[s + 1 : s + seq + 1] for s in starts])
        loss = model(x, targets=y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(
        directory, model, tokenizer, {"data": {"files": len(texts)}, "metrics": {"train_loss": loss.item()}}
    )


def run_cli(
    *args: str, env: dict | None = None, input: str | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    """Run `python -m bashlsp.server.cli ARGS` (the `bashlsp` command) in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "bashlsp.server.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
    )


# -- raw lsp (was raw_lsp.py) ------------------------------------------------------------------
# A raw LSP client for hardening tests: the real server over stdio, bytes written as they are.
#
# pytest-lsp's client refuses malformed messages, so the fuzz and fault tests frame their own.
# A reader thread collects every message the server sends: answers (all of them, so a duplicate
# answer is seen), log/show messages; requests from the server get a neutral answer.

SERVER = [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio"]


class ServerGone(AssertionError):
    pass


class RawServer:
    def __init__(self, log_path: Path, extra_args: list[str] | None = None, env: dict | None = None) -> None:
        self._stderr = open(log_path, "wb")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            SERVER + list(extra_args or []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=dict(os.environ, **(env or {})),
            bufsize=0,
        )
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self.answers: list[dict] = []  # every response, in arrival order
        self.logs: list[tuple[int, str]] = []  # (type, message) of window/logMessage
        self.shown: list[str] = []  # window/showMessage texts
        self.sent = 0  # messages written
        self._write_lock = threading.Lock()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="raw-lsp-reader", daemon=True)
        self._reader.start()

    # -- writing -----------------------------------------------------------------------------------

    def send_bytes(self, data: bytes, messages: int = 1) -> None:
        with self._write_lock:
            try:
                self.proc.stdin.write(data)
            except (BrokenPipeError, OSError) as exc:
                raise ServerGone(f"the server is gone ({exc}); its log:\n{self.log_tail()}") from exc
            self.sent += messages

    def send_body(self, body: bytes) -> None:
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send(self, message) -> None:
        self.send_body(json.dumps(message).encode())

    def next_id(self) -> int:
        return next(self._ids)

    def notify(self, method: str, params=None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params=None, timeout: float = 60) -> dict:
        msg_id = f"r{self.next_id()}"
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.wait_answer(msg_id, timeout)

    # -- reading -----------------------------------------------------------------------------------

    def _read(self) -> None:
        stdout = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = stdout.readline()
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = b""
                while len(body) < length:
                    chunk = stdout.read(length - len(body))
                    if not chunk:
                        return
                    body += chunk
                self._handle(json.loads(body))
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _handle(self, message: dict) -> None:
        method = message.get("method")
        if method is not None and "id" in message:  # a request from the server
            result = {"applied": False} if method == "workspace/applyEdit" else None
            if method == "workspace/configuration":
                result = [None for _ in (message.get("params") or {}).get("items", [])]
            body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()
            with self._write_lock:
                self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            return
        with self._cond:
            if method == "window/logMessage":
                params = message.get("params") or {}
                self.logs.append((params.get("type", 0), params.get("message", "")))
            elif method == "window/showMessage":
                self.shown.append((message.get("params") or {}).get("message", ""))
            elif method is None:
                self.answers.append(message)
            self._cond.notify_all()

    def _wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise ServerGone(
                        f"the server exited (code {self.proc.poll()}) while waiting for {what}; "
                        f"its log:\n{self.log_tail()}"
                    )
                if remaining <= 0:
                    raise TimeoutError(f"no {what} within {timeout:.0f} s")
                self._cond.wait(remaining)

    def answers_for(self, msg_id) -> list[dict]:
        with self._cond:
            return [a for a in self.answers if a.get("id") == msg_id and type(a.get("id")) is type(msg_id)]

    def wait_answer(self, msg_id, timeout: float = 60) -> dict:
        return self._wait(
            lambda: next(
                (a for a in self.answers if a.get("id") == msg_id and type(a.get("id")) is type(msg_id)), None
            ),
            timeout,
            f"answer to {msg_id!r}",
        )

    def wait_answers(self, count: int, timeout: float = 60) -> None:
        self._wait(lambda: len(self.answers) >= count, timeout, f"{count} answers")

    def wait_log(self, needle: str, timeout: float = 120, start: int = 0) -> str:
        """The first log message from index `start` on that contains `needle`."""
        return self._wait(
            lambda: next((m for _, m in self.logs[start:] if needle in m), None),
            timeout,
            f"log message containing {needle!r}",
        )

    def wait_shown(self, needle: str, timeout: float = 60) -> str:
        """The first window/showMessage that contains `needle`."""
        return self._wait(
            lambda: next((m for m in self.shown if needle in m), None), timeout, f"shown message containing {needle!r}"
        )

    # -- the session -------------------------------------------------------------------------------

    def initialize(self, options: dict | None = None, capabilities: dict | None = None) -> dict:
        answer = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": None,
                "capabilities": capabilities or {},
                "initializationOptions": options or {},
            },
        )
        self.notify("initialized", {})
        return answer

    def open(self, uri: str, text: str, language_id: str = "shellscript", version: int = 1) -> None:
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": language_id, "version": version, "text": text}},
        )

    def model_info(self) -> dict:
        return self.request("workspace/executeCommand", {"command": "bashlsp.modelInfo"})["result"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> int | None:
        if self.alive():
            try:
                self.request("shutdown", None, timeout=30)
                self.notify("exit")
                return self.proc.wait(30)
            except (ServerGone, TimeoutError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.proc.kill()
        code = self.proc.wait()
        self._stderr.close()
        return code


# -- lsp support (was lsp_support.py) ----------------------------------------------------------
# Helpers shared by the pytest-lsp tests of the server.


async def wait_for_log(client: LanguageClient, needle: str, timeout: float = 120) -> types.LogMessageParams:
    async def wait():
        while True:
            for message in client.log_messages:
                if needle in message.message:
                    return message
            await client.wait_for_notification(types.WINDOW_LOG_MESSAGE)

    return await asyncio.wait_for(wait(), timeout)


def pretrain_args(out: Path, *extra: str) -> list[str]:
    """`bashlsp-train --pretrain` arguments for a 2-step run on the fixture scripts, then `extra`."""
    return [str(FIXTURES / "scripts"), "--out", str(out), "--steps", "2", "--batch-size", "2", "--seq-len", "32"] + [
        "--warmup",
        "1",
        "--save-every",
        "1",
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]


# -- a memorised char model (the char tokenizer and the other architectures, issue 17) ------------

MEMO = '#!/bin/sh\nfor f in *.log; do\n  gzip -9 --keep --verbose "$f"\ndone\necho finished\n'
MEMO_TYPED = MEMO[: MEMO.index("gz") + 2]  # typed up to "gz" on line 2: the ghost text is the rest of the line


def memorized_char_checkpoint(directory: Path, arch: str = "dense", steps: int = 100) -> Path:
    """A tiny model of `arch` on char tokens that has memorised MEMO (one window; a few s on one thread)."""
    tokenizer = BashTokenizer.char()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_model(dataclasses.replace(tiny_config(tokenizer.vocab_size), arch=arch))
        ids = torch.tensor([tokenizer.eof_id] + tokenizer.encode(MEMO) + [tokenizer.eof_id])
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(steps):
            loss = model(ids[None, :-1], targets=ids[None, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return save_checkpoint(directory, model, tokenizer, {"kind": "test", "metrics": {"train_loss": loss.item()}})


def inline_items(server: RawServer, uri: str, line: int, character: int) -> list[dict]:
    """The items of an automatic textDocument/inlineCompletion at (line, character)."""
    answer = server.request(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": line, "character": character},
            "context": {"triggerKind": 2},
        },
    )
    return answer["result"]["items"] if isinstance(answer["result"], dict) else answer["result"]


# -- editors support (was editors_support.py) --------------------------------------------------
# Shared by the editor tests (test_editors_*.py): a tiny model that knows the fixture scripts
# by heart, so a real editor asking for a completion or a generated script gets a known answer.

# The tiny model (2 layers x 64) after 300 steps: train loss ~0.15, it reproduces the fixture
# scripts. After the conftest default of 60 steps (loss ~2.1) every generated script fails
# `bash -n`, so the code action would insert nothing.
MEMORIZED_STEPS = 300


# The documents the editor tests type into (ghost text after "ech") and generate below (the
# comment the memorized checkpoint learnt the script of).
EDITOR_TYPED = """#!/bin/bash
# Back up a directory to a dated tarball.
set -euo pipefail

SRC="${1:-/etc}"
DEST="${2:-$HOME/backups}"
STAMP="$(date +%Y-%m-%d)"

mkdir -p "$DEST"
ech
"""
EDITOR_COMMENTED = """#!/bin/sh
# Count lines of every file given on the command line.
"""


def memorized_checkpoint(tmp_path_factory) -> Path:
    """Trained once per test session, shared by the editor test modules."""
    directory = tmp_path_factory.getbasetemp() / "editors-memorized-checkpoint"
    if not (directory / "meta.json").exists():
        threads = torch.get_num_threads()
        # Measured on the 2-core CI box while other work ran: 20 steps took 13.3 s with
        # torch's 2 threads and 1.1 s with one; a model this small gains nothing from threads.
        torch.set_num_threads(1)
        try:
            make_tiny_checkpoint(directory, steps=MEMORIZED_STEPS)
        finally:
            torch.set_num_threads(threads)
    return directory


# -- folder state (was folder_state.py) --------------------------------------------------------
# Snapshot of a folder (bytes, mode and mtime of every entry) to prove the trainer never writes there.


def folder_state(root: Path) -> dict[str, tuple]:
    state = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(directory) / name
            info = os.lstat(path)
            if path.is_symlink():
                state[str(path.relative_to(root))] = ("link", os.readlink(path), info.st_mtime_ns)
            elif path.is_file():
                state[str(path.relative_to(root))] = ("file", path.read_bytes(), info.st_mode, info.st_mtime_ns)
            else:
                state[str(path.relative_to(root))] = ("other", info.st_mode, info.st_mtime_ns)
    return state


# -- personal data (was personal_data.py) ------------------------------------------------------
# A user's scripts with a style of their own (helpers and paths the base model never saw), so
# fine-tuning on some of them measurably helps on the held-out rest.

TEMPLATE = """#!/bin/bash
# acme task {n}: mirror the {name} feed
source /opt/acme/lib/acme_common.sh
acme_log_info "starting {name} ({n})"
acme_require_cmd rsync
acme_with_lock /var/lock/acme-{name}.lock rsync -a /srv/acme/in/{name}/ /srv/acme/out/{name}/
acme_notify_ops "{name} mirrored"
acme_log_info "finished {name} ({n})"
"""

NAMES = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
]


def personal_script(n: int) -> str:
    return TEMPLATE.format(n=n, name=NAMES[n % len(NAMES)])


def write_personal_scripts(folder: Path, count: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"acme_{NAMES[n % len(NAMES)]}_{n}.sh").write_text(personal_script(n))
    return folder


def tiny_round_options(tmp_path: Path, base: Path, **overrides):
    """Options of a personal round small enough for a unit test: generated scripts, the tiny
    model `base`, short rows on the CPU, no replay, one pass of quiet output."""
    from bashlsp.training.personal import PersonalOptions  # torch: only the tests that train need it

    values = dict(
        dirs=[write_personal_scripts(tmp_path / "scripts")],
        store=tmp_path / "store",
        base=str(base),
        once=True,
        device="cpu",
        steps=8,
        lr=3e-3,
        batch_size=4,
        seq_len=64,
        warmup_steps=1,
        progress=False,
        holdout_fraction=0.2,
        replay_share=0.0,
    )
    values.update(overrides)
    return PersonalOptions(**values)
