"""The character (byte-level, no merges) tokenizer: every byte a token, the special tokens after
them, exact round trips, and the one loader and the engine working with a model trained on it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import MEMO, MEMO_TYPED, RawServer, fixture_texts, inline_items, memorized_char_checkpoint

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.engine import CompletionQuery, Engine, token_table
from bashlsp.model.tokenizer import CHAR_VOCAB_SIZE, EOF, FIM_MIDDLE, SPECIAL_TOKENS, BashTokenizer

CHAR = BashTokenizer.char()


def test_every_byte_is_its_own_token_and_the_specials_follow():
    assert CHAR.vocab_size == CHAR_VOCAB_SIZE == 256 + len(SPECIAL_TOKENS)
    assert CHAR.token_bytes[:256] == [bytes([b]) for b in range(256)]
    assert [CHAR.eof_id, CHAR.fim_prefix_id, CHAR.fim_suffix_id, CHAR.fim_middle_id, CHAR.pad_id] == list(
        range(256, 261)
    )
    assert CHAR.kind == "char"
    assert BashTokenizer.train(fixture_texts(), vocab_size=400).kind == "bpe"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_round_trip_including_invalid_utf8(data):
    # Token ids are the bytes, so any byte string (a cut multi-byte character, invalid UTF-8) is spelled exactly.
    assert CHAR.decode_bytes(list(data)) == data
    text = data.decode("utf-8", errors="replace")
    assert CHAR.encode(text) == list(text.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_random_text_round_trip(text):
    assert CHAR.decode(CHAR.encode(text)) == text


def test_special_token_spelling_stays_text_and_file_round_trip(tmp_path):
    text = f"echo '{EOF}' {FIM_MIDDLE} héllo 😀\n"
    ids = CHAR.encode(text)
    assert max(ids) < 256 and CHAR.decode(ids) == text
    CHAR.save(tmp_path / "tokenizer.json")
    again = BashTokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.kind == "char" and again.encode(text) == ids and again.to_str() == CHAR.to_str()


def test_healing_has_nothing_to_back_off_with_single_byte_tokens():
    table = token_table(CHAR)
    ids = CHAR.encode("ech")
    assert table.heal(ids) == (ids, b"")
    # Below a comment, a line break or `#` cannot start the script (and no special token can).
    banned = set(table.no_code_after(b"").tolist())
    assert {ord("\n"), ord("#"), CHAR.eof_id} <= banned and ord("e") not in banned


@pytest.fixture(scope="module")
def char_checkpoint(tmp_path_factory):
    return memorized_char_checkpoint(tmp_path_factory.mktemp("char") / "ckpt")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_engine_completes_with_a_char_model(char_checkpoint, backend):
    loaded = load_checkpoint(char_checkpoint, backend=backend)
    assert loaded.tokenizer.kind == "char" and loaded.config.vocab_size == CHAR_VOCAB_SIZE
    engine = Engine(loaded)
    for mode in ("line", "inline"):
        # 27 characters, more than LINE_MAX_TOKENS: for a char model the bounds are scaled (token_scale).
        prefix = "#!/bin/sh\nfor f in *.log; do\n  gz"
        assert (
            engine.complete(CompletionQuery("file:///a.sh", prefix, "", mode)).suggestions[0].text
            == 'ip -9 --keep --verbose "$f"'
        )
    prefix = MEMO[: MEMO.index("ech") + 3]
    assert engine.complete(CompletionQuery("file:///b.sh", prefix, "", "line")).suggestions[0].text == "o finished"


def test_incremental_decoding_equals_the_full_forward_with_char_ids(char_checkpoint):
    loaded = load_checkpoint(char_checkpoint, backend="numpy")
    ids = CHAR.encode("#!/bin/bash\necho $HOME\n")
    cache = loaded.model.new_cache(1, 64)
    full = loaded.model.step([ids], loaded.model.new_cache(1, 64), all_positions=True)[0]
    steps = [loaded.model.step([[i]], cache)[0] for i in ids]
    np.testing.assert_allclose(np.stack(steps), full, atol=1e-4)


def test_the_server_serves_a_char_model(tmp_path):
    """Over stdio, the real server (the numpy backend on a CPU)."""
    checkpoint = memorized_char_checkpoint(tmp_path / "char")
    server = RawServer(tmp_path / "server.log")
    try:
        server.initialize({"checkpoint": str(checkpoint), "completion": {"alternatives": 1}})
        server.wait_log("serving")
        server.open("file:///tmp/char.sh", MEMO_TYPED)
        items = inline_items(server, "file:///tmp/char.sh", 2, 4)
        assert items and items[0]["insertText"].startswith('ip -9 --keep --verbose "$f"'), items
    finally:
        assert server.close() == 0, server.log_tail()
