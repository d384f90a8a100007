"""The prompt of a request: what of the document goes in, in which order, and its tokens.

Plain left-to-right text when nothing but blanks follows the cursor (preceded by <|eof|> when
the document's start is in the window, as in the training stream), otherwise fill-in-the-middle
in the SPM order of `bashlsp.model.fim` (after an <|eof|>, as in training): suffix first, then
the prefix running into the middle. Why SPM: while the user types at the cursor the suffix stays
the same, so the whole prompt up to the cursor is a stable token prefix, and a keystroke
pre-fills 1-2 tokens where PSM would pre-fill the suffix again (`python -m bashlsp.bench.engine`
prints both). The suffix gets at most 1/SUFFIX_SHARE of the room (truncated on the right), the
prefix the rest (truncated on the left at a line start that is kept from keystroke to keystroke,
see `PromptBuilder._prefix_window`). Re-encoding is incremental too: a keystroke re-encodes about
one line of the prefix and an unchanged suffix not at all (`DocumentState` keeps the last encodings).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..context import CONTEXT_SHARE, context_ids
from ..fim import fim_prompt_ids, fim_prompt_overhead
from ..tokenizer import BashTokenizer, clean_text
from .healing import TokenTable
from .query import CompletionQuery
from .speculation import PromptLookup

GENERATION_RESERVE = 128  # positions kept free for the completion, whatever its budget (see PromptBuilder.build)
SUFFIX_SHARE = 4  # the suffix gets at most 1/SUFFIX_SHARE of the prompt room


@dataclass
class DocumentState:
    """What the engine keeps of one document between requests."""

    cache: object  # the model's KV cache (forward.KVCache)
    ids: list[int] = field(default_factory=list)  # the tokens whose keys/values are in `cache`
    window_start: int = 0  # character offset in the prefix where the prompt's prefix part starts
    # The last encodings, so a keystroke re-encodes only the end of the prefix (see PromptBuilder)
    # and an unchanged suffix not at all.
    prefix_text: str = ""
    prefix_ids: list[int] = field(default_factory=list)
    prefix_ends: list[int] = field(default_factory=list)  # byte offset after each of prefix_ids
    suffix_text: str = ""
    suffix_ids: list[int] = field(default_factory=list)
    context: tuple = ()  # the query's context chunks and their ids (see PromptBuilder._context_ids)
    context_ids: list[int] = field(default_factory=list)
    lookup: PromptLookup | None = None  # drafts from `ids`

    def __post_init__(self) -> None:
        self.lookup = PromptLookup(self.ids, frozenset())


def safe_split(text: str, limit: int) -> int:
    """The last position <= limit where encoding text[:p] and text[p:] apart gives the same
    tokens as encoding text whole: a line start after a newline that ends a non-blank line and
    before a non-blank character. The byte-level pre-tokenizer splits there (a lone "\n" pre-token
    between two words) and BPE never merges across pre-tokens. 0 if there is none."""
    p = text.rfind("\n", 0, limit)
    while p > 0:
        start = p + 1
        if start < len(text) and not text[start].isspace() and not text[p - 1].isspace():
            return start
        p = text.rfind("\n", 0, p)
    return 0


def common_prefix_length(a: Sequence, b: Sequence) -> int:
    """Length of the common prefix of two token lists or two strings (binary search on slices)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class PromptBuilder:
    """Prompts for one model: its tokenizer, token table and context length."""

    def __init__(self, tokenizer: BashTokenizer, table: TokenTable, context: int) -> None:
        self.tokenizer = tokenizer
        self.table = table
        self.context = context

    def _prefix_window(self, doc: DocumentState, prefix: str, room: int) -> tuple[list[int], int]:
        """Token ids of the end of `prefix` that fit in `room` tokens, and where they start.

        The start is kept from request to request while it fits, so the prompt's first tokens
        (and the cache) stay the same as the user types; when it no longer fits we cut at a
        line start leaving a quarter of the room free, so that happens rarely."""
        encode = self.tokenizer.encode
        max_chars = room * 16
        start = doc.window_start
        if start <= len(prefix) and len(prefix) - start <= 2 * max_chars:
            ids = self._encode_prefix(doc, clean_text(prefix[start:]))
            if len(ids) <= room:
                return ids, start
        tail_start = max(0, len(prefix) - max_chars)
        tail = clean_text(prefix[tail_start:])
        ids = encode(tail)
        if len(ids) <= room:
            return ids, tail_start
        drop = len(ids) - room * 3 // 4
        dropped_bytes = sum(len(self.table.token_bytes[i]) for i in ids[:drop])
        char_cut = len(tail.encode("utf-8")[:dropped_bytes].decode("utf-8", errors="ignore"))
        newline = tail.find("\n", char_cut)
        start = tail_start + (newline + 1 if newline >= 0 else char_cut)
        ids = encode(clean_text(prefix[start:]))[-room:]
        return ids, start

    def _encode_prefix(self, doc: DocumentState, text: str) -> list[int]:
        """encode(text), re-using the tokens of the previous text up to the last safe split
        point the two share (see safe_split): a keystroke re-encodes about one line."""
        split = safe_split(text, common_prefix_length(doc.prefix_text, text))
        keep = 0
        if split:
            split_byte = len(text[:split].encode("utf-8"))
            keep = bisect.bisect_right(doc.prefix_ends, split_byte)
            if not keep or doc.prefix_ends[keep - 1] != split_byte:
                keep, split = 0, 0  # no token ends there (cannot happen with a byte-level BPE); start over
        ids = doc.prefix_ids[:keep] + self.tokenizer.encode(text[split:])
        ends = doc.prefix_ends[:keep]
        offset = ends[-1] if ends else 0
        for token in ids[keep:]:
            offset += len(self.table.token_bytes[token])
            ends.append(offset)
        doc.prefix_text, doc.prefix_ids, doc.prefix_ends = text, ids, ends
        return list(ids)

    def _encode_suffix(self, doc: DocumentState, text: str) -> list[int]:
        if text != doc.suffix_text:  # typing at the cursor leaves the suffix as it was
            doc.suffix_text, doc.suffix_ids = text, self.tokenizer.encode(text)
        return doc.suffix_ids

    def _context_ids(self, doc: DocumentState, chunks: tuple, room: int) -> list[int]:
        """The ids of the context chunks (model/context.py), encoded once per choice."""
        if chunks != doc.context:
            doc.context, doc.context_ids = chunks, context_ids(self.tokenizer, chunks, room // CONTEXT_SHARE)
        return doc.context_ids

    def build(self, doc: DocumentState, query: CompletionQuery, budget: int) -> tuple[list[int], bytes]:
        """The prompt ids and the healed bytes the suggestion must start with."""
        tok = self.tokenizer
        # The room must not depend on the request's budget: an editor asks for line and inline
        # completions at the same cursor, and both must see the same prompt to share the cache.
        room = self.context - max(budget, min(self.context // 4, GENERATION_RESERVE))
        # Chunks of other files come first (after the <|eof|> that starts every prompt with them),
        # in the repo-level format the model is trained on: model/context.py.
        context = self._context_ids(doc, query.context, room) if query.context else []
        room -= len(context)
        suffix_ids: list[int] = []
        if query.suffix and not query.suffix.isspace():  # (isspace stops at the first character that is not)
            share = room // SUFFIX_SHARE
            suffix_ids = self._encode_suffix(doc, clean_text(query.suffix[: share * 8]))[:share]
        overhead = 1 + fim_prompt_overhead() if suffix_ids else 1
        prefix_ids, doc.window_start = self._prefix_window(doc, query.prefix, room - overhead - len(suffix_ids))
        kept, healed = self.table.heal(prefix_ids)
        # In the training stream every document, plain or fill-in-the-middle example, follows
        # the <|eof|> of the one before it (training/loop.py).
        if suffix_ids:
            return [tok.eof_id, *context, *fim_prompt_ids(tok, kept, suffix_ids)], healed
        return ([tok.eof_id] if doc.window_start == 0 or context else []) + context + kept, healed
