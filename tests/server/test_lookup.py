"""Copy suggestions (server/lookup.py): the line that followed lines like the cursor's."""

from __future__ import annotations

from bashlsp.server.lookup import LINE_WEIGHTS, copy_suggestion

CASES = """\
case "$1" in
    start)
        log "starting"
        run_daemon --start
        ;;
    stop)
        log "stopping"
"""


def test_the_line_after_the_same_lines_is_copied_with_the_cursors_indentation():
    # Deeper in the document: the two lines before the cursor are those before `run_daemon`.
    prefix = CASES + '    esac\nif true; then\n  log "starting"\n'
    copy = copy_suggestion(prefix, "")
    assert copy is not None and copy.text == "  run_daemon --start"  # re-indented as the line before
    assert copy.score == LINE_WEIGHTS[0]  # one line equal, the one before it shares no word
    # Every line before the place equal to the cursor's (three there are): their weights.
    copy = copy_suggestion(CASES + 'case "$1" in\n    start)\n        log "starting"\n', "")
    assert copy.text == "        run_daemon --start" and copy.score == sum(LINE_WEIGHTS[:3])


def test_the_lines_further_up_tell_apart_places_alike():
    # Two places follow the same three lines; the cursor's block matches the second one's from
    # further up (`mode=b`), so its line is the copy, though ties go to the first place.
    block = 'if [ -n "$x" ]; then\n  log "go"\n  shift\n'
    document = "mode=a\nsetup\n" + block + "  run_a\nfi\n" + "mode=b\nsetup\n" + block + "  run_b\nfi\n"
    copy = copy_suggestion(document + "mode=b\nsetup\n" + block, "")
    assert copy is not None and copy.text == "  run_b" and copy.score == sum(LINE_WEIGHTS)
    copy = copy_suggestion("mode=a\nsetup\n" + block, "\n\n" + document)  # the places below the cursor
    assert copy is not None and copy.text == "  run_a"


def test_mid_line_the_copy_continues_what_is_typed():
    copy = copy_suggestion(CASES + '    restart)\n        log "restarting"\n        run_d', "")
    assert copy is not None and copy.text == "aemon --start"
    assert copy_suggestion(CASES + '    restart)\n        log "restarting"\n        zzz', "") is None


def test_never_the_cursor_line_nor_the_line_below_it():
    # The only place whose previous line matches is the cursor line's own (in the suffix) ...
    assert copy_suggestion("a=1\n", "b=2\nc=3\n") is None
    # ... and the line that followed `a=1` earlier is the line just below the cursor: not offered
    # (the next best place, `x` after `b=2`, shares one word of three with `a=1`: under MIN_SCORE).
    assert copy_suggestion("a=1\nb=2\nx\na=1\n", "\nb=2\n") is None
    assert copy_suggestion("a=1\nb=2\nx\na=1\n", "\nzzz\n").text == "b=2"
    # Text after the cursor on its line is not repeated: the copy stops before it.
    assert copy_suggestion("a=1\nb=2 # two\nx\na=1\n", "# two\n").text == "b=2 "
    assert copy_suggestion("a=1\nb=2\nx\na=1\n", "b=2\n") is None
    # Below the cursor, away from it, lines are a source like those above.
    copy = copy_suggestion("a=1\n", "\nzzz\na=1\nb=2\n")
    assert copy is not None and copy.text == "b=2"


def test_other_texts_are_sources_and_the_document_wins_ties():
    chunk = 'log "starting"\nrun_other\n'
    copy = copy_suggestion('x=1\nlog "starting"\n', "", [chunk])
    assert copy.text == "run_other"
    copy = copy_suggestion('log "starting"\nrun_daemon\nx=1\nlog "starting"\n', "", [chunk])
    assert copy.text == "run_daemon"  # equal scores: the document's line


def test_nothing_worth_showing_is_not_a_copy():
    assert copy_suggestion("#\n#\n\n#\n", "") is None  # only comment markers
    assert copy_suggestion("only one line", "") is None  # nothing before the cursor line to compare


def test_project_copies_come_from_other_files_never_the_documents_own(tmp_path):
    from bashlsp.server.context import ProjectContext
    from bashlsp.server.workspace import build_index

    root = tmp_path / "proj"
    root.mkdir()
    own = root / "own.sh"
    own.write_text('#!/bin/sh\nset -e\nlog "starting"\nown_line\n')
    context = ProjectContext(lambda *a: None)
    context.index.snapshot, context.index.roots = build_index([str(root)]), [str(root)]
    prefix = '#!/bin/sh\nset -e\nlog "starting"\n'
    assert context.copy(own.as_uri(), prefix, "") is None  # its file on disk is not context for itself
    (root / "lib.sh").write_text('#!/bin/sh\nset -e\nlog "starting"\nlib_line\n')
    context = ProjectContext(lambda *a: None)
    context.index.snapshot, context.index.roots = build_index([str(root)]), [str(root)]
    copy = context.copy(own.as_uri(), prefix, "")
    assert copy is not None and copy.text == "lib_line" and copy.score == sum(LINE_WEIGHTS[:3])
    off = ProjectContext(lambda *a: None, enabled=lambda: False)
    off.index.snapshot = context.index.snapshot
    assert off.copy(own.as_uri(), prefix, "") is None  # project context off: the document alone


def test_the_k_best_distinct_copies_best_first():
    from bashlsp.model.context import jaccard, words
    from bashlsp.server.lookup import copy_suggestions

    prefix = 'log "a"\nrun_one\nlog "a" x\nrun_two\nlog "a"\nrun_one\nlog "a"\n'
    copies = copy_suggestions(prefix, "", (), 3)
    # run_two follows lines most like the cursor's (J w0 + w1 + w2, J the word Jaccard of
    # `log "a" x` and `log "a"`, w the LINE_WEIGHTS); run_one's best place (the second) scores
    # w0 + J (w2 + w4), its first place (w0) does not count twice.
    similar = jaccard(words('log "a" x'), words('log "a"'))
    w = LINE_WEIGHTS
    assert [c.text for c in copies] == ["run_two", "run_one"]
    assert abs(copies[0].score - (similar * w[0] + w[1] + w[2])) < 1e-9
    assert abs(copies[1].score - (w[0] + similar * (w[2] + w[4]))) < 1e-9
    assert copy_suggestion(prefix, "") == copies[0]
    assert copy_suggestions(prefix, "", (), 1) == copies[:1]
