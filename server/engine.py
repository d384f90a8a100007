"""The resident inference engine: prompts, a per-document KV cache, token healing, stopping.

The language server keeps one `Engine` and calls `complete()` from one worker thread (an
internal lock makes `complete`, `swap` and `warm_up` safe from any thread anyway). Per request:

1. Prompt. Plain left-to-right text when nothing but blanks follows the cursor (preceded by
   <|eof|> when the document's start is in the window, as in the training stream), otherwise
   fill-in-the-middle in the SPM order of `bashlsp.model.fim` (after an <|eof|>, as in
   training): suffix first, then the prefix running into the middle. Why SPM: while the user types at the cursor the suffix stays the
   same, so the whole prompt up to the cursor is a stable token prefix. Measured typing a line
   into the middle of a script (`--bench`): SPM pre-fills 2.1 tokens per keystroke, PSM would
   pre-fill ~110 (the suffix again each time). The suffix gets at most a quarter of the room
   (truncated on the right), the prefix the rest (truncated on the left at a line start that
   is kept from keystroke to keystroke, see `_prefix_window`); room = context - max_tokens.
2. Cache. Each document (LRU of CACHED_DOCUMENTS) keeps a KV cache and the token ids in it;
   the longest common token prefix with the new prompt is kept, only the rest is pre-filled
   (in chunks, polling the stop flag). Decoding continues in the same cache, so after the
   user accepts a suggestion its tokens are already cached too. Re-encoding is incremental
   as well (only the end of the prefix; an unchanged suffix not at all).
3. Token healing. Trailing prompt tokens of the partial word at the cursor are backed off and
   the first generated tokens must spell them again (`TokenTable`), so `ech|` is continued as
   the model would tokenize `echo`; the returned text starts at the cursor.
4. Decoding through the model's forward with a KV cache: on a CPU `NumpyGPT` (numpy, no torch
   in the process: see model/numpy_gpt.py), on a GPU `engine_fast.FastForward` (torch; same
   math as GPT.forward, fewer ops). Logits come back as numpy arrays either way and every
   choice of token is made in numpy. Greedy or sampled, with the stop flag polled before every step. `num_samples` rows decode in one
   batch: sampled, or at temperature 0 each row starts with one of the likeliest next tokens
   and goes on greedily. Below a comment (generate) the first bytes must begin code.
   Greedy single-stream requests can draft tokens by prompt lookup and verify them in one
   forward (`PromptLookup`); that is on by default only off-CPU (see Engine).
5. Stopping (`StopRules`): line / inline block / generate rules, <|eof|>, never repeating
   the text that already follows the cursor, and (line, inline) before the first token under
   MIN_TOKEN_PROB.

CPU threads: 1 by default (DEFAULT_THREADS), for BLAS (numpy) or torch. Decoding is a chain of
small ops; on the shared 2-core machine a second thread made a decode step several times slower
under load (53 ms vs 9 ms per step measured with torch and other jobs running).
"""

from __future__ import annotations

import bisect
import contextlib
import math
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..model.checkpoint import LoadedModel
from ..model.errors import BashlspError
from ..model.fim import fim_prompt_ids, fim_prompt_overhead
from ..model.tokenizer import BashTokenizer, starts_no_code

MODES = ("line", "inline", "generate")
DEFAULT_THREADS = 1  # see the module docstring
CACHE_START = 256  # positions a new document's KV cache starts with; it doubles as needed
CACHED_DOCUMENTS = 4  # per-document KV caches kept (least recently used dropped)
PREFILL_CHUNK = 128  # tokens pre-filled per forward; the stop flag is polled between chunks (64 cost ~20% more in all)
MAX_HEAL_TOKENS = 3  # trailing prompt tokens token healing may back off
MAX_HEAL_BYTES = 24
DRAFT_TOKENS = 7  # most tokens a prompt-lookup draft proposes for one verification
DRAFT_MISSES = 2  # fully rejected drafts after which a request stops drafting
GENERATION_RESERVE = 128  # positions kept free for the completion, whatever its budget (see _prompt)
LINE_MAX_TOKENS = (
    20  # bounds a rest-of-line suggestion; 32 measured the same keystroke savings and exact match (16 held-out scripts)
)
SUFFIX_SHARE = 4  # the suffix gets at most 1/SUFFIX_SHARE of the prompt room
# A line or inline suggestion ends before the first token the model gives less than this
# probability: what follows a guess is rarely right, and not decoding it keeps the answer fast.
# Measured with default-nano-3 on 16 held-out scripts (`bashlsp eval --completer server
# --min-token-prob P`): P 0: keystroke savings 19.0%, next-line exact match 24.7%, p95 84 ms;
# 0.1: 22.4%, 24.1%, 41 ms; 0.2: 26.0%, 21.5%, 29 ms. Sampled alternatives stop at their first
# such pick as well (the probability is the model's, not the sampling's).
MIN_TOKEN_PROB = 0.2
TOP_K = 64  # sampling draws from the 64 likeliest tokens, then the nucleus among them (see _sample; as model/sampling.py, which imports torch)


@dataclass
class CompletionQuery:
    uri: str  # document key, for the per-document prefix cache
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor ("" if none)
    mode: str  # "line" | "inline" | "generate" (see the module docstring of the stop rules below)
    max_tokens: int = 48
    temperature: float = 0.0
    top_p: float = 0.95
    num_samples: int = 1  # alternatives: sampled at `temperature`; at 0, the likeliest next tokens continued greedily
    multiline: bool = True  # inline mode only: may the ghost text span lines


@dataclass
class Suggestion:
    text: str  # text to insert at the cursor (token healing already undone: it starts at the cursor)
    score: float  # mean log-probability per generated token (for sort order)
    tokens: int  # generated tokens that make up `text` (healed bytes included)


class Cancelled(BashlspError):
    """The caller's should_stop() turned true; the request was abandoned between two steps."""


# -- token healing -------------------------------------------------------------------------------


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


# -- where a suggestion ends ---------------------------------------------------------------------

_OPENER = re.compile(r"(?:^|[;&|\s])(?:then|do)$|\{$|^case\s.*\sin$")
_CLOSER = re.compile(r"^(?:fi|done|esac|\})(?:$|[\s;|&<>)])")
_MIDDLE = re.compile(r"^(?:elif|else)\b")


def block_delta(line: str) -> int:
    """+1 if the line opens a block (`then`, `do`, `{`, `case .. in` at its end), -1 if it
    closes one (`fi`, `done`, `esac`, `}` first), else 0. Simple on purpose: one-line
    `if ..; then ..; fi` is neutral, `else`/`elif` stay inside their `if`."""
    code = line.strip()
    if not code or code.startswith("#") or _MIDDLE.match(code):
        return 0
    return (1 if _OPENER.search(code) else 0) - (1 if _CLOSER.match(code) else 0)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _first_nonblank_line(text: str, start: int, limit: int = 4096) -> str | None:
    """The first non-blank line of text[start:], looking at no more than `limit` characters."""
    while start < len(text) and start < limit:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if text[start:end].strip():
            return text[start:end]
        start = end + 1
    return None


@dataclass
class StopRules:
    """Where a suggestion ends, from the text around the cursor.

    line     the rest of the cursor line: stop at the first newline.
    inline   single line like `line` unless multiline (and nothing but blanks follows the
             cursor on its line); then stop at the end of the block: before a blank line, a line
             indented less than the cursor line, a closer of an outer block, a new statement at
             the cursor line's level when the cursor line had code; after the closer of a block
             the suggestion opened.
    generate a script body: stop before a blank line that is followed by a comment in column 0.
    All modes: never repeat what follows the cursor: the suggestion ends before a line equal to
    the first non-blank line after the cursor line, and (single line) loses a tail equal to the
    rest of the cursor line. Multi-line: a line equal to the line before it ends the suggestion
    (a small model caught in a loop).
    """

    mode: str
    multiline: bool
    line_before: str  # the cursor line up to the cursor
    line_after: str  # the cursor line after the cursor
    next_line: str | None  # the first non-blank line below the cursor line

    @classmethod
    def for_query(cls, query: CompletionQuery) -> StopRules:
        line_before = query.prefix[query.prefix.rfind("\n") + 1 :]
        newline = query.suffix.find("\n")
        line_after = query.suffix if newline < 0 else query.suffix[:newline]
        next_line = None if newline < 0 else _first_nonblank_line(query.suffix, newline + 1)
        return cls(query.mode, query.multiline, line_before, line_after, next_line)

    @property
    def single_line(self) -> bool:
        return self.mode == "line" or (self.mode == "inline" and (not self.multiline or bool(self.line_after.strip())))

    def cut(self, text: str, final: bool, truncated: bool = False) -> int | None:
        """Where the suggestion `text` ends, or None while it may still grow. `final`: nothing
        more will come; `truncated`: it stopped at the token limit (drop a partial last line)."""
        if self.single_line:
            return self._cut_single(text, final)
        if self.mode == "generate":
            return self._cut_generate(text, final)
        return self._cut_block(text, final, truncated)

    def _cut_single(self, text: str, final: bool) -> int | None:
        end = text.find("\n")
        if end < 0:
            if not final:
                return None
            end = len(text)
        after = self.line_after.strip()
        line = text[:end].rstrip()
        if after and line.endswith(after):
            end = len(line) - len(after)
        return end

    def _cut_block(self, text: str, final: bool, truncated: bool) -> int | None:
        lines = text.split("\n")
        complete = len(lines) if final else len(lines) - 1  # the last piece may still grow
        if final and truncated and len(lines) > 1:
            complete -= 1  # a line cut by the token limit is not offered
        cursor_line = self.line_before + lines[0]
        base = _indent(cursor_line)
        has_code = bool(self.line_before.strip())  # the user started a statement on this line
        depth = max(0, block_delta(cursor_line))
        continued = cursor_line.rstrip().endswith("\\")
        pos = len(lines[0])  # offset of the newline that ends line i-1
        for i in range(1, complete):
            line = lines[i]
            delta = block_delta(line)
            stop_before = (
                not line.strip()
                or (self.next_line is not None and line.strip() == self.next_line.strip())
                or (i > 1 and line == lines[i - 1])  # a small model caught in a loop
                or _indent(line) < base
                or (delta < 0 and depth == 0)
                or (depth == 0 and has_code and not continued and _indent(line) == base)
            )
            if stop_before:
                return pos
            depth += delta
            continued = line.rstrip().endswith("\\")
            pos += 1 + len(line)
            if delta < 0 and depth == 0:
                return pos  # the closer of the block the suggestion opened ends it
        if final:
            return pos if complete < len(lines) else len(text)
        partial = lines[complete] if complete >= 1 else ""
        if partial.strip() and (
            _indent(partial) < base or (depth == 0 and has_code and not continued and _indent(partial) == base)
        ):
            return pos  # decided by the growing line's indentation alone: no need to decode the rest of it
        return None

    def _cut_generate(self, text: str, final: bool) -> int | None:
        lines = text.split("\n")
        complete = len(lines) if final else len(lines) - 1
        pos = 0  # offset of the start of line i
        for i in range(complete):
            line = lines[i]
            if line.strip() and self.next_line is not None and line.rstrip() == self.next_line.rstrip():
                return max(0, pos - 1)
            if i > 0 and line.startswith("#") and not lines[i - 1].strip():
                return max(0, pos - 1 - len(lines[i - 1]) - 1)
            if i > 0 and line.strip() and line == lines[i - 1]:  # a small model caught in a loop
                return max(0, pos - 1)
            pos += len(line) + 1
        if final:
            return len(text)
        # a blank line followed by a comment may still be forming: "...\n\n#"
        return None


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, float32."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _top_ids(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest of a 1-D array, largest first (argpartition: no full sort)."""
    k = min(k, values.shape[-1])
    ids = np.argpartition(values, -k)[-k:]
    return ids[np.argsort(values[ids], kind="stable")[::-1]]


def _utf8_text(data: bytes) -> str:
    """Decode, leaving out an incomplete character at the end (the next token may finish it)."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the start of the last character
            need = (
                1
                if byte < 0x80
                else 2
                if byte >> 5 == 0b110
                else 3
                if byte >> 4 == 0b1110
                else 4
                if byte >> 3 == 0b11110
                else 1
            )
            if back < need:
                end -= back
            break
    return data[:end].decode("utf-8", errors="replace")


def _clean(text: str) -> str:
    """Text the tokenizer accepts: lone surrogates (from a broken file) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


# -- prompt lookup drafts -------------------------------------------------------------------------


class PromptLookup:
    """Draft tokens for speculative greedy decoding by looking the last tokens up in the context
    (prompt lookup decoding): code repeats itself (names, paths, whole lines, the text after the
    cursor), so the tokens that followed the same trigram/bigram earlier are often what comes
    next. The model verifies a whole draft in one forward, so every accepted token saves a step.

    It indexes a list it does not own (a document's cached token ids) as the list grows; after
    the list is cut back, `truncated` re-indexes from there, and stale entries are caught by
    checking the n-gram again before use."""

    def __init__(self, ids: list[int], special_ids: frozenset[int]) -> None:
        self.ids = ids
        self.special = special_ids
        self.indexed = 0  # positions before this one have their n-grams indexed
        self.after3: dict[tuple[int, int, int], int] = {}
        self.after2: dict[tuple[int, int], int] = {}

    def truncated(self, length: int) -> None:
        self.indexed = min(self.indexed, length)

    def _sync(self) -> None:
        ids, after2, after3 = self.ids, self.after2, self.after3
        for end in range(max(self.indexed, 2), len(ids)):  # n-grams followed by a token
            after2[(ids[end - 2], ids[end - 1])] = end
            if end >= 3:
                after3[(ids[end - 3], ids[end - 2], ids[end - 1])] = end
        self.indexed = len(ids)

    def propose(self, next_token: int, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the last two
        context tokens + `next_token` (else the last one + `next_token`)."""
        self._sync()
        ids = self.ids
        if len(ids) < 2 or limit <= 0:
            return []
        for key in ((ids[-2], ids[-1], next_token), (ids[-1], next_token)):
            at = (self.after3 if len(key) == 3 else self.after2).get(key)
            if at is not None and at < len(ids) and tuple(ids[at - len(key) : at]) == key:
                break
        else:
            return []
        draft = ids[at : at + limit]
        for i, token in enumerate(draft):
            if token in self.special:
                return draft[:i]
        return draft


# -- the engine ----------------------------------------------------------------------------------


@dataclass
class _Document:
    cache: object  # the model's KV cache: NumpyKVCache or gpt.KVCache (same layout)
    ids: list[int] = field(default_factory=list)  # the tokens whose keys/values are in `cache`
    window_start: int = 0  # character offset in the prefix where the prompt's prefix part starts
    # The last encodings, so a keystroke re-encodes only the end of the prefix (see _encode_prefix)
    # and an unchanged suffix not at all.
    prefix_text: str = ""
    prefix_ids: list[int] = field(default_factory=list)
    prefix_ends: list[int] = field(default_factory=list)  # byte offset after each of prefix_ids
    suffix_text: str = ""
    suffix_ids: list[int] = field(default_factory=list)
    lookup: PromptLookup | None = None  # drafts from `ids`

    def __post_init__(self) -> None:
        self.lookup = PromptLookup(self.ids, frozenset())


def _safe_split(text: str, limit: int) -> int:
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


def _common_prefix_length(a: Sequence, b: Sequence) -> int:
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


@dataclass
class _Row:
    """One sample being decoded."""

    pending: bytes  # healed bytes the next tokens must still spell
    code_due: bool = False  # generate mode, nothing but spaces and tabs past the healed bytes yet: code must come next
    data: bytearray = field(default_factory=bytearray)  # generated bytes, healed bytes included
    ends: list[int] = field(default_factory=list)  # byte offset after each generated token
    logprobs: list[float] = field(default_factory=list)
    done: bool = False
    cut: int | None = None  # character offset in the text where the suggestion ends
    truncated: bool = False
    line_tokens: int = 0  # tokens since the last generated newline


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        max_context: int | None = None,
        num_threads: int | None = None,
        speculate: bool | None = None,
        min_token_prob: float = MIN_TOKEN_PROB,
    ) -> None:
        """Serve `loaded` (either backend: see LoadedModel). Note: with a torch model the fast
        path re-lays out the model's weight matrices in place (same values, stored transposed;
        see engine_fast), so do not train or save that model.

        max_context: the longest prompt + completion (default: the model's block_size).
        num_threads: CPU threads of BLAS (numpy backend) or torch (default: DEFAULT_THREADS on a
        CPU; this is process-wide, which is what a server process that exists to run this wants).
        speculate: draft tokens by prompt lookup and verify them in one forward (greedy, one
        sample); the suggestions are the greedy ones either way. Default: on for GPUs, off on a
        CPU, where verifying 4 tokens cost ~2 steps and typing latency did not improve (measured
        with a trained nano model: 15% fewer forwards, p50 55.0 ms without vs 56.1 ms with).
        min_token_prob: line and inline suggestions end before a less likely token (0: never)."""
        self._lock = threading.Lock()
        self.min_token_prob = min_token_prob
        self.max_context = max_context
        self.speculate = str(loaded.device) != "cpu" if speculate is None else speculate
        self.num_threads = num_threads
        self.threads: int | None = None
        self.backend: str | None = None
        self.rng = np.random.default_rng()
        self._load(loaded)

    @staticmethod
    def prepare(loaded: LoadedModel) -> None:
        """Build what serving `loaded` needs apart from the engine's own state (the token table),
        on the caller's thread: the server's loader calls this so that `swap` on the worker is quick."""
        token_table(loaded.tokenizer)

    def _load(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        block = loaded.config.block_size
        self.context = min(block, self.max_context) if self.max_context else block
        self.table = token_table(loaded.tokenizer)
        if loaded.backend == "torch":
            from .engine_fast import FastForward  # imports torch: GPU serving, evaluation

            self.fast = FastForward(self.model.eval())
            self._inference = self.fast.inference_mode
        else:
            self.fast = self.model  # NumpyGPT: (idx, cache, all_positions) -> numpy logits, like FastForward
            self._inference = contextlib.nullcontext
        if loaded.backend != self.backend:  # (a swap keeps the backend: the device setting is the same)
            self.backend = loaded.backend
            self.threads = self.num_threads or (DEFAULT_THREADS if str(loaded.device) == "cpu" else None)
            if self.threads and self.backend == "torch":
                self.fast.set_num_threads(self.threads)
            elif self.threads:
                from threadpoolctl import threadpool_limits

                threadpool_limits(self.threads, user_api="blas")  # process-wide, like torch.set_num_threads
        self._docs: OrderedDict[str, _Document] = OrderedDict()
        self.last_stats: dict[
            str, float
        ] = {}  # of the last request: prompt, reused, prefilled, decoded tokens; prefill_s, decode_s

    # -- public ---------------------------------------------------------------------------------

    def swap(self, loaded: LoadedModel) -> None:
        """Serve another model from the next request on; every cache is dropped."""
        with self._lock:
            self._load(loaded)

    def info(self) -> dict:
        loaded = self.loaded
        meta = loaded.meta
        return {
            "id": loaded.id,
            "path": str(loaded.path),
            "config": loaded.config.to_dict(),
            "meta": {k: meta[k] for k in ("created", "parent", "data", "metrics") if k in meta},
            "params": self.model.num_params(),
            "device": str(self.device),
            "context": self.context,
            "backend": self.loaded.backend,
            "threads": self.threads,
            "speculate": self.speculate,
        }

    def warm_up(self) -> None:
        """Run the whole request path once (cold prefill, cached prefill, decode, drafts,
        samples) on a scratch document, so one-time kernel setup is not paid by a user."""
        uri = "\0warm-up"
        text = '#!/bin/sh\nfor f in *; do\n  echo "$f"\ndone\nfor f in *; do\n  ech'
        with self._lock, self._inference():
            for prefix, samples in ((text[:-8], 1), (text, 1), (text, 2)):
                query = CompletionQuery(uri, prefix, "\nexit 0\n", "inline", max_tokens=4, num_samples=samples)
                self._complete(query, lambda: False)
            self._docs.pop(uri, None)

    def complete(self, query: CompletionQuery, should_stop: Callable[[], bool] = lambda: False) -> list[Suggestion]:
        if query.mode not in MODES:
            raise ValueError(f"unknown completion mode {query.mode!r}; expected one of {MODES}")
        with self._lock, self._inference():
            return self._complete(query, should_stop)

    # -- steps ----------------------------------------------------------------------------------

    def _forward(self, idx: list[list[int]] | np.ndarray, cache) -> np.ndarray:
        """Logits (B, V) float32 of the last position, after appending idx (B, T) to the cache."""
        return self.fast(idx, cache)

    def _document(self, uri: str) -> _Document:
        doc = self._docs.get(uri)
        if doc is None:
            doc = _Document(self.model.new_cache(1, min(self.context, CACHE_START)))
            doc.lookup.special = self.tokenizer.special_ids
            self._docs[uri] = doc
            while len(self._docs) > CACHED_DOCUMENTS:
                self._docs.popitem(last=False)
        self._docs.move_to_end(uri)
        return doc

    def _prefix_window(self, doc: _Document, prefix: str, room: int) -> tuple[list[int], int]:
        """Token ids of the end of `prefix` that fit in `room` tokens, and where they start.

        The start is kept from request to request while it fits, so the prompt's first tokens
        (and the cache) stay the same as the user types; when it no longer fits we cut at a
        line start leaving a quarter of the room free, so that happens rarely."""
        encode = self.tokenizer.encode
        max_chars = room * 16
        start = doc.window_start
        if start <= len(prefix) and len(prefix) - start <= 2 * max_chars:
            ids = self._encode_prefix(doc, _clean(prefix[start:]))
            if len(ids) <= room:
                return ids, start
        tail_start = max(0, len(prefix) - max_chars)
        tail = _clean(prefix[tail_start:])
        ids = encode(tail)
        if len(ids) <= room:
            return ids, tail_start
        drop = len(ids) - room * 3 // 4
        dropped_bytes = sum(len(self.table.token_bytes[i]) for i in ids[:drop])
        char_cut = len(tail.encode("utf-8")[:dropped_bytes].decode("utf-8", errors="ignore"))
        newline = tail.find("\n", char_cut)
        start = tail_start + (newline + 1 if newline >= 0 else char_cut)
        ids = encode(_clean(prefix[start:]))[-room:]
        return ids, start

    def _encode_prefix(self, doc: _Document, text: str) -> list[int]:
        """encode(text), re-using the tokens of the previous text up to the last safe split
        point the two share (see _safe_split): a keystroke re-encodes about one line."""
        split = _safe_split(text, _common_prefix_length(doc.prefix_text, text))
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

    def _encode_suffix(self, doc: _Document, text: str) -> list[int]:
        if text != doc.suffix_text:  # typing at the cursor leaves the suffix as it was
            doc.suffix_text, doc.suffix_ids = text, self.tokenizer.encode(text)
        return doc.suffix_ids

    def _prompt(self, doc: _Document, query: CompletionQuery, budget: int) -> tuple[list[int], bytes]:
        """The prompt ids and the healed bytes the suggestion must start with."""
        tok = self.tokenizer
        # The room must not depend on the request's budget: an editor asks for line and inline
        # completions at the same cursor, and both must see the same prompt to share the cache.
        room = self.context - max(budget, min(self.context // 4, GENERATION_RESERVE))
        suffix_ids: list[int] = []
        if query.suffix and not query.suffix.isspace():  # (isspace stops at the first character that is not)
            share = room // SUFFIX_SHARE
            suffix_ids = self._encode_suffix(doc, _clean(query.suffix[: share * 8]))[:share]
        overhead = 1 + fim_prompt_overhead() if suffix_ids else 1
        prefix_ids, doc.window_start = self._prefix_window(doc, query.prefix, room - overhead - len(suffix_ids))
        kept, healed = self.table.heal(prefix_ids)
        # In the training stream every document, plain or fill-in-the-middle example, follows
        # the <|eof|> of the one before it (training/loop.py).
        if suffix_ids:
            return [tok.eof_id, *fim_prompt_ids(tok, kept, suffix_ids)], healed
        return ([tok.eof_id] if doc.window_start == 0 else []) + kept, healed

    def _reserve(self, doc: _Document, length: int) -> None:
        """Grow the document's cache to hold `length` positions (it starts small: a short
        document should not hold a full-context cache, 8 MB for nano at 1024 positions)."""
        if doc.cache.max_len >= length:
            return
        grown = self.model.new_cache(1, min(self.context, max(length, 2 * doc.cache.max_len)))
        keep = doc.cache.length
        grown.k[:, :, :, :keep] = doc.cache.k[:, :, :, :keep]
        grown.v[:, :, :, :keep] = doc.cache.v[:, :, :, :keep]
        grown.length = keep
        doc.cache = grown

    def _prefill(self, doc: _Document, prompt: list[int], should_stop: Callable[[], bool]) -> np.ndarray:
        """Bring the document's cache to `prompt`, reusing the longest common prefix."""
        keep = min(_common_prefix_length(doc.ids, prompt), len(prompt) - 1)  # >= 1 new token for logits
        del doc.ids[keep:]
        doc.lookup.truncated(keep)
        doc.cache.length = keep
        self.last_stats = {"prompt": len(prompt), "reused": keep, "prefilled": len(prompt) - keep, "decoded": 0}
        logits = None
        while len(doc.ids) < len(prompt):
            if should_stop():
                raise Cancelled("completion cancelled")
            chunk = prompt[len(doc.ids) : len(doc.ids) + PREFILL_CHUNK]
            logits = self._forward([chunk], doc.cache)
            doc.ids.extend(chunk)
        return logits

    def _complete(self, query: CompletionQuery, should_stop: Callable[[], bool]) -> list[Suggestion]:
        tok = self.tokenizer
        rules = StopRules.for_query(query)
        budget = max(
            1, min(query.max_tokens, self.context // 2, LINE_MAX_TOKENS if rules.single_line else self.context)
        )
        doc = self._document(query.uri)
        prompt, healed = self._prompt(doc, query, budget)
        prompt = prompt or [tok.eof_id]
        self._reserve(doc, len(prompt) + budget)
        started = time.perf_counter()
        logits = self._prefill(doc, prompt, should_stop)
        prefilled_at = time.perf_counter()

        n = max(1, query.num_samples)
        # Greedy alternatives: the rows stay identical until the healed bytes are spelled, then
        # each takes one of the n likeliest next tokens and goes on greedily (distinct, no sampling).
        branch_due = n > 1 and query.temperature <= 0
        if n == 1:
            cache = doc.cache  # decode in place: generated tokens stay cached for the next request
        else:
            cache = self.model.new_cache(n, len(prompt) + budget)
            cache.k[:, :, :, : len(prompt)] = doc.cache.k[:, :1, :, : len(prompt)]
            cache.v[:, :, :, : len(prompt)] = doc.cache.v[:, :1, :, : len(prompt)]
            cache.length = len(prompt)
            logits = np.broadcast_to(logits, (n, logits.shape[-1]))
        budget = min(budget, cache.max_len - cache.length)
        rows = [_Row(pending=healed, code_due=query.mode == "generate") for _ in range(n)]
        stop_at_guess = query.mode != "generate" and self.min_token_prob > 0  # sampled alternatives too
        min_logprob = math.log(self.min_token_prob) if stop_at_guess else None
        # Greedy single stream: draft tokens by prompt lookup and verify them in one forward.
        lookup = doc.lookup if n == 1 and query.temperature <= 0 and self.speculate else None

        generated = 0
        # A verification of T tokens costs more than one step (about 2x for T = 4 on 2 CPU cores),
        # so drafts grow while they are accepted and stop after repeated misses.
        draft_length, misses = 3, 0
        while True:
            if should_stop():
                raise Cancelled("completion cancelled")
            branch = branch_due and not any(row.pending for row in rows)
            next_ids, logprobs = self._pick(logits, rows, query, branch)
            branch_due = branch_due and not branch
            chosen = next_ids.tolist()
            for row, token, logprob in zip(rows, chosen, logprobs.tolist()):
                self._take(row, token, logprob, rules, healed, min_logprob)
            generated += 1
            if all(row.done for row in rows) or generated >= budget:
                break
            draft: list[int] = []
            if lookup is not None and not rows[0].pending and not rows[0].code_due and misses < DRAFT_MISSES:
                draft = lookup.propose(chosen[0], min(draft_length, budget - generated))
            if not draft:
                logits = self._forward(next_ids[:, None], cache)
                if cache is doc.cache:
                    doc.ids.append(chosen[0])
                continue
            # Feed the chosen token and the draft; keep the draft up to the first token the
            # model would not have picked itself (so the result is what plain greedy gives).
            fed = [chosen[0], *draft]
            start = cache.length
            all_logits = self.fast([fed], cache, all_positions=True)[0]  # (T, V)
            predicted = all_logits[:-1].argmax(axis=-1).tolist()
            accepted = 0
            while accepted < len(draft) and predicted[accepted] == draft[accepted]:
                accepted += 1
            if accepted:
                rows_logprobs = _log_softmax(all_logits[:accepted])
                draft_logprobs = rows_logprobs[np.arange(accepted), draft[:accepted]].tolist()
                for token, logprob in zip(draft[:accepted], draft_logprobs):
                    self._take(rows[0], token, logprob, rules, healed, min_logprob)
                    generated += 1
                    if rows[0].done:
                        break
            if accepted == len(draft):
                draft_length, misses = min(DRAFT_TOKENS, draft_length + 2), 0
            elif accepted == 0:
                draft_length, misses = 3, misses + 1
            self.last_stats["drafted"] = self.last_stats.get("drafted", 0) + len(draft)
            self.last_stats["accepted"] = self.last_stats.get("accepted", 0) + accepted
            cache.length = start + 1 + accepted  # drop the rejected tail
            doc.ids.extend(fed[: 1 + accepted])
            if rows[0].done or generated >= budget:
                break
            logits = all_logits[accepted][None]
        for row in rows:
            row.truncated = row.truncated or not row.done
        self.last_stats["decoded"] = generated  # steps: each decodes one token in every row
        self.last_stats["prefill_s"] = prefilled_at - started
        self.last_stats["decode_s"] = time.perf_counter() - prefilled_at
        return self._suggestions(rows, healed, rules, query.mode)

    def _take(
        self, row: _Row, token: int, logprob: float, rules: StopRules, healed: bytes, min_logprob: float | None = None
    ) -> None:
        """Add one generated token to a row and decide whether the row's suggestion is complete."""
        if row.done:
            return
        if token in self.tokenizer.special_ids or logprob == float(
            "-inf"
        ):  # <|eof|> (or a token no rule allows) ends it
            row.done = True
            return
        if min_logprob is not None and logprob < min_logprob and not row.pending:
            row.done = True  # a guess: the suggestion ends before it (see MIN_TOKEN_PROB)
            return
        data = self.table.token_bytes[token]
        newline = row.data.rfind(b"\n")
        starts_line = newline >= len(healed) and not row.data[newline + 1 :].strip()  # a new line's first code may come
        row.data += data
        row.ends.append(len(row.data))
        row.code_due = row.code_due and not row.data[len(healed) :].strip(b" \t")  # indentation only so far
        row.logprobs.append(logprob)
        if row.pending:
            row.pending = row.pending[len(data) :] if row.pending.startswith(data) else b""
            if row.pending:
                return
        row.line_tokens = 0 if b"\n" in data else row.line_tokens + 1
        if row.line_tokens >= LINE_MAX_TOKENS and rules.mode != "generate":
            # A line as long as a whole line suggestion may be: the same bound in every mode.
            # The slowest ghost texts in `bench serve` were a model repeating itself for 48
            # tokens ("%M:%M:%M:..."). As at the token limit, a cut-off line after the first is
            # not offered.
            row.done = row.truncated = True
            return
        if b"\n" in data or b"#" in data or starts_line:  # the stop rules only change their answer at these
            cut = rules.cut(_utf8_text(bytes(row.data[len(healed) :])), final=False)
            if cut is not None:
                row.done, row.cut = True, cut

    def _pick(
        self, logits: np.ndarray, rows: list[_Row], query: CompletionQuery, branch: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The next token of every row (B,) and its log-probability under the model (B,). With
        `branch` (identical greedy rows) row r gets the r-th likeliest token instead."""
        logprobs = _log_softmax(logits)  # (B, V); softmax is shift-invariant, so it also serves as logits
        candidates = logprobs
        if any(row.pending for row in rows):  # token healing: spell the removed bytes first
            candidates = np.full_like(logprobs, -np.inf)
            for r, row in enumerate(rows):
                if row.pending:
                    allowed = self.table.allowed(row.pending)
                    candidates[r, allowed] = logprobs[r, allowed]
                else:
                    candidates[r] = logprobs[r]
        if any(row.code_due for row in rows):
            # A script body below a comment starts with code: a blank line, <|eof|> or another
            # comment first made the model read the comment as a file header (13 of 50 tldr
            # generations were empty, others only more comments).
            candidates = candidates.copy() if candidates is logprobs else candidates
            for r, row in enumerate(rows):
                if row.code_due:
                    candidates[r, self.table.no_code_after(row.pending)] = -np.inf
        if branch:
            next_ids = _top_ids(candidates[0], len(rows))  # a row with -inf here has no token left
            return next_ids, candidates[0, next_ids]
        if query.temperature <= 0:
            next_ids = candidates.argmax(axis=-1)  # greedy, the common case
        else:
            next_ids = self._sample(candidates, query.temperature, query.top_p)
        # candidates hold the model's log-probabilities, or -inf where no rule allows the token
        # (a row with none left gets -inf, and _take ends it)
        return next_ids, candidates[np.arange(len(rows)), next_ids]

    def _sample(self, candidates: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
        """(B,) ids drawn at `temperature` from the TOP_K likeliest candidates, then the nucleus
        (top-p) among them: the tail past them holds little probability, and sorting and
        sampling over the whole 8k vocabulary cost ~2 ms per step (measured with torch), more
        than the model's forward pass. A row with no candidate left gets its -inf best."""
        k = min(TOP_K, candidates.shape[-1])
        top_ids = np.stack([_top_ids(row, k) for row in candidates])  # (B, K), likeliest first
        top = np.take_along_axis(candidates, top_ids, axis=-1)  # (B, K)
        best = np.where(np.isfinite(top[:, :1]), top[:, :1], 0.0)
        probs = np.exp((top - best) / temperature)  # (B, K); 0 for -inf candidates
        if top_p < 1.0:
            total = probs.sum(axis=-1, keepdims=True)
            probs /= np.where(total > 0, total, 1.0)  # (0 for a row with no candidate left)
            probs *= probs.cumsum(axis=-1) - probs < top_p  # always keeps the top token
        cumulative = probs.cumsum(axis=-1)
        draw = self.rng.random((len(candidates), 1)) * cumulative[:, -1:]
        choice = np.minimum((cumulative <= draw).sum(axis=-1), k - 1)  # (B,)
        return top_ids[np.arange(len(candidates)), choice]

    def _suggestions(self, rows: list[_Row], healed: bytes, rules: StopRules, mode: str) -> list[Suggestion]:
        best: dict[str, Suggestion] = {}
        for row in rows:
            if len(row.data) < len(healed) or not row.data.startswith(healed):
                continue  # stopped before spelling the healed bytes again: nothing at the cursor
            text = _utf8_text(bytes(row.data[len(healed) :]))
            cut = row.cut if row.cut is not None else rules.cut(text, final=True, truncated=row.truncated)
            text = text[:cut]
            if mode == "generate":
                text = text.rstrip()
            if not text.strip():
                continue
            end_byte = len(healed) + len(text.encode("utf-8"))
            tokens = bisect.bisect_left(row.ends, end_byte) + 1
            tokens = min(tokens, len(row.ends))
            score = sum(row.logprobs[:tokens]) / tokens
            if text not in best or best[text].score < score:
                best[text] = Suggestion(text=text, score=score, tokens=tokens)
        return sorted(best.values(), key=lambda s: s.score, reverse=True)


# -- benchmarks (used by `bashlsp bench serve` and `python -m bashlsp.server.engine --bench`) ------


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def decode_tokens_per_second(engine: Engine, tokens: int = 128, context: int = 256, samples: int = 1) -> dict:
    """Decode speed of the engine's own step (pick + forward), greedy, after `context` tokens
    of cached context. Returns tokens, context, seconds, cpu_seconds, tokens_per_second, ms_per_token."""
    context = min(context, engine.context // 2)
    tokens = max(1, min(tokens, engine.context - context - 1))
    rows = [_Row(pending=b"") for _ in range(samples)]
    greedy = CompletionQuery(uri="", prefix="", suffix="", mode="generate")
    with engine._lock, engine._inference():
        cache = engine.model.new_cache(samples, context + tokens + 1)
        prompt = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (samples, context))
        logits = engine._forward(prompt, cache)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(tokens):
            next_ids, logprobs = engine._pick(logits, rows, greedy)
            next_ids.tolist(), logprobs.tolist()
            logits = engine._forward(next_ids[:, None], cache)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "tokens": tokens,
        "context": context,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # differs from seconds when other processes take the cores
        "tokens_per_second": tokens * samples / seconds,
        "ms_per_token": 1000 * seconds / tokens,
    }


def naive_vs_engine_decode(engine: Engine, tokens: int = 64, context: int = 256, rounds: int = 5) -> dict:
    """Decode speed of plain `GPT.forward` (torch, a fresh copy of the served weights) against
    the engine's step, in alternating rounds so that both see the same machine load. Returns
    the median ms/token of each."""
    import torch

    from ..model.gpt import GPT

    served = engine.model
    naive = GPT(served.config, init_weights=False).eval()
    if engine.loaded.backend == "numpy":  # the same weights, back in GPT's (out, in) layout
        weights = {"wte.weight": served.wte, "norm.weight": served.norm}
        for i, (attn_norm, qkv, proj, mlp_norm, gate_up, down) in enumerate(served.layers):
            weights |= {
                f"blocks.{i}.attn_norm.weight": attn_norm,
                f"blocks.{i}.attn.qkv.weight": qkv.T,
                f"blocks.{i}.attn.proj.weight": proj.T,
                f"blocks.{i}.mlp_norm.weight": mlp_norm,
                f"blocks.{i}.mlp.gate_up.weight": gate_up.T,
                f"blocks.{i}.mlp.down.weight": down.T,
            }
        state = {name: torch.from_numpy(np.ascontiguousarray(w)) for name, w in weights.items()}
    else:
        state = {name: tensor.contiguous() for name, tensor in served.state_dict().items()}
    naive.load_state_dict(state)
    naive.to(engine.device if engine.loaded.backend == "torch" else "cpu")
    device = next(naive.parameters()).device
    times: dict[str, list[float]] = {"naive": [], "engine": []}
    context = min(context, engine.context - tokens - 1)
    prompt = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (1, context))
    with engine._lock, torch.inference_mode(), engine._inference():
        for _ in range(rounds):
            for name in times:
                if name == "naive":
                    cache = naive.new_cache(1, context + tokens + 1)

                    def forward(ids, cache=cache):
                        out = naive(torch.as_tensor(ids, device=device), cache=cache, last_only=True)
                        return out[:, -1].cpu().numpy()
                else:
                    cache = served.new_cache(1, context + tokens + 1)

                    def forward(ids, cache=cache):
                        return engine._forward(ids, cache)

                logits = forward(prompt)
                start = time.perf_counter()
                for _ in range(tokens):
                    logits = forward(logits.argmax(axis=-1)[:, None])
                times[name].append(1000 * (time.perf_counter() - start) / tokens)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def prefill_ms(engine: Engine, tokens: int, context: int = 0, repeats: int = 3) -> float:
    """Best-of-`repeats` time to pre-fill `tokens` new tokens after `context` cached ones."""
    best = float("inf")
    tokens = min(tokens, engine.context - context)
    with engine._lock, engine._inference():
        cache = engine.model.new_cache(1, context + tokens)
        ids = np.random.default_rng(0).integers(0, engine.tokenizer.vocab_size, (1, context + tokens))
        if context:
            engine._forward(ids[:, :context], cache)
        for _ in range(repeats):
            cache.length = context
            start = time.perf_counter()
            for offset in range(context, context + tokens, PREFILL_CHUNK):
                engine._forward(ids[:, offset : min(offset + PREFILL_CHUNK, context + tokens)], cache)
            best = min(best, time.perf_counter() - start)
    return 1000 * best


def _typing_queries(text: str, mid_document: bool, every: int):
    """(prefix, suffix) pairs of someone typing `text`: at the end of the document, or inserting
    its middle third into a document that already holds the rest (the suffix stays fixed)."""
    if not mid_document:
        return [(text[:cursor], "") for cursor in range(1, len(text) + 1, every)]
    start = text.rfind("\n", 0, len(text) // 3) + 1
    end = text.find("\n", 2 * len(text) // 3) + 1 or len(text)
    return [(text[:cursor], text[end:]) for cursor in range(start, end, every)]


def typing_latency(
    engine: Engine, text: str, mode: str = "line", max_tokens: int = 16, every: int = 1, mid_document: bool = False
) -> dict:
    """Type `text` one character at a time (a query every `every` characters) and time each
    `complete` call (see _typing_queries). Returns latency percentiles in ms and the mean of
    pre-filled tokens per request."""
    latencies, cpu, prefilled, counts = [], [], [], {}
    for prefix, suffix in _typing_queries(text, mid_document, every):
        q = CompletionQuery(uri="bench://typing", prefix=prefix, suffix=suffix, mode=mode, max_tokens=max_tokens)
        start, cpu_start = time.perf_counter(), time.process_time()
        engine.complete(q)
        latencies.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - cpu_start))
        prefilled.append(engine.last_stats["prefilled"])
        for key in ("decoded", "drafted", "accepted"):
            counts[key] = counts.get(key, 0) + engine.last_stats.get(key, 0)
    return {
        "requests": len(latencies),
        "mean_decoded_tokens": counts["decoded"] / len(latencies),
        "drafted": counts["drafted"],
        "accepted": counts["accepted"],
        "p50_ms": _percentile(latencies, 0.5),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "cpu_p50_ms": _percentile(cpu, 0.5),  # CPU time: what an idle core would take, roughly
        "mean_prefilled_tokens": sum(prefilled) / len(prefilled),
    }


def psm_prefill_tokens(engine: Engine, text: str, every: int = 1) -> float:
    """For comparison with the SPM order the engine uses: the mean tokens a PSM prompt
    (prefix, then suffix, then <|fim_middle|>) would pre-fill per keystroke in the mid-document
    typing of `typing_latency`, with the same cache reuse (everything after the first changed
    token is pre-filled again)."""
    tok = engine.tokenizer
    previous: list[int] = []
    counts = []
    for prefix, suffix in _typing_queries(text, True, every):
        suffix_ids = tok.encode(suffix)[: (engine.context - 48) // SUFFIX_SHARE]
        prompt = [tok.fim_prefix_id, *tok.encode(prefix), tok.fim_suffix_id, *suffix_ids, tok.fim_middle_id]
        counts.append(len(prompt) - min(_common_prefix_length(previous, prompt), len(prompt) - 1))
        previous = prompt
    return sum(counts) / len(counts)


def _random_nano_model(vocab_texts: list[str], backend: str) -> LoadedModel:
    """A randomly initialised nano model (speed does not depend on the weights) with a
    tokenizer trained to 8192 tokens on the given shell text."""
    from pathlib import Path

    import torch

    from ..model.gpt import GPT, preset_config
    from ..model.numpy_gpt import NumpyGPT

    tok = BashTokenizer.train(vocab_texts, vocab_size=8192)
    torch.manual_seed(0)
    model = GPT(preset_config("nano", tok.vocab_size)).eval()
    meta, path = {"id": "random-nano"}, Path("(random nano)")
    if backend == "numpy":
        numpy_model = NumpyGPT(model.config, {name: t.numpy() for name, t in model.state_dict().items()})
        return LoadedModel(numpy_model, tok, model.config, meta, path, "cpu")
    return LoadedModel(model, tok, model.config, meta, path, torch.device("cpu"))


def _shell_texts(limit_bytes: int = 1_500_000) -> list[str]:
    """Shell scripts found on this machine (the repository's fixtures, then /usr/bin, /etc)."""
    from pathlib import Path

    roots = [Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "scripts", Path("/usr/bin"), Path("/etc")]
    texts, total = [], 0
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            try:
                if not path.is_file() or path.stat().st_size > 200_000:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if not (path.suffix in (".sh", ".bash") or (data.startswith(b"#!") and b"sh" in data[:40].split(b"\n")[0])):
                continue
            texts.append(data.decode("utf-8", errors="replace"))
            total += len(data)
            if total > limit_bytes:
                return texts
    return texts


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m bashlsp.server.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--bench", action="store_true", help="print the engine's micro-benchmark figures")
    parser.add_argument(
        "--checkpoint", help="checkpoint dir, store id, 'current' or 'default' (else a random nano model)"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: the engine's default)")
    parser.add_argument(
        "--backend",
        choices=("numpy", "torch"),
        default="numpy",
        help="numpy: what the server runs on a CPU (default); torch: the GPU path, on the CPU",
    )
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per completion in the typing benchmark")
    parser.add_argument("--every", type=int, default=1, help="query every N typed characters")
    parser.add_argument(
        "--speculate", choices=("auto", "on", "off"), default="auto", help="prompt-lookup drafts (auto: on for GPUs)"
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if not args.bench:
        parser.print_help()
        return 0

    from ..model.checkpoint import load_checkpoint, resolve_checkpoint

    start = time.perf_counter()
    texts = _shell_texts()
    if args.checkpoint:
        loaded = load_checkpoint(resolve_checkpoint(args.checkpoint), backend=args.backend)
    else:
        loaded = _random_nano_model(texts, args.backend)
    engine = Engine(
        loaded, num_threads=args.threads or None, speculate={"auto": None, "on": True, "off": False}[args.speculate]
    )
    engine.warm_up()
    print(f"model {loaded.id}: {engine.model.num_params() / 1e6:.2f}M params, config {loaded.config.to_dict()}")
    print(
        f"backend {loaded.backend}, threads {engine.threads}, cpus {os.cpu_count()}, load ready in {time.perf_counter() - start:.2f}s"
    )

    for context in (64, min(512, engine.context // 2)):
        figures = decode_tokens_per_second(engine, tokens=128, context=context)
        print(
            f"decode (1 stream, {figures['context']} cached): {figures['tokens_per_second']:.0f} tokens/s "
            f"({figures['ms_per_token']:.2f} ms/token; cpu {1000 * figures['cpu_seconds'] / figures['tokens']:.2f} ms/token)"
        )
    figures = naive_vs_engine_decode(engine)
    print(
        f"decode, alternating rounds (256 cached): plain GPT.forward {figures['naive']:.2f} ms/token "
        f"({1000 / figures['naive']:.0f} tokens/s), engine {figures['engine']:.2f} ms/token ({1000 / figures['engine']:.0f} tokens/s)"
    )
    figures = decode_tokens_per_second(engine, tokens=64, context=256, samples=4)
    print(
        f"decode (4 streams, {figures['context']} cached): {figures['tokens_per_second']:.0f} tokens/s in all ({figures['ms_per_token']:.2f} ms/step)"
    )
    for tokens in (1, 4, 64, 256):
        print(f"prefill {tokens} tokens after 128 cached: {prefill_ms(engine, tokens, context=128):.1f} ms")
    cold = min(768, engine.context - 1)
    print(f"prefill {cold} tokens cold: {prefill_ms(engine, cold):.1f} ms")

    script = max((t for t in texts if 1200 < len(t) < 6000), key=len, default=texts[0])[:1200]
    for label, mid_document in (("end of document", False), ("mid-document, fill-in-the-middle", True)):
        figures = typing_latency(
            engine, script, max_tokens=args.max_tokens, every=args.every, mid_document=mid_document
        )
        print(
            f"typing {figures['requests']} keystrokes, line completion of {args.max_tokens} tokens, {label}: "
            f"p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms "
            f"(cpu p50 {figures['cpu_p50_ms']:.1f} ms), "
            f"{figures['mean_prefilled_tokens']:.1f} tokens pre-filled and {figures['mean_decoded_tokens']:.1f} decoded "
            f"per request; drafts: {figures['accepted']} of {figures['drafted']} tokens accepted"
        )
    psm = psm_prefill_tokens(engine, script, every=args.every)
    print(
        f"the same typing with a PSM prompt would pre-fill {psm:.1f} tokens per request "
        f"({prefill_ms(engine, max(1, round(psm)), context=128):.1f} ms each)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
