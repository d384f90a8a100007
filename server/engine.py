"""The resident inference engine: prompts, a per-document KV cache, token healing, stopping.

The language server keeps one `Engine` and calls `complete()` from one worker thread. Each
call builds a prompt from the text around the cursor, reuses the cached keys/values of the
longest token prefix it shares with the previous prompt of the same document (so a keystroke
pre-fills only a few new tokens), heals the partial word at the cursor, decodes, and cuts the
result where the mode says a suggestion ends.

Prompt: plain left-to-right text when the text after the cursor is blank, otherwise
fill-in-the-middle in the SPM order of `bashlsp.model.fim` (suffix first, then the prefix
running into the middle): the suffix does not change while the user types at the cursor, so
the whole prompt up to the cursor stays a cached token prefix in both cases.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from bashlsp.model.checkpoint import LoadedModel
from bashlsp.model.errors import BashlspError
from bashlsp.model.fim import fim_prompt_ids, fim_prompt_overhead
from bashlsp.model.gpt import KVCache
from bashlsp.model.sampling import pick_next
from bashlsp.model.tokenizer import BashTokenizer

MODES = ("line", "inline", "generate")
CACHED_DOCUMENTS = 4  # per-document KV caches kept (least recently used dropped)
PREFILL_CHUNK = 128  # tokens pre-filled per forward; the stop flag is polled between chunks
MAX_HEAL_TOKENS = 3  # trailing prompt tokens token healing may back off
MAX_HEAL_BYTES = 24
SUFFIX_SHARE = 4  # the suffix gets at most 1/SUFFIX_SHARE of the prompt room


@dataclass
class CompletionQuery:
    uri: str  # document key, for the per-document prefix cache
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor ("" if none)
    mode: str  # "line" | "inline" | "generate" (see the module docstring of the stop rules below)
    max_tokens: int = 48
    temperature: float = 0.0
    top_p: float = 0.95
    num_samples: int = 1  # alternatives; with temperature 0 they are all the greedy one (deduplicated)
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
        pairs = sorted((b, i) for i, b in enumerate(self.token_bytes) if b)
        self.sorted_bytes = [b for b, _ in pairs]
        self.sorted_ids = torch.tensor([i for _, i in pairs], dtype=torch.long)
        self.id_of = {b: i for b, i in pairs}
        # Every extension of X sorts directly after X, so X is extendable iff the next entry is one.
        self.extendable = frozenset(
            pairs[k][1] for k in range(len(pairs) - 1) if pairs[k + 1][0].startswith(pairs[k][0])
        )
        self._allowed_cache: dict[bytes, torch.Tensor] = {}

    def heal(self, ids: Sequence[int]) -> tuple[list[int], bytes]:
        """Back off the trailing tokens of the last partial word. Returns (kept ids, removed bytes)."""
        removed = b""
        n = 0
        while n < MAX_HEAL_TOKENS and n < len(ids):
            token = ids[len(ids) - 1 - n]
            if token not in self.extendable:
                break
            if removed[:1].isspace():  # what we removed already starts a word: that is the boundary
                break
            data = self.token_bytes[token]
            if len(data) + len(removed) > MAX_HEAL_BYTES:
                break
            removed = data + removed
            n += 1
        return list(ids[: len(ids) - n]), removed

    def allowed(self, pending: bytes) -> torch.Tensor:
        """Ids of the tokens that can come next while `pending` bytes must still be spelled:
        tokens that start with all of it, and tokens that are a shorter prefix of it."""
        cached = self._allowed_cache.get(pending)
        if cached is not None:
            return cached
        lo = bisect.bisect_left(self.sorted_bytes, pending)
        hi = lo
        while hi < len(self.sorted_bytes) and self.sorted_bytes[hi].startswith(pending):
            hi += 1
        shorter = [self.id_of[pending[:k]] for k in range(1, len(pending)) if pending[:k] in self.id_of]
        ids = torch.cat([self.sorted_ids[lo:hi], torch.tensor(shorter, dtype=torch.long)])
        if len(self._allowed_cache) > 256:
            self._allowed_cache.clear()
        self._allowed_cache[pending] = ids
        return ids


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
    rest of the cursor line.
    """

    mode: str
    multiline: bool
    line_before: str  # the cursor line up to the cursor
    line_after: str  # the cursor line after the cursor
    next_line: str | None  # the first non-blank line below the cursor line

    @classmethod
    def for_query(cls, query: CompletionQuery) -> "StopRules":
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
        has_code = bool(cursor_line.strip())
        depth = max(0, block_delta(cursor_line))
        continued = cursor_line.rstrip().endswith("\\")
        pos = len(lines[0])  # offset of the newline that ends line i-1
        for line in lines[1:complete]:
            delta = block_delta(line)
            stop_before = (
                not line.strip()
                or (self.next_line is not None and line.strip() == self.next_line.strip())
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
            pos += len(line) + 1
        if final:
            return len(text)
        # a blank line followed by a comment may still be forming: "...\n\n#"
        return None


def _utf8_text(data: bytes) -> str:
    """Decode, leaving out an incomplete character at the end (the next token may finish it)."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the start of the last character
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
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


# -- the engine ----------------------------------------------------------------------------------


@dataclass
class _Document:
    cache: KVCache
    ids: list[int] = field(default_factory=list)  # the tokens whose keys/values are in `cache`
    window_start: int = 0  # character offset in the prefix where the prompt's prefix part starts


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
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
    data: bytearray = field(default_factory=bytearray)  # generated bytes, healed bytes included
    ends: list[int] = field(default_factory=list)  # byte offset after each generated token
    logprobs: list[float] = field(default_factory=list)
    done: bool = False
    cut: int | None = None  # character offset in the text where the suggestion ends
    truncated: bool = False


class Engine:
    def __init__(self, loaded: LoadedModel, max_context: int | None = None) -> None:
        self._lock = threading.Lock()
        self.max_context = max_context
        self._load(loaded)

    def _load(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        block = loaded.config.block_size
        self.context = min(block, self.max_context) if self.max_context else block
        self.table = TokenTable(loaded.tokenizer)
        self._docs: OrderedDict[str, _Document] = OrderedDict()

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
        }

    def warm_up(self) -> None:
        with self._lock, torch.inference_mode():
            cache = self.model.new_cache(1, 8)
            self._forward([[self.tokenizer.eof_id, self.tokenizer.eof_id]], cache)
            self._forward([[self.tokenizer.eof_id]], cache)

    def complete(self, query: CompletionQuery, should_stop: Callable[[], bool] = lambda: False) -> list[Suggestion]:
        if query.mode not in MODES:
            raise ValueError(f"unknown completion mode {query.mode!r}; expected one of {MODES}")
        with self._lock, torch.inference_mode():
            return self._complete(query, should_stop)

    # -- steps ----------------------------------------------------------------------------------

    def _forward(self, idx: list[list[int]], cache: KVCache) -> torch.Tensor:
        """Logits (B, V) of the last position, after appending idx (B, T) to the cache."""
        x = torch.tensor(idx, dtype=torch.long, device=self.device)
        return self.model(x, cache=cache, last_only=True)[:, -1]

    def _document(self, uri: str) -> _Document:
        doc = self._docs.get(uri)
        if doc is None:
            doc = _Document(self.model.new_cache(1, self.context))
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
            ids = encode(_clean(prefix[start:]))
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

    def _prompt(self, doc: _Document, query: CompletionQuery, budget: int) -> tuple[list[int], bytes]:
        """The prompt ids and the healed bytes the suggestion must start with."""
        tok = self.tokenizer
        room = self.context - budget
        suffix_ids: list[int] = []
        if query.suffix.strip():
            share = room // SUFFIX_SHARE
            suffix_ids = tok.encode(_clean(query.suffix[: share * 16]))[:share]
        overhead = fim_prompt_overhead() if suffix_ids else 1
        prefix_ids, doc.window_start = self._prefix_window(doc, query.prefix, room - overhead - len(suffix_ids))
        kept, healed = self.table.heal(prefix_ids)
        if suffix_ids:
            return fim_prompt_ids(tok, kept, suffix_ids), healed
        # A document's own start follows <|eof|> in the training stream.
        return ([tok.eof_id] if doc.window_start == 0 else []) + kept, healed

    def _prefill(self, doc: _Document, prompt: list[int], should_stop: Callable[[], bool]) -> torch.Tensor:
        """Bring the document's cache to `prompt`, reusing the longest common prefix."""
        keep = min(_common_prefix_length(doc.ids, prompt), len(prompt) - 1)  # >= 1 new token for logits
        del doc.ids[keep:]
        doc.cache.length = keep
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
        budget = max(1, min(query.max_tokens, self.context // 2))
        doc = self._document(query.uri)
        prompt, healed = self._prompt(doc, query, budget)
        rules = StopRules.for_query(query)
        logits = self._prefill(doc, prompt, should_stop)

        n = max(1, query.num_samples)
        if n == 1:
            cache = doc.cache  # decode in place: generated tokens stay cached for the next request
        else:
            cache = self.model.new_cache(n, len(prompt) + budget)
            cache.k[:, :, :, : len(prompt)] = doc.cache.k[:, :1, :, : len(prompt)]
            cache.v[:, :, :, : len(prompt)] = doc.cache.v[:, :1, :, : len(prompt)]
            cache.length = len(prompt)
            logits = logits.expand(n, -1)
        budget = min(budget, cache.max_len - cache.length)
        rows = [_Row(pending=healed) for _ in range(n)]
        stop_ids = tok.special_ids
        token_bytes = self.table.token_bytes

        for step in range(budget):
            if should_stop():
                raise Cancelled("completion cancelled")
            next_ids = self._pick(logits, rows, query)
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, next_ids[:, None]).squeeze(-1).tolist()
            chosen = next_ids.tolist()
            for row, token, logprob in zip(rows, chosen, logprobs):
                if row.done:
                    continue
                if token in stop_ids:
                    row.done = True
                    continue
                data = token_bytes[token]
                row.data += data
                row.ends.append(len(row.data))
                row.logprobs.append(logprob)
                if row.pending:
                    row.pending = row.pending[len(data) :] if row.pending.startswith(data) else b""
                    if row.pending:
                        continue
                if b"\n" in data or b"#" in data:
                    cut = rules.cut(_utf8_text(bytes(row.data[len(healed) :])), final=False)
                    if cut is not None:
                        row.done, row.cut = True, cut
            if all(row.done for row in rows) or step == budget - 1:
                for row in rows:
                    row.truncated = not row.done
                break
            logits = self._forward([[t] for t in chosen], cache)
            if cache is doc.cache:
                doc.ids.append(chosen[0])

        return self._suggestions(rows, healed, rules, query.mode)

    def _pick(self, logits: torch.Tensor, rows: list[_Row], query: CompletionQuery) -> torch.Tensor:
        if any(row.pending for row in rows):
            masked = torch.full_like(logits, float("-inf"))
            for r, row in enumerate(rows):
                if row.pending:
                    allowed = self.table.allowed(row.pending).to(logits.device)
                    masked[r, allowed] = logits[r, allowed]
                else:
                    masked[r] = logits[r]
            logits = masked
        return pick_next(logits, query.temperature, query.top_p, None)

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
