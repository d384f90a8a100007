"""Project context: the repo-level format (model/context.py), the workspace index
(server/workspace.py) and the choice of chunks for a cursor (server/context.py)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from bashlsp.model import context as fmt
from bashlsp.server import workspace
from bashlsp.server.context import ProjectContext, RecentChunks
from bashlsp.server.documents import DocumentStore
from bashlsp.server.workspace import build_index, describe

BACKUP = """#!/bin/bash
set -euo pipefail
BACKUP_DIR="/var/backups/app"
log() { printf '%s %s\\n' "$(date +%F)" "$*" >&2; }
rotate_backups() {
  local keep="$1"
  find "$BACKUP_DIR" -name '*.tar.gz' -mtime +"$keep" -delete
}
make_backup() {
  tar -czf "$BACKUP_DIR/app-$(date +%F).tar.gz" /srv/app
  log "backup written to $BACKUP_DIR"
}
"""

DEPLOY = """#!/bin/sh
# deploy the release to every host
for host in $HOSTS; do
  scp release.tar.gz "$host:/tmp/"
  ssh "$host" 'tar -xzf /tmp/release.tar.gz -C /opt/app'
done
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- model/context.py: chunks, similarity, format ---------------------------------------------------


def test_chunk_spans_cover_the_file_with_overlap():
    assert fmt.chunk_spans(0) == []
    assert fmt.chunk_spans(5) == [(0, 5)]
    spans = fmt.chunk_spans(100)
    assert spans[0] == (0, fmt.CHUNK_LINES) and spans[-1][1] == 100
    assert all(end - start == fmt.CHUNK_LINES for start, end in spans)
    assert all(b[0] - a[0] <= fmt.CHUNK_STRIDE for a, b in zip(spans, spans[1:]))


def test_query_is_the_complete_lines_before_the_cursor_line():
    prefix = "".join(f"line{i}\n" for i in range(30)) + "ech"
    query = fmt.query_text(prefix)
    assert query == "".join(f"line{i}\n" for i in range(30 - fmt.QUERY_LINES, 30))
    assert fmt.query_text(prefix + "o hi") == query  # typing on the cursor line changes nothing
    assert fmt.query_text("no newline yet") == ""


def test_jaccard_and_best_chunks():
    assert fmt.jaccard(frozenset(), frozenset({"a"})) == 0.0
    assert fmt.jaccard(frozenset({"a", "b"}), frozenset({"b", "c"})) == pytest.approx(1 / 3)
    candidates = [("deploy.sh", DEPLOY), ("other.sh", "x=1\ny=2\n"), ("backup.sh", BACKUP)]
    best = fmt.best_chunks(BACKUP[:200], candidates)
    assert [path for path, _, _ in best] == ["backup.sh", "deploy.sh"]  # other.sh: under MIN_SIMILARITY
    assert best[0][2] > 0.8 > 0.2 > best[1][2] >= fmt.MIN_SIMILARITY


def test_context_ids_format_round_trips(tiny_checkpoint):
    from bashlsp.model.tokenizer import BashTokenizer

    tok = BashTokenizer.from_file(tiny_checkpoint / "tokenizer.json")
    ids = fmt.context_ids(tok, [("a.sh", "echo a\n"), ("lib/b.sh", "echo b")])
    # The most similar chunk (given first) is written last, nearest the document.
    first = ids.index(tok.eof_id)
    assert tok.decode(ids[:first]) == "# file: lib/b.sh\necho b\n"
    assert tok.decode(ids[first + 1 : -1]) == "# file: a.sh\necho a\n"
    assert ids.count(tok.eof_id) == 2 and ids[-1] == tok.eof_id
    assert fmt.chunk_document("bad\nname.sh", "x") == "# file: bad?name.sh\nx\n"


# -- server/workspace.py: the index ---------------------------------------------------------------


def test_index_finds_shell_scripts_and_skips_the_rest(tmp_path):
    root = tmp_path / "proj"
    write(root / "bin" / "backup.sh", BACKUP)
    write(root / "deploy", DEPLOY)  # no extension, a shebang
    write(root / "tool.py", "#!/usr/bin/env python3\nprint('hi')\n")
    write(root / "fake.sh", b"\x7fELF\x00\x00\x01binary")  # a binary named .sh
    write(root / "py.sh", "#!/usr/bin/python3\nprint(1)\n")  # the shebang wins over the name
    write(root / ".git" / "hooks" / "pre-commit.sh", BACKUP)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a symlink loop
    write(tmp_path / "outside" / "secret.sh", BACKUP)
    (root / "out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "out.sh").symlink_to(tmp_path / "outside" / "secret.sh")
    os.mkfifo(root / "pipe.sh")  # opening it would wait for a writer forever
    index = build_index([str(root)])
    assert sorted(index.names) == ["bin/backup.sh", "deploy"]
    assert index.summary["links"] == 3 and index.summary["notShell"] == 3
    assert index.files[index.names.index("deploy")] == str(root / "deploy")
    line = describe(index.summary, index.roots)
    assert "2 shell scripts" in line and "3 symbolic links (not followed)" in line and "3 binary or not shell" in line


def test_gitignore_nested_and_negated(tmp_path):
    root = tmp_path / "proj"
    write(root / ".gitignore", "build/\n*.gen.sh\n")
    write(root / "build" / "x.sh", BACKUP)
    write(root / "a.gen.sh", BACKUP)
    write(root / "sub" / ".gitignore", "*.sh\n!keep.sh\n")
    write(root / "sub" / "drop.sh", BACKUP)
    write(root / "sub" / "keep.sh", DEPLOY)
    write(root / "top.sh", DEPLOY)
    index = build_index([str(root)])
    assert sorted(index.names) == ["sub/keep.sh", "top.sh"]
    assert index.summary["ignored"] == 3


def test_gitignore_that_ignores_everything(tmp_path):
    root = tmp_path / "proj"
    write(root / ".gitignore", "*\n")
    for i in range(5):
        write(root / f"d{i}" / "s.sh", BACKUP)
    index = build_index([str(root)])
    assert index.names == [] and index.num_chunks == 0
    assert index.scores(fmt.words(BACKUP), 4) == []
    assert "0 shell scripts" in describe(index.summary, index.roots) and "ignored by .gitignore" in describe(
        index.summary, index.roots
    )


def test_bounds_stop_the_walk(tmp_path, monkeypatch):
    root = tmp_path / "many"
    for i in range(300):
        write(root / f"d{i % 7}" / f"f{i}.sh", f"#!/bin/sh\necho {i}\n")
    monkeypatch.setattr(workspace, "MAX_ENTRIES", 100)
    index = build_index([str(root)])
    assert index.summary["entries"] == 101 and index.summary["limit"] == "100 entries"
    assert "stopped at the limit of 100 entries" in describe(index.summary, index.roots)
    monkeypatch.setattr(workspace, "MAX_ENTRIES", 10_000)
    monkeypatch.setattr(workspace, "MAX_FILES", 10)
    assert len(build_index([str(root)]).files) == 10
    monkeypatch.setattr(workspace, "MAX_FILES", 10_000)
    monkeypatch.setattr(workspace, "MAX_TOTAL_BYTES", 100)
    assert build_index([str(root)]).summary["limit"].endswith("MB of scripts")
    monkeypatch.setattr(workspace, "MAX_TOTAL_BYTES", 1 << 30)
    index = build_index([str(root)], max_seconds=0)
    assert index.summary["limit"] == "0 s" and index.files == []


def test_too_large_and_secrets(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    write(root / "big.sh", "#!/bin/sh\n" + "echo x\n" * 50_000)
    write(root / "creds.sh", '#!/bin/sh\nexport API_TOKEN="s3cr3tvalue1234567890"\ncurl -H "x: $API_TOKEN" host\n')
    index = build_index([str(root)])
    assert index.names == ["creds.sh"] and index.summary["tooLarge"] == 1
    assert "s3cr3tvalue" not in index.texts[0] and "REDACTED" in index.texts[0]


def test_unreadable_and_vanishing_folders(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    write(root / "locked" / "a.sh", BACKUP)
    write(root / "gone" / "b.sh", BACKUP)
    write(root / "ok.sh", DEPLOY)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        if str(path).endswith("gone"):  # deleted between the parent's listing and its own
            for child in Path(path).iterdir():
                child.unlink()
            Path(path).rmdir()
        return real_scandir(path)

    write(root / "vanishing.sh", DEPLOY)

    def open_after_it_vanished(path, *args, **kwargs):  # deleted between the listing and the read
        if str(path).endswith("vanishing.sh"):
            os.unlink(path)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(workspace.os, "scandir", scandir)
    monkeypatch.setattr(workspace, "open", open_after_it_vanished, raising=False)
    index = build_index([str(root), str(tmp_path / "no-such-folder")])
    assert index.names == ["ok.sh"]
    assert index.summary["unreadable"] == 4
    assert "4 unreadable or vanished" in describe(index.summary, index.roots)


def test_an_indexer_that_dies_is_logged_and_leaves_an_empty_index(tmp_path):
    root = tmp_path / "proj"
    write(root / "backup.sh", BACKUP)
    logs = []
    index = workspace.WorkspaceIndex(lambda level, message, show: logs.append((level, message)))
    future = index.start([str(root)])
    for child in multiprocessing.active_children():  # killed (out of memory, a signal) before it answers
        if child.name == "bashlsp-index":
            child.kill()
    with pytest.raises(RuntimeError):
        future.result(timeout=120)
    assert [level for level, message in logs if "the workspace index failed (the indexer ended" in message] == [
        "warning"
    ]
    assert index.snapshot.num_chunks == 0 and index.snapshot.scores(fmt.words(BACKUP), 4) == []


def test_scores_are_jaccard_and_exclude_the_own_file(tmp_path):
    root = tmp_path / "proj"
    write(root / "backup.sh", BACKUP)
    write(root / "deploy.sh", DEPLOY)
    index = build_index([str(root)])
    query = fmt.words('rotate_backups() {\n  local keep="$1"\n')
    results = index.scores(query, 5)
    for score, i in results:
        assert score == pytest.approx(fmt.jaccard(query, fmt.words(index.chunk(i)[2])), rel=1e-6)
    assert index.chunk(results[0][1])[1] == "backup.sh"
    own = str(root / "backup.sh")
    assert all(index.chunk(i)[0] != own for _, i in index.scores(query, 5, exclude_file=own))
    assert index.nbytes() > len(BACKUP)


def test_index_builds_in_a_child_process(tmp_path):
    root = tmp_path / "proj"
    write(root / "backup.sh", BACKUP)
    logs = []
    index = workspace.WorkspaceIndex(lambda level, message, show: logs.append(message))
    future = index.start([str(root)])
    future.result(timeout=120)
    assert index.snapshot.names == ["backup.sh"]
    assert logs and "workspace index: 1 shell scripts" in logs[0]
    # The child's word hashes are this process's: a query finds the chunk (with Python's string
    # hash, which differs between processes, it found nothing).
    assert index.snapshot.scores(fmt.words(BACKUP), 1) == build_index([str(root)]).scores(fmt.words(BACKUP), 1)
    assert index.snapshot.scores(fmt.words(BACKUP), 1)[0][0] == 1.0
    # The child exits once it has sent the index (a lingering one kept a dead server's stderr open).
    assert not [p for p in multiprocessing.active_children() if p.name == "bashlsp-index"]
    # close() stops a build that is still running.
    for i in range(200):
        write(root / f"d{i}" / "s.sh", BACKUP)
    future = index.start([str(root)])
    index.close()
    with pytest.raises(RuntimeError):
        future.result(timeout=60)
    assert not [p for p in multiprocessing.active_children() if p.name == "bashlsp-index"]


def test_folders_from_initialize(tmp_path):
    from lsprotocol import types

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    folders = [types.WorkspaceFolder(uri=a.as_uri(), name="a"), types.WorkspaceFolder(uri=b.as_uri(), name="b")]
    assert workspace.folders_from_initialize(folders, None, None) == [str(a), str(b)]
    assert workspace.folders_from_initialize(None, a.as_uri(), None) == [str(a)]
    assert workspace.folders_from_initialize(None, None, str(b)) == [str(b)]
    assert workspace.folders_from_initialize(None, "untitled:x", None) == []
    assert workspace.folders_from_initialize(None, (tmp_path / "none").as_uri(), None) == []


# -- server/context.py: the ring and the choice ---------------------------------------------------


def test_ring_evicts_similar_then_oldest():
    ring = RecentChunks(capacity=3)
    lines = BACKUP.splitlines(keepends=True)
    ring.add("a", "a.sh", lines, 0)
    ring.add("a", "a.sh", lines, 1)  # the same lines again: replaces the first
    assert len(ring.chunks) == 1
    for i in range(4):
        ring.add(f"f{i}", f"f{i}.sh", [f"echo {i} {w}\n" for w in "abcdefgh"], 0)
    assert [c.origin for c in ring.chunks] == ["f1", "f2", "f3"]
    assert ring.add("x", "x.sh", ["\n", "   \n"], 0) is None


def _doc(store: DocumentStore, uri: str, text: str):
    return store.open(uri, "shellscript", 1, text)


def test_choice_is_stable_while_typing_and_never_the_own_file(tmp_path):
    root = tmp_path / "proj"
    write(root / "backup.sh", BACKUP)
    write(root / "deploy.sh", DEPLOY)
    ctx = ProjectContext(lambda *a: None)
    ctx.index.roots = [str(root)]
    ctx.index.snapshot = build_index([str(root)])
    store = DocumentStore()
    # Editing backup.sh itself: its own file on disk is never offered.
    own = _doc(store, (root / "backup.sh").as_uri(), BACKUP)
    assert all(path != "backup.sh" for path, _ in ctx.for_cursor(own.uri, BACKUP))
    # A new script that looks like backup.sh gets backup.sh's chunk.
    new = _doc(store, (root / "new.sh").as_uri(), "")
    prefix = BACKUP[: BACKUP.index("make_backup")]
    chosen = ctx.for_cursor(new.uri, prefix)
    assert chosen and chosen[0][0] == "backup.sh"
    assert ctx.for_cursor(new.uri, prefix + "make_b") is not None
    assert ctx.for_cursor(new.uri, prefix + "make_b") == chosen  # same line: same choice
    # One more line that keeps the topic keeps the choice (hysteresis).
    assert ctx.for_cursor(new.uri, prefix + "make_backup() {\n") == chosen
    ctx.enabled = lambda: False
    assert ctx.for_cursor(new.uri, prefix) == ()


def test_recent_edits_reach_other_documents_but_not_themselves():
    ctx = ProjectContext(lambda *a: None)
    store = DocumentStore()
    lib = _doc(store, "file:///w/lib.sh", BACKUP)
    ctx.opened(lib)
    assert [c.path for c in ctx.recent.chunks] == ["lib.sh"]
    assert ctx.for_cursor(lib.uri, BACKUP) == ()  # its own chunk is not context for itself
    other = _doc(store, "untitled:Untitled-1", "")
    assert ctx.for_cursor(other.uri, BACKUP[:300])[0][0] == "lib.sh"
    # An edit enters the ring when the user moves on: here, a request in another document.
    ctx.changed(lib, 5)
    assert len(ctx.recent.chunks) == 1
    ctx.for_cursor(other.uri, "x\n")
    assert len(ctx.recent.chunks) == 1  # the same lines as the chunk from opening: it replaced it
    ctx.closed(lib.uri)
    ctx.saved(other)
    assert len(ctx.recent.chunks) == 1  # an empty document adds nothing


# -- training/corpus/dataset.py: repo-level examples ------------------------------------------------


def test_repo_context_chooses_neighbours_as_the_server_does(tmp_path):
    from bashlsp.training.corpus.dataset import CorpusDoc, RepoContext

    docs = [
        CorpusDoc(BACKUP, "debian", "app", "train", "/usr/lib/app/backup.sh"),
        CorpusDoc(DEPLOY, "debian", "app", "train", "/usr/lib/app/deploy.sh"),
        CorpusDoc(BACKUP.replace("app", "web"), "debian", "web", "train", "/usr/bin/webbackup"),
        CorpusDoc("# tar\ntar -czf a.tgz dir\n", "tldr", "tar", "train", "common/tar"),
    ]
    context = RepoContext.for_corpus(docs)
    query = fmt.query_text(BACKUP[: BACKUP.index("make_backup")])
    # Alone in its package, or tldr: no neighbours. The own file is never chosen.
    assert context.choose(2, query) == [] and context.choose(3, query) == []
    assert not context.has_neighbours(2) and context.has_neighbours(0)
    assert [path for path, _ in context.choose(0, query)] == ["usr/lib/app/deploy.sh"]  # not backup.sh itself
    chosen = context.choose(1, query)
    assert [path for path, _ in chosen] == ["usr/lib/app/backup.sh"]
    # The same choice as the server's plain scan over the same chunks.
    scan = fmt.best_chunks(query, [("usr/lib/app/backup.sh", c) for c in fmt.file_chunks(BACKUP)])
    assert chosen == [(path, text) for path, text, _ in scan]


# -- the engine: context ahead of the prompt, pre-fill ahead of time ------------------------------


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    from bashlsp.model.checkpoint import load_checkpoint
    from bashlsp.model.engine import Engine

    return Engine(load_checkpoint(tiny_checkpoint, backend="numpy"), min_token_prob=0)


def test_context_goes_ahead_of_the_prompt_and_the_cache_survives_typing(engine):
    from bashlsp.model.engine import CompletionQuery

    tok = engine.tokenizer
    chunks = (("lib/backup.sh", BACKUP), ("deploy.sh", DEPLOY))
    prefix, suffix = "#!/bin/bash\nrotate_backups() {\n  local keep=", "\n}\n"
    query = CompletionQuery("file:///w/new.sh", prefix, suffix, "inline", max_tokens=4, context=chunks)
    doc = engine._document(query.uri)
    prompt, _ = engine.prompts.build(doc, query, 4)
    room = engine.context - min(engine.context // 4, 128)
    ctx = fmt.context_ids(tok, chunks, room // fmt.CONTEXT_SHARE)
    assert ctx and len(ctx) <= room // fmt.CONTEXT_SHARE and ctx[-1] == tok.eof_id
    assert tok.decode(ctx).startswith("# file: lib/backup.sh\n#!/bin/bash\n")  # the best chunk, cut to fit
    assert prompt[0] == tok.eof_id and prompt[1 : 1 + len(ctx)] == ctx
    assert prompt[1 + len(ctx)] == tok.fim_prefix_id
    plain, _ = engine.prompts.build(
        engine._document("file:///w/other.sh"), CompletionQuery("file:///w/other.sh", prefix, "", "inline"), 4
    )
    assert tok.fim_prefix_id not in plain and plain[0] == tok.eof_id and len(plain) < len(ctx)
    first = engine.complete(query)
    # Typing one more character with the same choice of chunks: only the new tokens are pre-filled.
    typed = CompletionQuery(query.uri, prefix + '"', suffix, "inline", max_tokens=4, context=chunks)
    again = engine.complete(typed)
    assert first.stats.prefilled > len(ctx) and again.stats.prefilled <= 3


def test_prefill_ahead_of_time_then_a_request_prefills_little(engine):
    from bashlsp.model.engine import CompletionQuery
    from bashlsp.model.errors import Cancelled

    text = "".join(f"echo line {i}\n" for i in range(120))
    query = CompletionQuery("file:///w/long.sh", text, "", "inline", max_tokens=4)
    with pytest.raises(Cancelled):
        engine.prefill(query, should_stop=lambda: True)
    stats = engine.prefill(query)
    assert stats.prefilled > 100
    assert engine.complete(query).stats.prefilled == 1


# -- the line rule at line starts (model/engine/decode.py, stops.LINE_CONFIDENCE) -------------------


def _decode_line(tok, pieces, prefix, line_confidence=0.5, line_guesses=2, multiline=False, min_prob=0.2):
    """Feed (text, probability) pieces to a Decoder as if the model had chosen them."""
    import math

    from bashlsp.model.engine import CompletionQuery, StopRules, token_table
    from bashlsp.model.engine.decode import Decoder, Row

    decoder = Decoder(tok, token_table(tok), line_confidence, line_guesses)
    query = CompletionQuery("u", prefix, "", "inline", multiline=multiline)
    rules, row = StopRules.for_query(query), Row(pending=b"")
    for text, prob in pieces:
        for i, token in enumerate(tok.encode(text)):
            decoder.take(row, token, math.log(prob if i == 0 else 0.99), rules, b"", math.log(min_prob))
    row.truncated = not row.done
    return [s.text for s in decoder.suggestions([row], b"", rules, "inline")]


def test_line_start_offers_the_whole_line_when_confident(tiny_checkpoint):
    from bashlsp.model.tokenizer import BashTokenizer

    tok = BashTokenizer.from_file(tiny_checkpoint / "tokenizer.json")
    confident = [("echo", 0.9), (" done", 0.1), ("\n", 0.9)]  # one guess, the line sure otherwise
    unsure = [("echo", 0.9), (" done", 0.05), (" now", 0.05), ("\n", 0.3)]
    assert _decode_line(tok, confident, "x=1\n") == ["echo done"]
    assert _decode_line(tok, unsure, "x=1\n") == ["echo"]  # ends before its first guess
    assert _decode_line(tok, confident, "x=1\n", line_confidence=0) == ["echo"]  # the rule off
    assert _decode_line(tok, confident, "x=1\nfoo ") == ["echo"]  # not at a line start: a guess ends it
    assert _decode_line(tok, [("#", 0.9), ("\n", 0.9)], "x=1\n") == []  # a lone comment marker
    # Three guesses on the line: it ends at the first at once, however sure the rest would be.
    many = [("echo", 0.9), (" a", 0.19), (" b", 0.19), (" c", 0.19), (" done and done and done", 0.99), ("\n", 0.99)]
    assert _decode_line(tok, many, "x=1\n", line_confidence=0.3, line_guesses=99) == [
        "echo a b c done and done and done"
    ]
    assert _decode_line(tok, many, "x=1\n", line_confidence=0.3, line_guesses=2) == ["echo"]
    assert _decode_line(tok, [("  ", 0.9), ("\n", 0.9)], "x=1\n") == []  # only blanks
    # Several lines of comment markers only (`#\n#`, the most common of them at line starts): nothing.
    markers = [("#", 0.9), ("\n", 0.9), ("#", 0.9), ("\n", 0.9), ("\n", 0.9)]
    assert _decode_line(tok, markers, "x=1\n", multiline=True) == []
    comment = [("#", 0.9), ("\n", 0.9), ("# usage", 0.9), ("\n", 0.9), ("\n", 0.9)]
    assert _decode_line(tok, comment, "x=1\n", multiline=True) == ["#\n# usage"]


def test_line_start_guesses_have_their_own_threshold(tiny_checkpoint):
    """Mid-line a token under min_token_prob ends ghost text; on a line start's first line only a
    token under stops.LINE_START_PROB is a guess, so a likelier one does not cut the line short."""
    from bashlsp.model.engine.stops import LINE_START_PROB
    from bashlsp.model.tokenizer import BashTokenizer

    tok = BashTokenizer.from_file(tiny_checkpoint / "tokenizer.json")
    fair = [("echo", 0.9), (" done", (LINE_START_PROB + 0.6) / 2), ("\n", 0.9)]
    # A line start: no guess, so the line is not judged (its mean probability is under 0.8).
    assert _decode_line(tok, fair, "x=1\n", line_confidence=0.8, min_prob=0.6) == ["echo done"]
    assert _decode_line(tok, fair, "x=1\nfoo ", min_prob=0.6) == ["echo"]  # mid-line: it ends there
    assert _decode_line(tok, fair, "x=1\nfoo ", min_prob=0.2) == ["echo done"]


def test_training_stream_carries_neighbour_chunks(tiny_checkpoint):
    from bashlsp.model.tokenizer import BashTokenizer
    from bashlsp.training.corpus.dataset import CorpusDoc, RepoContext
    from bashlsp.training.loop import TokenWindows

    tok = BashTokenizer.from_file(tiny_checkpoint / "tokenizer.json")
    docs = [
        CorpusDoc(BACKUP, "debian", "app", "train", "/usr/lib/app/backup.sh"),
        CorpusDoc(BACKUP.replace("BACKUP_DIR", "ARCHIVE_DIR"), "debian", "app", "train", "/usr/lib/app/archive.sh"),
        CorpusDoc(DEPLOY, "debian", "web", "train", "/usr/bin/deploy"),
    ]
    texts = [d.text for d in docs]
    context = RepoContext.for_corpus(docs)
    plain = TokenWindows(texts, tok, 64, fim_rate=0.5, seed=3)
    off = TokenWindows(texts, tok, 64, fim_rate=0.5, seed=3, context=context, context_rate=0.0)
    assert plain.stream.tolist() == off.stream.tolist()  # no context: the stream of old
    on = TokenWindows(texts, tok, 256, fim_rate=0.0, seed=3, context=context, context_rate=1.0)
    text = tok.decode(on.stream.tolist())
    # The app scripts carry each other's chunk, cut to a third of a sequence (the stream's random
    # start may cut the first one off); deploy has no neighbour.
    assert text.count("# file: usr/lib/app/") >= 1 and "# file: usr/bin/deploy" not in text
    full = tok.decode(plain.stream.tolist())
    assert len(on.stream) > len(plain.stream) and "# file:" not in full
