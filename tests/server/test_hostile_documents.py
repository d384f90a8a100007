"""Shell-shaped hostile documents cannot hold up the server (issue 19), over stdio, real server.

A theme file with `export RBENV_THEME_PROMPT_PREFIX=""` lines once froze every request for
minutes: a symbol regex backtracked exponentially on the event loop. Here hostile documents (those
lines, 10,000-character names, deeply nested `$(...)`, unbalanced quotes over 1 MB, long runs of `$`
and brackets) get popup, ghost-text and code-action requests, and a normal request on another
document sent right behind them must be answered about as fast as when the same requests go to
ordinary documents of the same sizes (the baseline, measured in the same run). Every request is
answered, and `shutdown` too.

The watchdog: a request still running past `--request-timeout` is answered with an error that
names its feature, told to the editor once.
"""

from __future__ import annotations

import time

import pytest
from support import RawServer

MB = 1 << 20
NORMAL_URI = "file:///tmp/bashlsp-hostile/normal.sh"
NORMAL = '#!/bin/bash\nNAME=world\ngreet() {\n  echo "hi $1"\n}\necho "$'


def _theme() -> str:
    lines = ["#!/usr/bin/env bash", 'export SCM_THEME_PROMPT_PREFIX=""', 'export SCM_THEME_PROMPT_SUFFIX=""']
    lines += ['export RBENV_THEME_PROMPT_PREFIX=""', 'export RBENV_THEME_PROMPT_SUFFIX=""']
    lines += [f'export {"RBENV_THEME_" * (i % 20 + 1)}PROMPT_PREFIX=""' for i in range(400)]
    return "\n".join(lines) + '\necho "$'


HOSTILE = {
    "theme.sh": _theme(),
    "names.sh": "\n".join(
        ["#!/bin/bash", "export " + "A" * 10_000 + '=""', "B" * 10_000 + "=1", "echo ${" + "a" * 10_000]
    ),
    "nested.sh": "#!/bin/bash\necho " + "$(" * 5_000 + "x" + ")" * 5_000 + "\necho $",
    "quotes.sh": '#!/bin/bash\necho "' + "a b ' c $x " * (MB // 12) + "\necho $",
    "dollars.sh": "#!/bin/bash\n" + "$" * 200_000 + "\necho $",
    "brackets.sh": "#!/bin/bash\n" + "[" * 100_000 + "a[" * 50_000 + "=\n" + "x;a[" * 50_000 + "\necho $",
}


def _ordinary(size: int) -> str:
    """An ordinary script about `size` characters long (the baseline for a hostile one)."""
    block = 'NAME=world\nfor f in *.log; do\n  gzip -9 "$f"\ndone\necho "done: $NAME"\n'
    return "#!/bin/bash\n" + block * max(1, size // len(block)) + "echo $"


def _end(text: str) -> dict:
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1])}


def _requests(server: RawServer, uri: str, text: str) -> list[str]:
    """Popup, ghost text and code action at the end (after a `$`: the symbol scan) and at the start."""
    ids = []
    for method, params in [
        ("textDocument/completion", {"position": _end(text)}),
        ("textDocument/completion", {"position": {"line": 1, "character": 0}}),
        ("textDocument/inlineCompletion", {"position": _end(text), "context": {"triggerKind": 2}}),
        (
            "textDocument/codeAction",
            {
                "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}},
                "context": {"diagnostics": []},
            },
        ),
    ]:
        msg_id = f"h{server.next_id()}"
        server.send(
            {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {"textDocument": {"uri": uri}, **params}}
        )
        ids.append(msg_id)
    return ids


def _normal_latency_behind(server: RawServer, documents: dict[str, str]) -> float:
    """Send every request on `documents`, then one completion on the normal document; the
    seconds until that one is answered. All the others must be answered too."""
    ids = []
    for uri, text in documents.items():
        ids += _requests(server, uri, text)
    start = time.perf_counter()
    answer = server.request(
        "textDocument/completion", {"textDocument": {"uri": NORMAL_URI}, "position": _end(NORMAL)}, timeout=120
    )
    latency = time.perf_counter() - start
    assert "NAME" in [item["label"] for item in answer["result"]["items"]]
    for msg_id in ids:
        reply = server.wait_answer(msg_id, timeout=120)
        assert "result" in reply or reply["error"]["code"] in (-32800, -32803), reply
    return latency


@pytest.fixture
def server(tiny_checkpoint, tmp_path):
    server = RawServer(tmp_path / "server.log", ["--log-level", "info"])
    server.initialize({"checkpoint": str(tiny_checkpoint), "completion": {"alternatives": 1}})
    server.wait_log("serving tiny")
    server.open(NORMAL_URI, NORMAL)
    yield server
    if server.alive():
        server.proc.kill()
    server.proc.wait()


def test_hostile_documents_hold_up_no_other_request(server):
    ordinary = {f"file:///tmp/bashlsp-hostile/ordinary-{name}": _ordinary(len(text)) for name, text in HOSTILE.items()}
    hostile = {f"file:///tmp/bashlsp-hostile/{name}": text for name, text in HOSTILE.items()}
    for uri, text in {**ordinary, **hostile}.items():
        server.open(uri, text)
    _normal_latency_behind(server, {NORMAL_URI: NORMAL})  # warm: the first request pre-fills the cache
    baseline = min(_normal_latency_behind(server, ordinary) for _ in range(2))
    behind_hostile = _normal_latency_behind(server, hostile)
    print(
        f"\nnormal request behind hostile documents {behind_hostile * 1e3:.0f} ms, behind ordinary ones {baseline * 1e3:.0f} ms"
    )
    assert behind_hostile <= 3 * baseline + 1.0, (behind_hostile, baseline)
    # Cancelling and shutting down are answered at once too.
    msg_id = f"c{server.next_id()}"
    server.send(
        {
            "jsonrpc": "2.0",
            "id": msg_id,
            "method": "textDocument/completion",
            "params": {"textDocument": {"uri": list(hostile)[0]}, "position": {"line": 1, "character": 5}},
        }
    )
    server.notify("$/cancelRequest", {"id": msg_id})
    server.wait_answer(msg_id)
    assert server.request("shutdown", None, timeout=30).get("result") is None
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "event loop has not answered" not in log, log[-3000:]


def test_a_request_past_its_bound_is_answered_with_an_error_naming_its_feature(tmp_path):
    # The bundled model takes far longer than 50 ms to load, and the first requests wait for the
    # load: they run past a 50 ms bound.
    server = RawServer(tmp_path / "server.log", ["--request-timeout", "0.05", "--log-level", "info"])
    try:
        server.initialize({"checkpoint": "default"})
        server.open(NORMAL_URI, NORMAL)
        answers = [
            server.request(method, {"textDocument": {"uri": NORMAL_URI}, "position": _end(NORMAL)}, timeout=60)
            for method in ("textDocument/completion", "textDocument/completion", "textDocument/inlineCompletion")
        ]
        first = answers[0]["error"]
        assert first["code"] == -32803 and "completion ran past its bound of 0.05 s" in first["message"], answers[0]
        told = server.wait_log("completion ran past its bound")
        assert "later ones are logged only" in told
        assert sum(m.startswith("bashlsp: completion ran past") for _, m in server.logs) == 1  # once per feature
        assert server.model_info() is not None  # unbounded, quick commands still answer
    finally:
        server.proc.kill()
        server.proc.wait()


def test_request_timeout_must_be_positive(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "bashlsp.server.cli", "serve", "--stdio", "--request-timeout", "0"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2 and "--request-timeout must be a positive number" in result.stderr
