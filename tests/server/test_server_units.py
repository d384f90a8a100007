"""The server's parts that need no running server: documents, framing, symbols, shell checks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types

from bashlsp.model.shell_check import ShellTools, introduces_syntax_error
from bashlsp.server.completion import ghost_text
from bashlsp.server.documents import (
    Document,
    DocumentStore,
    index_from_units,
    shell_reason,
    split_lines,
    units_from_index,
)
from bashlsp.server.generate import comment_block, parse_target
from bashlsp.server.protocol import FramingProblem, MessageFramer, ParseFailure, parse_body
from bashlsp.server.symbols import COMMAND_CONTEXT, VARIABLE_CONTEXT, scan

U16 = types.PositionEncodingKind.Utf16


def doc_of(text: str, uri: str = "file:///t/a.sh", language_id: str = "shellscript") -> Document:
    store = DocumentStore()
    return store.open(uri, language_id, 1, text)


# -- documents -------------------------------------------------------------------------------------


def test_split_lines_follows_lsp_line_breaks_only():
    assert split_lines("a\nb\r\nc\rd") == ["a\n", "b\r\n", "c\r", "d"]
    assert split_lines("a\n") == ["a\n", ""]
    assert split_lines("") == [""]
    # str.splitlines would break at these; LSP does not.
    assert split_lines("x\x0cy\u2028z\n") == ["x\x0cy\u2028z\n", ""]


def test_shell_detection():
    assert shell_reason("file:///a.txt", "shellscript", "") == "languageId shellscript"
    assert shell_reason("file:///a.sh", "plaintext", "")
    assert shell_reason("file:///tools/run", "plaintext", "#!/usr/bin/env bash")
    assert shell_reason("file:///tools/run", "plaintext", "#!/bin/sh -e")
    assert shell_reason("file:///a.py", "python", "import os") is None
    assert shell_reason("file:///a.sh", "shellscript", "#!/usr/bin/env python3") is None
    assert shell_reason("file:///a.zsh", "plaintext", "#!/bin/zsh") is None


def test_utf16_positions_round_trip():
    line = "a😀b é"
    for index in range(len(line) + 1):
        units = units_from_index(line, index, U16)
        assert index_from_units(line, units, U16) == index
    assert index_from_units(line, 2, U16) == 1  # inside the surrogate pair: before the emoji
    assert index_from_units(line, 999, U16) == len(line)


def test_clamp_past_end():
    doc = doc_of("echo a\necho bb\n")
    assert doc.clamp(types.Position(line=0, character=99)) == (0, 6)
    assert doc.clamp(types.Position(line=99, character=3)) == (2, 0)


def _reference_apply(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _offset_to_position(text: str, offset: int) -> types.Position:
    lines = split_lines(text[:offset])
    return types.Position(line=len(lines) - 1, character=units_from_index(lines[-1], len(lines[-1]), U16))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_incremental_edits_match_a_full_rewrite(data):
    alphabet = st.sampled_from(["a", "b", " ", "\n", "\r", "\r\n", "é", "😀", "\t"])
    text = "".join(data.draw(st.lists(alphabet, max_size=30)))
    doc = doc_of(text)
    for _ in range(data.draw(st.integers(1, 5))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, len(text)))
        # An edit never splits a \r\n or a surrogate pair in a real editor.
        if (
            0 < start < len(text)
            and text[start - 1 : start + 1] == "\r\n"
            or 0 < end < len(text)
            and text[end - 1 : end + 1] == "\r\n"
        ):
            continue
        new = "".join(data.draw(st.lists(alphabet, max_size=6)))
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=_offset_to_position(text, start), end=_offset_to_position(text, end)), text=new
        )
        doc.apply_change(change)
        text = _reference_apply(text, start, end, new)
        assert doc.text == text
        assert doc.lines == split_lines(text)
        assert doc.chars == len(text)


def test_prefix_window_start_is_stable_while_typing():
    text = "".join(f"echo line {i}\n" for i in range(5000))
    doc = doc_of(text)
    last = len(doc.lines) - 1
    first = doc.prefix(last, 0, 16_000)
    doc.apply_change(
        types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=last, character=0), end=types.Position(line=last, character=0)),
            text="ec",
        )
    )
    second = doc.prefix(last, 2, 16_000)
    assert second.startswith(first[:1000]) and second.endswith("ec") and len(second) <= 16_000


def test_binary_and_huge_documents_are_declined():
    assert doc_of("#!/bin/bash\n\x00\x01binary").declined == "looks binary (NUL or control characters)"
    assert doc_of("print('hi')\n", uri="file:///a.py", language_id="python").declined == "not a shell script"
    assert doc_of("#!/bin/bash\necho \udcff\n").text == "#!/bin/bash\necho \ufffd\n"  # lone surrogate from JSON


# -- framing ---------------------------------------------------------------------------------------


def test_framer_splits_any_chunking():
    bodies = [b'{"a":1}', b'{"b":"' + b"x" * 1000 + b'"}', b"{}"]
    stream = b"".join(b"Content-Length: %d\r\nContent-Type: x\r\n\r\n" % len(b) + b for b in bodies)
    for _ in range(20):
        framer, out, i = MessageFramer(), [], 0
        while i < len(stream):
            n = random.randint(1, 300)
            out += framer.feed(stream[i : i + n])
            i += n
        assert out == bodies


def test_framer_reports_bad_headers_and_skips_huge_bodies():
    framer = MessageFramer(max_body=10)
    out = framer.feed(
        b"Content-Length: nope\r\n\r\nContent-Length: 20\r\n\r\n" + b"y" * 20 + b"Content-Length: 2\r\n\r\n{}"
    )
    assert [type(x) for x in out] == [FramingProblem, FramingProblem, bytes] and out[2] == b"{}"


def test_parse_body_survives_invalid_utf8_and_garbage():
    assert parse_body(b'{"text": "caf\xc3"}') == {"text": "caf\ufffd"}
    assert isinstance(parse_body(b"{nope"), ParseFailure)
    assert isinstance(parse_body(b"[" * 100000), ParseFailure)


# -- symbols ---------------------------------------------------------------------------------------


def test_symbols_scan():
    symbols = scan(
        [
            "NAME=x",
            "export PATH_X=1",
            "local -r lv=1",
            "declare -a arr",
            "for f in *; do :; done",
            'read -r -p "Name: " user other < /dev/tty',
            "count+=1",
            "greet() { echo; }",
            "function cleanup {",
            "# ignored=1",
        ]
    )
    assert symbols.variables == ("NAME", "PATH_X", "lv", "arr", "f", "user", "other", "count")
    assert symbols.functions == ("greet", "cleanup")
    assert VARIABLE_CONTEXT.search('echo "${NA').groups() == ("{", "NA")
    assert VARIABLE_CONTEXT.search("echo $").groups() == ("", "")
    assert COMMAND_CONTEXT.search("  gre").group(1) == "gre"
    assert COMMAND_CONTEXT.search("echo gre") is None


# -- generate-from-comment targets -----------------------------------------------------------------


def test_comment_block_selection_rules():
    doc = doc_of("#!/bin/bash\n# list files\n# newest first\necho hi\n  # indented\n")
    at = lambda line, ch=0: types.Position(line=line, character=ch)  # noqa: E731
    block = comment_block(doc, types.Range(start=at(2), end=at(2)))
    assert (block.first, block.last) == (1, 2)  # the run of comments, not the shebang
    assert comment_block(doc, types.Range(start=at(3), end=at(3))) is None  # a code line
    assert comment_block(doc, types.Range(start=at(0), end=at(0))) is None  # the shebang
    assert comment_block(doc, types.Range(start=at(1), end=at(4))) is None  # code inside the selection
    block = comment_block(doc, types.Range(start=at(4), end=at(4)))
    assert block.indent == "  "
    assert (
        parse_target(
            [
                {
                    "uri": "file:///a.sh",
                    "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}},
                }
            ]
        )[0]
        == "file:///a.sh"
    )
    with pytest.raises(Exception):  # noqa: B017 - any parse failure will do
        parse_target([{"uri": "file:///a.sh", "range": {"start": 1}}])


# -- shell checks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> ShellTools:
    return ShellTools()


def test_bash_syntax_check(tools):
    assert tools.check_syntax("echo ok\n").ok
    broken = tools.check_syntax("if true; then\nfi\n")
    assert broken.ok is False and broken.line == 2 and not broken.end_of_file
    assert tools.check_syntax("for f in *; do\n echo").end_of_file


def test_suggestion_syntax_rules(tools):
    # Leaves the block open while the user is typing it: fine.
    assert not introduces_syntax_error(tools, "for f in *; do\n  ", 'echo "$f"\n', "")
    # Closes the wrong construct: rejected.
    assert introduces_syntax_error(tools, "for f in *; do\n  ", 'echo "$f"\nfi\n', "")
    # Breaks a document that was fine.
    assert introduces_syntax_error(tools, "echo a\n", "fi\n", "echo b\n")
    # An error above the cursor is the user's: the suggestion is not judged by it.
    assert not introduces_syntax_error(tools, "fi\necho a\n", "echo b\n", "")


def test_ghost_text_of_several_lines_that_break_the_syntax_is_their_first_line(tools):
    before = "for f in *; do\n"
    assert ghost_text(tools, before, '  echo "$f"\ndone', "") == '  echo "$f"\ndone'  # valid: all of it
    assert ghost_text(tools, before, '  echo "$f"\nfi', "") == '  echo "$f"'  # the first line, as one line is offered
    assert ghost_text(tools, before, "#\nfi", "") is None  # its first line is not worth showing
    assert ghost_text(tools, before, "\n  ls\nfi", "") is None  # a blank first line
    assert ghost_text(tools, before, "  ech", "") == "  ech"  # one line: never checked


@pytest.mark.skipif(not ShellTools().shellcheck.available, reason="shellcheck is not installed")
def test_shellcheck_findings(tools):
    findings = tools.findings("rm $1\n", "info")
    assert [f.code for f in findings] == [2086]


def test_model_text_gets_the_documents_line_breaks():
    assert doc_of("echo a\r\necho b\r\n").native("x\ny\n") == "x\r\ny\r\n"
    assert doc_of("echo a\necho b").native("x\ny") == "x\ny"


async def test_symbols_follow_edits_in_a_long_document():
    import asyncio

    from bashlsp.server.symbols import document_symbols

    async def symbols(line):
        return await document_symbols(doc, line, lambda fn, *args: asyncio.to_thread(fn, *args))

    store = DocumentStore()
    doc = store.open("file:///t/long.sh", "shellscript", 1, "".join(f"echo {i}\n" for i in range(2000)) + "A=1\n")
    assert (await symbols(1500)).variables == ("A",)

    def replace_line(line: int, text: str, version: int) -> None:
        store.change(
            doc.uri,
            version,
            [
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=line, character=0), end=types.Position(line=line + 1, character=0)
                    ),
                    text=text,
                )
            ],
        )

    replace_line(700, "NEW=1\n", 2)
    assert (await symbols(1500)).variables == ("NEW", "A")
    replace_line(700, "echo gone\n", 3)
    assert (await symbols(1500)).variables == ("A",)
