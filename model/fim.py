"""The fill-in-the-middle format: the one place the trainer and the server agree on it.

We use the SPM ordering of Bavarian et al. 2022 ("Efficient Training of Language Models to
Fill in the Middle", section on SPM), as StarCoder writes it:

    <|fim_prefix|> <|fim_suffix|> SUFFIX <|fim_middle|> PREFIX MIDDLE <|eof|>

The suffix comes first and the prefix runs straight into the middle. Why this order and not
PSM (`<|fim_prefix|> PREFIX <|fim_suffix|> SUFFIX <|fim_middle|> MIDDLE`): while the user
types, the text after the cursor stays the same and only the end of the prefix changes. In
SPM everything up to the cursor is a stable token prefix, so the server's KV cache keeps the
whole prompt and pre-fills only the few new tokens of each keystroke. In PSM the suffix sits
after the prefix, so every keystroke invalidates the cached suffix and `<|fim_middle|>`, and
the server must pre-fill the whole suffix again: typing a line into the middle of a script,
SPM pre-fills ~2 tokens per keystroke and PSM would pre-fill ~110 (~45 ms on nano, 2 busy CPU
cores; `python -m bashlsp.bench.engine` prints both). A second gain: the middle
continues the prefix exactly as in plain left-to-right text, so token healing at the cursor
works the same way with or without a suffix.

Training: split one document at two character positions into prefix / middle / suffix,
tokenize the three pieces separately (the server also tokenizes prefix and suffix
separately), and train on `fim_training_ids(...)` (loss on every position, or at least on the
middle and the final <|eof|>). Documents not turned into FIM examples stay plain text.
"""

from __future__ import annotations

from collections.abc import Sequence

from .tokenizer import BashTokenizer


def fim_prompt_ids(tok: BashTokenizer, prefix_ids: Sequence[int], suffix_ids: Sequence[int]) -> list[int]:
    """The prompt whose continuation is the middle (SPM order, see the module docstring)."""
    return [tok.fim_prefix_id, tok.fim_suffix_id, *suffix_ids, tok.fim_middle_id, *prefix_ids]


def fim_training_ids(
    tok: BashTokenizer, prefix_ids: Sequence[int], middle_ids: Sequence[int], suffix_ids: Sequence[int]
) -> list[int]:
    """One training example: the prompt, the middle, then <|eof|> (which ends the middle)."""
    return fim_prompt_ids(tok, prefix_ids, suffix_ids) + [*middle_ids, tok.eof_id]


def fim_prompt_overhead() -> int:
    """How many special tokens `fim_prompt_ids` adds around the prefix and suffix."""
    return 3
