"""A raw LSP client for hardening tests: the real server over stdio, bytes written as they are.

pytest-lsp's client refuses malformed messages, so the fuzz and fault tests frame their own.
A reader thread collects every message the server sends: answers (all of them, so a duplicate
answer is seen), log/show messages; requests from the server get a neutral answer.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

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
