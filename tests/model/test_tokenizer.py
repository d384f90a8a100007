import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import fixture_texts

from bashlsp.model.errors import TokenizerError
from bashlsp.model.tokenizer import EOF, FIM_MIDDLE, BashTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> BashTokenizer:
    return BashTokenizer.train(fixture_texts() * 3, vocab_size=512)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_round_trip_arbitrary_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        'for f in "$@"; do echo "${f%.txt}"; done\n',
        "cat <<'EOF'\n$HOME `uname` $(( 1 << 3 ))\nEOF\n",
        "\tindented\twith\ttabs\n\t\tdeeper\n",
        "line one\r\nline two\r\n",
        "echo 'héllo wörld' # ünïcödé ✓ 日本語 😀\n",
        "x=${arr[@]:1:2}; [[ $x =~ ^[0-9]+$ ]] && echo ok || echo no\n",
        "",
        "   ",
        "\x00\x01 control \x7f",
    ],
)
def test_round_trip_shell_samples(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode_bytes(tokenizer.encode(text)) == text.encode("utf-8")


def test_special_token_spelling_in_text_stays_text(tokenizer):
    text = f"echo '{EOF}' {FIM_MIDDLE}"
    ids = tokenizer.encode(text)
    assert tokenizer.eof_id not in ids and tokenizer.fim_middle_id not in ids
    assert tokenizer.decode(ids) == text


def test_special_ids_are_distinct_and_decode_to_nothing(tokenizer):
    specials = [
        tokenizer.eof_id,
        tokenizer.fim_prefix_id,
        tokenizer.fim_suffix_id,
        tokenizer.fim_middle_id,
        tokenizer.pad_id,
    ]
    assert len(set(specials)) == 5
    assert tokenizer.decode(specials) == ""


def test_bpe_compresses_shell(tokenizer):
    text = fixture_texts()[0]
    assert len(tokenizer.encode(text)) < len(text.encode()) / 2


def test_save_load_round_trip(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    again = BashTokenizer.from_file(path)
    assert again.vocab_size == tokenizer.vocab_size
    assert again.encode("echo $HOME") == tokenizer.encode("echo $HOME")


def test_invalid_tokenizer_file_is_a_clear_error(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json is invalid"):
        BashTokenizer.from_file(path)
    with pytest.raises(TokenizerError, match="cannot read"):
        BashTokenizer.from_file(tmp_path / "missing.json")
