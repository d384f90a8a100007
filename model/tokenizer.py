"""Byte-level tokenizers for shell scripts (the `tokenizers` library): BPE, or one token a byte.

No normalisation and a byte-level alphabet, so any text round-trips exactly.
Special tokens mark end-of-file and fill-in-the-middle; text that happens to
contain their spelling is encoded as ordinary bytes, never as the special token.

The character tokenizer (`BashTokenizer.char()`, `bashlsp-train --pretrain --tokenizer char`)
is the same byte-level BPE with no merges: byte b is token b, the special tokens follow at
256..260. Being the same kind of `tokenizers` file, tokenizer.json loads through the one
loader, and healing, FIM and the server work on it unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .errors import TokenizerError

EOF = "<|eof|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOF, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, PAD]
TOKENIZER_KINDS = ("bpe", "char")
CHAR_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)
CHAR_TOKEN_SCALE = 3  # see BashTokenizer.token_scale
_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs, so these are lone ones


def clean_text(text: str) -> str:
    """Text the tokenizer accepts: lone UTF-16 surrogates (JSON allows them; a broken file has
    them) become U+FFFD, so the text encodes as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def _byte_decoder() -> dict[str, int]:
    # The GPT-2 byte <-> printable-character table that ByteLevel uses.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def starts_no_code(data: bytes) -> bool:
    """Past any spaces and tabs, `data` begins a line break or a comment: not code."""
    return data.lstrip(b" \t")[:1] in (b"\n", b"\r", b"#")


class BashTokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        # Spellings of special tokens inside user text stay plain text.
        self._tok.encode_special_tokens = True
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks special tokens: {', '.join(missing)}")
        self.eof_id = tokenizer.token_to_id(EOF)
        self.fim_prefix_id = tokenizer.token_to_id(FIM_PREFIX)
        self.fim_suffix_id = tokenizer.token_to_id(FIM_SUFFIX)
        self.fim_middle_id = tokenizer.token_to_id(FIM_MIDDLE)
        self.pad_id = tokenizer.token_to_id(PAD)
        self.special_ids = frozenset(tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> BashTokenizer:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def char(cls) -> BashTokenizer:
        """One token a byte (ids 0..255 are the bytes themselves), then the special tokens."""
        char_of = {b: c for c, b in _byte_decoder().items()}
        vocab = {char_of[b]: b for b in range(256)} | {t: 256 + i for i, t in enumerate(SPECIAL_TOKENS)}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        # No regex split: with no merges it cannot change the tokens, only cost time.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(SPECIAL_TOKENS)  # already in the vocab: they keep ids 256..260
        return cls(tok)

    @classmethod
    def from_str(cls, data: str) -> BashTokenizer:
        try:
            return cls(Tokenizer.from_str(data))
        except Exception as exc:  # tokenizers raises a plain Exception on bad JSON
            raise TokenizerError(f"tokenizer.json is invalid: {exc}") from exc

    @classmethod
    def from_file(cls, path: Path) -> BashTokenizer:
        try:
            data = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"cannot read tokenizer file {path}: {exc}") from exc
        return cls.from_str(data)

    def to_str(self) -> str:
        return self._tok.to_str()

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_str(), encoding="utf-8")

    # -- use ----------------------------------------------------------------------------------

    @cached_property
    def kind(self) -> str:
        """ "char" for a byte-level tokenizer without merges (every byte a token), else "bpe"."""
        return "char" if not json.loads(self.to_str())["model"].get("merges") else "bpe"

    @property
    def token_scale(self) -> int:
        """Tokens this tokenizer spends where the BPE spends one. The engine's bounds are counted in
        tokens (a line's, a request's: tuned on BPE models); they are multiplied by this so that a
        char model's cover the same text. BPE averaged 2.85 bytes a token on 300 corpus scripts."""
        return CHAR_TOKEN_SCALE if self.kind == "char" else 1

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ordinary tokens; special tokens are dropped. A token cut inside a
        multi-byte character decodes to U+FFFD; use `decode_bytes` when that matters."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        table = self.token_bytes
        return b"".join(table[i] for i in ids)

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """The exact bytes each token id stands for (b"" for special tokens)."""
        byte_of = _byte_decoder()
        table = [b""] * self.vocab_size
        for token, index in self._tok.get_vocab(with_added_tokens=True).items():
            if index in self.special_ids:
                continue
            table[index] = bytes(byte_of[ch] for ch in token)
        return table

    @cached_property
    def no_code_start_ids(self) -> list[int]:
        """Ids that cannot begin a script body written below a comment line, where nothing but
        spaces and tabs (indentation) has been written yet: special tokens (<|eof|> would end it
        empty), and tokens whose first byte past spaces and tabs is a line break (a blank line:
        the model then tends to read the comment as a file header and stop) or `#` (it then
        tends to go on writing a header, licence text included, instead of code)."""
        return sorted(i for i, data in enumerate(self.token_bytes) if i in self.special_ids or starts_no_code(data))
