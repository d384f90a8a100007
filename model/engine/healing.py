"""Token healing: the partial word at the cursor is re-spelled by the model.

A prompt that ends inside a word ends with a token the model rarely saw there ("ech" where
training text has "echo"). The engine backs off such trailing tokens (`TokenTable.heal`) and
makes the first generated tokens spell the removed bytes again (`TokenTable.allowed`), so the
model chooses the tokenization of the whole word itself; the suggestion then starts at the
cursor. The same table says which tokens would start a blank line or a comment below a comment
(`no_code_after`: generated scripts begin with code).
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Callable, Sequence

import numpy as np

from ..tokenizer import BashTokenizer, starts_no_code

MAX_HEAL_TOKENS = 3  # trailing prompt tokens token healing may back off
MAX_HEAL_BYTES = 24


class TokenTable:
    """Byte-level views of the vocabulary for token healing.

    Token healing: a prompt that ends inside a word ends with a token the model rarely saw
    there ("ech" where training text has "echo"). We back off such trailing tokens and make
    the first generated tokens spell the removed bytes again, so the model chooses the
    tokenization of the whole word itself.
    """

    def __init__(self, tok: BashTokenizer) -> None:
        self.token_bytes = tok.token_bytes
        self.no_code_start_ids = tok.no_code_start_ids
        pairs = sorted((b, i) for i, b in enumerate(self.token_bytes) if b)
        self.sorted_bytes = [b for b, _ in pairs]
        self.sorted_ids = np.array([i for _, i in pairs], dtype=np.int64)
        self.id_of = {b: i for b, i in pairs}
        # Every extension of X sorts directly after X, so X is extendable iff the next entry is one.
        self.extendable = frozenset(
            pairs[k][1] for k in range(len(pairs) - 1) if pairs[k + 1][0].startswith(pairs[k][0])
        )
        self._id_cache: dict[tuple, np.ndarray] = {}

    def heal(self, ids: Sequence[int]) -> tuple[list[int], bytes]:
        """Back off the trailing tokens of the last partial word. Returns (kept ids, removed bytes)."""
        removed = b""
        n = 0
        while n < MAX_HEAL_TOKENS and n < len(ids):
            token = ids[len(ids) - 1 - n]
            if token not in self.extendable:
                break
            data = self.token_bytes[token]
            # Word boundaries: what we removed already starts with whitespace, or this token holds
            # a newline (the pre-tokenizer never joins a newline to the word after it).
            if removed and (removed[:1].isspace() or b"\n" in data):
                break
            if len(data) + len(removed) > MAX_HEAL_BYTES:
                break
            removed = data + removed
            n += 1
        return list(ids[: len(ids) - n]), removed

    def _starting_with(self, prefix: bytes) -> np.ndarray:
        """Ids of the tokens whose bytes start with `prefix`."""
        lo = bisect.bisect_left(self.sorted_bytes, prefix)
        # Everything that starts with `prefix` sorts before `prefix` with its last byte raised.
        stem = prefix.rstrip(b"\xff")
        upper = stem[:-1] + bytes([stem[-1] + 1]) if stem else None
        hi = bisect.bisect_left(self.sorted_bytes, upper) if upper is not None else len(self.sorted_bytes)
        return self.sorted_ids[lo:hi]

    def _cached(self, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
        ids = self._id_cache.get(key)
        if ids is None:
            if len(self._id_cache) > 256:
                self._id_cache.clear()
            ids = self._id_cache[key] = make()
        return ids

    def allowed(self, pending: bytes) -> np.ndarray:
        """Ids of the tokens that can come next while `pending` bytes must still be spelled:
        tokens that start with all of it, and tokens that are a shorter prefix of it."""

        def make() -> np.ndarray:
            shorter = [self.id_of[pending[:k]] for k in range(1, len(pending)) if pending[:k] in self.id_of]
            return np.concatenate([self._starting_with(pending), np.array(shorter, dtype=np.int64)])

        return self._cached(("allowed", pending), make)

    def no_code_after(self, pending: bytes) -> np.ndarray:
        """Ids of the tokens that spell `pending` and then, past any spaces and tabs, go on with
        a line break or a `#` (or special tokens, when nothing is pending): below a comment they
        would start a blank line or another comment instead of code (BashTokenizer.no_code_start_ids)."""

        def make() -> np.ndarray:
            if not pending:
                return np.array(self.no_code_start_ids, dtype=np.int64)
            skip = len(pending)
            ids = [i for i in self._starting_with(pending).tolist() if starts_no_code(self.token_bytes[i][skip:])]
            return np.array(ids, dtype=np.int64)

        return self._cached(("no_code", pending), make)


_TABLES: weakref.WeakKeyDictionary[BashTokenizer, TokenTable] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def token_table(tok: BashTokenizer) -> TokenTable:
    """The TokenTable of a tokenizer, built once (~50 ms for 8k tokens). The server's loader
    thread builds it for a new checkpoint (Engine.prepare), so the swap on the worker is quick."""
    with _TABLES_LOCK:
        table = _TABLES.get(tok)
        if table is None:
            table = _TABLES[tok] = TokenTable(tok)
        return table
