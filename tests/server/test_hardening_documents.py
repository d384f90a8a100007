"""Odd documents over stdio: each is answered quickly or declined quickly with a log line.

One real server (tiny checkpoint) for the module. For every document: completion and inline
completion at its start, middle and end, and typing one character at the end. The bound per
request is generous (the 2-core CI machine may be busy); the latency goals themselves are
measured by `bashlsp bench serve`.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest
from support import RawServer

SECONDS_PER_REQUEST = 5.0
BLOCK = 'NAME=world\nfor f in *.log; do\n  cp "$f" /tmp/\ndone\necho "$NAME"\n'


def _binary_text() -> str:
    rng = random.Random(7)
    return "#!/bin/bash\n" + bytes(rng.randrange(256) for _ in range(4096)).decode("latin-1")


DOCUMENTS = {
    "empty": "",
    "five_megabytes": "#!/bin/bash\n" + BLOCK * (5 * 1024 * 1024 // len(BLOCK)),
    "one_megabyte_line": "#!/bin/bash\necho " + "x" * (1024 * 1024) + "\nNAME=1\necho $",
    "one_megabyte_line_no_break": "#!/bin/bash\n" + "a=1; " * (1024 * 1024 // 5),
    "binary_with_nul": "#!/bin/bash\n" + "\x00\x01\x02\xff" * 1000,
    "binary_bytes_no_nul": _binary_text(),
    "crlf": '#!/bin/bash\r\nNAME=world\r\nfor f in *.log; do\r\n  echo "$f"\r\ndone\r\necho "$',
    "lone_cr": '#!/bin/bash\rNAME=world\recho "$',
    "tabs": '#!/bin/bash\nNAME=x\nif true; then\n\tif true; then\n\t\techo "$NAME"\n\t\t\n\tfi\nfi\n',
    "non_ascii": '#!/bin/bash\n# Grüße, 日本語, emoji \U0001f600\nNAMÉ=1\nNAME="ça va"\necho "\U0001f600 $',
    "only_newlines": "\n" * 100_000,
    # A base64 blob, the cursor after it: a regex search for the word before the cursor was
    # quadratic in the word's length (20 s for 40,000 characters).
    "long_word_then_space": "#!/bin/bash\nNAME=1\nPAYLOAD=" + "QUJD" * 50_000 + " ",
    "too_large": "#!/bin/bash\n" + BLOCK * (9 * 1024 * 1024 // len(BLOCK)),
}
DECLINED = {"binary_with_nul": "looks binary", "too_large": "too large"}


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    server = RawServer(tmp_path_factory.mktemp("docs") / "server.log")
    server.initialize({"checkpoint": str(tiny_checkpoint), "completion": {"alternatives": 1}})
    server.wait_log("serving tiny")
    yield server
    assert server.close() == 0, server.log_tail()


def positions(text: str) -> list[tuple[int, int]]:
    """Start, middle and end of the document as (line, UTF-16 character)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    middle = len(lines) // 2
    last = len(lines) - 1

    def utf16(line: str) -> int:
        return len(line.encode("utf-16-le")) // 2

    return [(0, 0), (middle, utf16(lines[middle]) // 2), (last, utf16(lines[last]))]


def timed(server: RawServer, method: str, params: dict) -> tuple[dict, float]:
    started = time.perf_counter()
    answer = server.request(method, params, timeout=120)
    return answer, time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_is_answered_quickly_or_declined_with_a_log_line(server: RawServer, name: str):
    text = DOCUMENTS[name]
    uri = f"file:///tmp/bashlsp-docs/{name}-{uuid.uuid4().hex[:6]}.sh"
    logs_before = len(server.logs)
    server.open(uri, text)
    ident = {"uri": uri}
    slowest = 0.0
    for line, character in positions(text):
        position = {"line": line, "character": character}
        answer, took = timed(server, "textDocument/completion", {"textDocument": ident, "position": position})
        assert "result" in answer, answer
        slowest = max(slowest, took)
        answer, took = timed(
            server,
            "textDocument/inlineCompletion",
            {"textDocument": ident, "position": position, "context": {"triggerKind": 2}},
        )
        assert "result" in answer, answer
        slowest = max(slowest, took)
        if name in DECLINED:
            assert answer["result"] is None
    # Typing one character at the end, then asking again.
    line, character = positions(text)[-1]
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": line, "character": character},
                        "end": {"line": line, "character": character},
                    },
                    "text": "N",
                }
            ],
        },
    )
    answer, took = timed(
        server,
        "textDocument/completion",
        {"textDocument": ident, "position": {"line": line, "character": character + 1}},
    )
    assert "result" in answer, answer
    slowest = max(slowest, took)
    if name in DECLINED:
        assert answer["result"] is None
        message = server.wait_log(f"does not serve {uri}", timeout=30, start=logs_before)
        assert DECLINED[name] in message
        mentions = [m[:200] for _, m in server.logs[logs_before:] if uri in m]
        assert len(mentions) == 1, mentions  # logged once, not per request
    assert slowest < SECONDS_PER_REQUEST, f"{name}: slowest request took {slowest:.2f} s"
    server.notify("textDocument/didClose", {"textDocument": ident})


def test_invalid_utf8_on_disk_is_served(server: RawServer, tmp_path):
    # The editor read a file with invalid UTF-8 and sent its bytes inside the JSON as they are.
    path = tmp_path / "latin1.sh"
    path.write_bytes(b"#!/bin/bash\n# caf\xe9 \xff\xfe \xed\xa0\x80\nNAME=x\necho $")
    uri = path.as_uri()
    text = path.read_bytes().replace(b"\n", b"\\n")
    server.send_body(
        b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": '
        b'{"uri": "%s", "languageId": "shellscript", "version": 1, "text": "%s"}}}' % (uri.encode(), text)
    )
    answer, took = timed(
        server, "textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 6}}
    )
    assert [i["label"] for i in answer["result"]["items"] if i["kind"] == 6] == ["NAME"]
    assert took < SECONDS_PER_REQUEST


# -- the window and word logic on very long lines (in process) ---------------------------------------


def test_word_before_is_linear_on_a_long_word():
    from bashlsp.server.documents import DocumentStore

    doc = DocumentStore().open("file:///w.sh", "shellscript", 1, "#!/bin/bash\necho " + "x" * 200_000 + " ab_1")
    started = time.perf_counter()
    assert doc.word_before(1, 5 + 200_000 + 1) == ""  # after the space: no word (was a 20 s regex search)
    assert doc.word_before(1, 5 + 200_000) == "x" * 200_000
    assert doc.word_before(1, 5 + 200_000 + 5) == "ab_1"
    assert doc.word_before(0, 0) == ""
    assert time.perf_counter() - started < 0.5


def test_prefix_of_a_long_line_is_bounded_and_stable_while_typing():
    from bashlsp.server.documents import PREFIX_CUT_STEP, DocumentStore

    line = "a=1; " * 200_000
    doc = DocumentStore().open("file:///l.sh", "shellscript", 1, "#!/bin/bash\n" + line)
    column = len(line)
    prefix = doc.prefix(1, column, 16_000)
    assert 16_000 - PREFIX_CUT_STEP < len(prefix) <= 16_000 and line.endswith(prefix)
    # A few more characters typed: the window starts at the same place (the engine's cache holds).
    typed = doc.prefix(1, column - 3, 16_000)
    assert prefix.startswith(typed)
