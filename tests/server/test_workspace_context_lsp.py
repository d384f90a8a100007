"""Project context end to end: the real server over stdio with a workspace folder (issue 14).

The index is built in a child process and logged in one line (bad input included); completions
keep working; recently opened documents enter the ring; the cache is pre-filled after opening;
typing what the ghost text starts with is answered from it without the model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support import FIXTURE_SCRIPTS, RawServer

SCRIPT = FIXTURE_SCRIPTS[0].read_text()


def make_workspace(root: Path) -> None:
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "common.sh").write_text(SCRIPT)
    (root / "fake.sh").write_bytes(b"\x7fELF\x00\x00binary")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "build").mkdir()
    (root / "build" / "gen.sh").write_text(SCRIPT)
    (root / ".gitignore").write_text("build/\n")
    locked = root / "locked"
    locked.mkdir()
    (locked / "x.sh").write_text(SCRIPT)
    os.chmod(locked, 0)  # unreadable (except for root)


def inline(server: RawServer, uri: str, line: int, character: int) -> dict:
    return server.request(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": line, "character": character},
            "context": {"triggerKind": 2},
        },
    )


@pytest.fixture(scope="module")
def session(tiny_checkpoint, tmp_path_factory):
    base = tmp_path_factory.mktemp("workspace-lsp")
    root = base / "proj"
    make_workspace(root)
    server = RawServer(base / "server.log", ["--log-level", "info"])
    server.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": root.as_uri(),
            "workspaceFolders": [{"uri": root.as_uri(), "name": "proj"}],
            "capabilities": {},
            "initializationOptions": {"checkpoint": str(tiny_checkpoint), "maxTokens": 16},
        },
    )
    server.notify("initialized", {})
    yield server, root
    os.chmod(root / "locked", 0o755)
    assert server.close() == 0, server.log_tail()


def test_index_is_logged_once_with_what_it_skipped(session):
    server, root = session
    line = server.wait_log("workspace index:")
    root_reads_all = os.geteuid() == 0  # root reads the folder made unreadable
    assert ("2 shell scripts" if root_reads_all else "1 shell scripts") in line, line
    assert "1 ignored by .gitignore" in line and "1 symbolic links (not followed)" in line
    assert "2 binary or not shell" in line  # fake.sh and .gitignore (a dot file may be a shell library)
    assert root_reads_all or "1 unreadable or vanished" in line
    assert sum("workspace index:" in m for _, m in server.logs) == 1


def test_prefill_after_open_fills_the_cache(session):
    # Before the tests that type (their pre-fills, IDLE_S after a change, would count here too).
    server, root = session
    uri = (root / "other.sh").as_uri()
    done = server.model_info()["projectContext"]["prefills"]
    server.open(uri, SCRIPT * 3)
    # The pre-fill runs IDLE_S after the open, on the model worker; ask until it has run.
    deadline = time.monotonic() + 60
    while server.model_info()["projectContext"]["prefills"] == done and time.monotonic() < deadline:
        pass
    assert server.model_info()["projectContext"]["prefills"] == done + 1
    # The answer at the end was decoded ahead too: the request gets it without the model (or,
    # as the script repeats itself here, the copy of the line that followed its last lines).
    before = server.model_info()["projectContext"]
    answer = inline(server, uri, len((SCRIPT * 3).splitlines()), 0)
    assert "result" in answer
    after = server.model_info()
    without_model = ("rememberedAnswers", "copiedAnswers")
    assert sum(after["projectContext"][k] - before[k] for k in without_model) == 1
    assert "inline" not in after["stats"]  # the model ran for no inline request


def test_completions_work_with_context_ring_prefill_and_reuse(session):
    server, root = session
    server.wait_log("workspace index:")
    uri = (root / "bin" / "new.sh").as_uri()  # a new file: not on disk
    lines = SCRIPT.splitlines(keepends=True)
    text = "".join(lines[: len(lines) // 2])
    server.open(uri, text)
    info = server.model_info()
    assert info["projectContext"]["workspaceScripts"] >= 1 and info["projectContext"]["recentChunks"] >= 1
    # Ghost text at successive cursors of a typed line until the model offers some, then type
    # its first character: the answer is the rest, without the model.
    line = len(text.splitlines())
    typed = ""
    for char in lines[len(lines) // 2]:
        answer = inline(server, uri, line, len(typed))
        items = answer["result"]["items"]
        if items and len(items[0]["insertText"]) > 1:
            ghost = items[0]["insertText"]
            break
        server.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": 2 + len(typed)},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": line, "character": len(typed)},
                            "end": {"line": line, "character": len(typed)},
                        },
                        "text": char,
                    }
                ],
            },
        )
        typed += char
    else:
        pytest.skip("the tiny model offered no ghost text of two characters or more on this line")
    before = server.model_info()
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 1000},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": line, "character": len(typed)},
                        "end": {"line": line, "character": len(typed)},
                    },
                    "text": ghost[0],
                }
            ],
        },
    )
    answer = inline(server, uri, line, len(typed) + 1)
    assert answer["result"]["items"][0]["insertText"] == ghost[1:]
    after = server.model_info()
    assert after["projectContext"]["reusedAnswers"] == before["projectContext"]["reusedAnswers"] + 1
    assert after["stats"].get("inline") == before["stats"].get("inline")  # no model run


def test_ghost_text_copies_the_line_that_followed_the_same_lines_in_the_project(session):
    # The lines before the cursor are lib/common.sh's lines 4-6: the ghost text is its line 7,
    # copied (server/lookup.py) without running the model.
    server, root = session
    server.wait_log("workspace index:")
    lines = SCRIPT.splitlines()
    uri = (root / "bin" / "copy.sh").as_uri()  # not on disk
    server.open(uri, "\n".join(lines[3:6]) + "\n")
    before = server.model_info()
    answer = inline(server, uri, 3, 0)
    assert answer["result"]["items"][0]["insertText"] == lines[6]
    after = server.model_info()
    assert after["projectContext"]["copiedAnswers"] == before["projectContext"]["copiedAnswers"] + 1
    assert after["stats"].get("inline") == before["stats"].get("inline")  # the model did not run for it


def test_a_weaker_copy_is_not_judged_by_default_and_the_model_answers(session):
    # `mkdir -p "$OUT"` is like lib/common.sh's `mkdir -p "$DEST"` (5 of 7 words): a copy of the
    # line after it scores 0.71, under COPY_MIN and from JUDGE_MIN. The judge is off by default
    # (server/completion.JUDGE_LOGPROB), so the model runs for its own line and nothing is judged
    # (the copy answers only if the model offers nothing).
    server, root = session
    server.wait_log("workspace index:")
    lines = SCRIPT.splitlines()
    uri = (root / "bin" / "judge.sh").as_uri()  # not on disk
    server.open(uri, 'x=0\nmkdir -p "$OUT"\n')
    before = server.model_info()
    answer = inline(server, uri, 2, 0)
    after = server.model_info()
    items = answer["result"]["items"]
    copied = after["projectContext"]["copiedAnswers"] - before["projectContext"]["copiedAnswers"]
    ran = (after["stats"].get("inline") or {}).get("requests", 0) - (before["stats"].get("inline") or {}).get(
        "requests", 0
    )
    assert after["projectContext"]["judgedCopies"] == before["projectContext"]["judgedCopies"] == 0
    assert ran == 1 and (not copied or items[0]["insertText"] == lines[9]), (before, after)
