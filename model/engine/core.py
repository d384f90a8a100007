"""The `Engine`: one resident model, a KV cache per document, and the decode loop.

Per request (`complete`): build the prompt (prompt.py) and the healed bytes (healing.py), bring
the document's cache to the prompt reusing the longest common token prefix (only the rest is
pre-filled, in chunks, polling the stop flag), then decode: `Decoder.pick` chooses each row's
token, `Decoder.take` applies the stop rules (stops.py). `num_samples` rows decode in one batch:
sampled, or at temperature 0 each row starts with one of the likeliest next tokens and goes on
greedily. Greedy single-stream requests can draft tokens by prompt lookup (speculation.py) and
verify them in one forward. Decoding continues in the document's own cache, so after the user
accepts a suggestion its tokens are already cached too.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from ..checkpoint import LoadedModel
from ..errors import Cancelled
from ..forward import Forward
from .decode import Decoder, Row, log_softmax
from .healing import token_table
from .prompt import DocumentState, PromptBuilder, common_prefix_length
from .query import MODES, Completion, CompletionQuery, CompletionStats
from .speculation import DRAFT_MISSES, DRAFT_TOKENS
from .stops import (
    ALTERNATIVE_PROB,
    LINE_CONFIDENCE,
    LINE_GUESSES,
    LINE_MAX_TOKENS,
    LINE_ROWS,
    LINE_START_PROB,
    MIN_TOKEN_PROB,
    StopRules,
)

# CPU threads for BLAS (numpy) or torch. Decoding is a chain of small ops: on a shared 2-core
# machine a second thread made a decode step several times slower under load.
DEFAULT_THREADS = 1
CACHE_START = 256  # positions a new document's KV cache starts with; it doubles as needed
CACHED_DOCUMENTS = 4  # per-document KV caches kept (least recently used dropped)
PREFILL_CHUNK = 128  # tokens pre-filled per forward; the stop flag is polled between chunks (64 cost ~20% more)
BACKGROUND_CHUNK = 32  # the same for `prefill` ahead of time: a request arriving meanwhile waits for one chunk at most


def serving_forward(loaded: LoadedModel) -> Forward:
    """The forward pass that serves `loaded`: NumpyGPT as loaded, or a torch GPT through the
    fast path (fast_gpt.FastForward re-lays out the model's weight matrices in place: same
    values, stored transposed; do not train or save that model afterwards)."""
    if loaded.backend == "torch" and loaded.config.arch == "dense":
        from ..fast_gpt import FastForward  # imports torch: GPU serving, or the torch path on a CPU

        return FastForward(loaded.model.eval())
    return loaded.model  # NumpyGPT, or another arch's torch model (architectures.py), which steps itself


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        max_context: int | None = None,
        num_threads: int | None = None,
        speculate: bool | None = None,
        min_token_prob: float = MIN_TOKEN_PROB,
        seed: int | None = None,
        line_confidence: float = LINE_CONFIDENCE,
        line_guesses: int = LINE_GUESSES,
        line_rows: int = LINE_ROWS,
        line_start_prob: float = LINE_START_PROB,
        alternative_prob: float = ALTERNATIVE_PROB,
    ) -> None:
        """Serve `loaded` (either backend: see LoadedModel and serving_forward).

        max_context: the longest prompt + completion (default: the model's block_size).
        num_threads: CPU threads of BLAS (numpy backend) or torch (default: DEFAULT_THREADS on a
        CPU; this is process-wide, which is what a server process that exists to run this wants).
        speculate: draft tokens by prompt lookup and verify them in one forward (greedy, one
        sample); the suggestions are the greedy ones either way. Default: on for GPUs, off on a
        CPU, where verifying a few tokens cost about two steps and typing latency did not improve.
        min_token_prob: line and inline suggestions end before a less likely token (0: never; at a
        line start line_start_prob is the threshold).
        seed: of the random generator that samples (temperature > 0); None: fresh entropy.
        line_confidence: at a line start, the first line is offered whole when its mean token
        probability reaches this (stops.LINE_CONFIDENCE; 0: it ends at its first guess); line_guesses:
        with more guesses than this it ends at its first guess at once (stops.LINE_GUESSES);
        line_rows: greedy ghost text at a line start decodes this many rows and offers the likeliest
        text (stops.LINE_ROWS; 1: plain greedy); line_start_prob: the guess threshold of a line or
        inline suggestion begun at a line start (stops.LINE_START_PROB), min_token_prob's elsewhere;
        alternative_prob: the bar of a greedy alternative's first, r-th likeliest token
        (stops.ALTERNATIVE_PROB)."""
        self._lock = threading.Lock()
        self.min_token_prob = min_token_prob
        self.line_confidence = line_confidence
        self.line_guesses = line_guesses
        self.line_rows = max(1, line_rows)
        self.line_start_prob = line_start_prob
        self.alternative_prob = alternative_prob
        self.max_context = max_context
        self.speculate = str(loaded.device) != "cpu" if speculate is None else speculate
        self.num_threads = num_threads
        self.threads: int | None = None
        self.backend: str | None = None
        self.rng = np.random.default_rng(seed)
        self._load(loaded)

    @staticmethod
    def prepare(loaded: LoadedModel) -> None:
        """Build what serving `loaded` needs apart from the engine's own state (the token table),
        on the caller's thread: the server's loader calls this so that `swap` on the worker is quick."""
        token_table(loaded.tokenizer)

    def _load(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        block = loaded.config.block_size
        self.context = min(block, self.max_context) if self.max_context else block
        self.table = token_table(loaded.tokenizer)
        self.forward: Forward = serving_forward(loaded)
        self.prompts = PromptBuilder(self.tokenizer, self.table, self.context)
        self.decoder = Decoder(
            self.tokenizer, self.table, self.line_confidence, self.line_guesses, self.line_start_prob
        )
        if loaded.backend != self.backend:  # (a swap keeps the backend: the device setting is the same)
            self.backend = loaded.backend
            self.threads = self.num_threads or (DEFAULT_THREADS if str(loaded.device) == "cpu" else None)
            if self.threads:
                self.forward.set_num_threads(self.threads)
        self._docs: OrderedDict[str, DocumentState] = OrderedDict()

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
            "params": self.forward.num_params(),
            "device": str(self.device),
            "context": self.context,
            "backend": self.loaded.backend,
            "threads": self.threads,
            "speculate": self.speculate,
            "cachedDocuments": len(self._docs),
        }

    def forget(self, uri: str) -> None:
        """Drop the document's cache (the editor closed it). Only the worker thread calls this."""
        self._docs.pop(uri, None)

    @contextmanager
    def exclusive(self) -> Iterator[Forward]:
        """The forward pass, held for the caller alone (no request runs meanwhile) in its inference
        mode: for benchmarks that time the model's steps directly."""
        with self._lock, self.forward.inference_mode():
            yield self.forward

    def warm_up(self) -> None:
        """Run the whole request path once (cold prefill, cached prefill, decode, drafts,
        samples) on a scratch document, so one-time kernel setup is not paid by a user."""
        uri = "\0warm-up"
        text = '#!/bin/sh\nfor f in *; do\n  echo "$f"\ndone\nfor f in *; do\n  ech'
        with self._lock, self.forward.inference_mode():
            for prefix, samples in ((text[:-8], 1), (text, 1), (text, 2)):
                query = CompletionQuery(uri, prefix, "\nexit 0\n", "inline", max_tokens=4, num_samples=samples)
                self._complete(query, lambda: False)
            self._docs.pop(uri, None)

    def prefill(self, query: CompletionQuery, should_stop: Callable[[], bool] = lambda: False) -> CompletionStats:
        """Fill the document's cache with the prompt `query` would have, without decoding, so that
        the request that follows pre-fills only what changed since (the server calls this when a
        document opens and when the editor is idle after a change). Raises Cancelled once
        should_stop() is true, polled between chunks of BACKGROUND_CHUNK tokens."""
        with self._lock, self.forward.inference_mode():
            stats = CompletionStats()
            doc = self._document(query.uri)
            budget = self._budget(query, StopRules.for_query(query))
            prompt, _ = self.prompts.build(doc, query, budget)
            prompt = prompt or [self.tokenizer.eof_id]
            self._reserve(doc, len(prompt) + budget)
            started = time.perf_counter()
            self._prefill(doc, prompt, should_stop, stats, BACKGROUND_CHUNK)
            stats.prefill_s = time.perf_counter() - started
            return stats

    def score(
        self,
        query: CompletionQuery,
        continuations: Sequence[str],
        should_stop: Callable[[], bool] = lambda: False,
        max_tokens: int | None = None,
    ) -> list[list[float]]:
        """The model's log-probability of each token of each continuation of `query`'s prompt
        (the text to insert at the cursor; with token healing, the healed bytes come first, as a
        suggestion would spell them), of its first `max_tokens` tokens at most: the model as
        judge of text it did not write (a copied line, server/completion.py). The prompt is
        `complete`'s, so the document's cache serves both; each continuation costs one forward
        of its tokens, and the cache is left holding the prompt. Raises Cancelled once
        should_stop() is true (polled between continuations)."""
        with self._lock, self.forward.inference_mode():
            doc = self._document(query.uri)
            budget = self._budget(query, StopRules.for_query(query))
            prompt, healed = self.prompts.build(doc, query, budget)
            prompt = prompt or [self.tokenizer.eof_id]
            start = healed.decode("utf-8", errors="replace")
            encoded = [self.tokenizer.encode(start + text)[:max_tokens] for text in continuations]
            longest = max((len(ids) for ids in encoded), default=0)
            self._reserve(doc, len(prompt) + max(budget, longest))
            first = log_softmax(self._prefill(doc, prompt, should_stop, CompletionStats())[0])
            scores = []
            for ids in encoded:
                ids = ids[: doc.cache.max_len - len(prompt)]  # as far as the context holds
                if should_stop():
                    raise Cancelled("scoring cancelled")
                logprobs = [float(first[ids[0]])] if ids else []
                if len(ids) > 1:
                    rest = log_softmax(self.forward.step([ids[:-1]], doc.cache, all_positions=True)[0])
                    logprobs += rest[np.arange(len(ids) - 1), ids[1:]].tolist()
                    doc.cache.length = len(prompt)  # back to the prompt alone for the next one
                scores.append(logprobs)
            return scores

    def complete(self, query: CompletionQuery, should_stop: Callable[[], bool] = lambda: False) -> Completion:
        """Suggestions for `query` and what they cost; raises Cancelled once should_stop() is true
        (polled between pre-fill chunks and before every decode step)."""
        if query.mode not in MODES:
            raise ValueError(f"unknown completion mode {query.mode!r}; expected one of {MODES}")
        with self._lock, self.forward.inference_mode():
            return self._complete(query, should_stop)

    # -- steps ----------------------------------------------------------------------------------

    def _document(self, uri: str) -> DocumentState:
        doc = self._docs.get(uri)
        if doc is None:
            doc = DocumentState(self.forward.new_cache(1, min(self.context, CACHE_START)))
            doc.lookup.special = self.tokenizer.special_ids
            self._docs[uri] = doc
            while len(self._docs) > CACHED_DOCUMENTS:
                self._docs.popitem(last=False)
        self._docs.move_to_end(uri)
        return doc

    def _reserve(self, doc: DocumentState, length: int) -> None:
        """Grow the document's cache to hold `length` positions (it starts small: a short
        document should not hold a full-context cache, 8 MB for nano at 1024 positions)."""
        if doc.cache.max_len >= length:
            return
        doc.cache = doc.cache.resized(1, min(self.context, max(length, 2 * doc.cache.max_len)))

    def _budget(self, query: CompletionQuery, rules: StopRules) -> int:
        """Most tokens the request may generate."""
        scale = self.tokenizer.token_scale  # a char model spends ~3 tokens where BPE spends one
        line_bound = LINE_MAX_TOKENS * scale if rules.single_line else self.context
        return max(1, min(query.max_tokens * scale, self.context // 2, line_bound))

    def _prefill(
        self,
        doc: DocumentState,
        prompt: list[int],
        should_stop: Callable[[], bool],
        stats: CompletionStats,
        chunk_size: int = PREFILL_CHUNK,
    ) -> np.ndarray:
        """Bring the document's cache to `prompt`, reusing the longest common prefix."""
        keep = min(common_prefix_length(doc.ids, prompt), len(prompt) - 1)  # >= 1 new token for logits
        del doc.ids[keep:]
        doc.lookup.truncated(keep)
        doc.cache.length = keep
        stats.prompt, stats.reused, stats.prefilled = len(prompt), keep, len(prompt) - keep
        logits = None
        while len(doc.ids) < len(prompt):
            if should_stop():
                raise Cancelled("completion cancelled")
            chunk = prompt[len(doc.ids) : len(doc.ids) + chunk_size]
            logits = self.forward.step([chunk], doc.cache)
            doc.ids.extend(chunk)
        return logits

    def _complete(self, query: CompletionQuery, should_stop: Callable[[], bool]) -> Completion:
        tok = self.tokenizer
        stats = CompletionStats()
        rules = StopRules.for_query(query)
        budget = self._budget(query, rules)
        doc = self._document(query.uri)
        prompt, healed = self.prompts.build(doc, query, budget)
        prompt = prompt or [tok.eof_id]
        self._reserve(doc, len(prompt) + budget)
        started = time.perf_counter()
        logits = self._prefill(doc, prompt, should_stop, stats)
        prefilled_at = time.perf_counter()

        n = max(1, query.num_samples)
        # Ghost text at a line start: the line_rows likeliest first tokens, each continued
        # greedily, the likeliest whole text offered first (stops.LINE_ROWS).
        likeliest_text = n == 1 and query.mode == "inline" and query.temperature <= 0 and rules.at_line_start
        n = self.line_rows if likeliest_text else n
        # Greedy alternatives: the rows stay identical until the healed bytes are spelled, then
        # each takes one of the n likeliest next tokens and goes on greedily (distinct, no sampling).
        branch_due = n > 1 and query.temperature <= 0
        if n == 1:
            cache = doc.cache  # decode in place: generated tokens stay cached for the next request
        else:
            cache = doc.cache.resized(n, len(prompt) + budget)  # the prompt's positions (all of doc.cache)
            logits = np.broadcast_to(logits, (n, logits.shape[-1]))
        budget = min(budget, cache.max_len - cache.length)
        code_first = query.mode == "generate" or (query.mode == "text" and query.code_first)
        rows = [Row(pending=healed, code_due=code_first) for _ in range(n)]
        stop_at_guess = query.mode in ("line", "inline") and self.min_token_prob > 0  # sampled alternatives too
        min_logprob = math.log(self.min_token_prob) if stop_at_guess else None
        # A greedy alternative's first token (rows after the first, at the branch) has its own bar.
        branch_logprob = None if min_logprob is None else min(min_logprob, math.log(self.alternative_prob or 1e-30))
        # Greedy single stream: draft tokens by prompt lookup and verify them in one forward.
        lookup = doc.lookup if n == 1 and query.temperature <= 0 and self.speculate else None
        decoder = self.decoder

        generated = 0
        # A verification of T tokens costs more than one step (about 2x for T = 4 on 2 CPU cores),
        # so drafts grow while they are accepted and stop after repeated misses.
        draft_length, misses = 3, 0
        while True:
            if should_stop():
                raise Cancelled("completion cancelled")
            branch = branch_due and not any(row.pending for row in rows)
            next_ids, logprobs = decoder.pick(logits, rows, query, self.rng, branch)
            branch_due = branch_due and not branch
            chosen = next_ids.tolist()
            for r, (row, token, logprob) in enumerate(zip(rows, chosen, logprobs.tolist())):
                decoder.take(row, token, logprob, rules, healed, branch_logprob if branch and r else min_logprob)
            generated += 1
            if all(row.done for row in rows) or generated >= budget:
                break
            draft: list[int] = []
            if lookup is not None and not rows[0].pending and not rows[0].code_due and misses < DRAFT_MISSES:
                draft = lookup.propose(chosen[0], min(draft_length, budget - generated))
            if not draft:
                logits = self.forward.step(next_ids[:, None], cache)
                if cache is doc.cache:
                    doc.ids.append(chosen[0])
                continue
            # Feed the chosen token and the draft; keep the draft up to the first token the
            # model would not have picked itself (so the result is what plain greedy gives).
            fed = [chosen[0], *draft]
            start = cache.length
            all_logits = self.forward.step([fed], cache, all_positions=True)[0]  # (T, V)
            predicted = all_logits[:-1].argmax(axis=-1).tolist()
            accepted = 0
            while accepted < len(draft) and predicted[accepted] == draft[accepted]:
                accepted += 1
            if accepted:
                rows_logprobs = log_softmax(all_logits[:accepted])
                draft_logprobs = rows_logprobs[np.arange(accepted), draft[:accepted]].tolist()
                for token, logprob in zip(draft[:accepted], draft_logprobs):
                    decoder.take(rows[0], token, logprob, rules, healed, min_logprob)
                    generated += 1
                    if rows[0].done:
                        break
            if accepted == len(draft):
                draft_length, misses = min(DRAFT_TOKENS, draft_length + 2), 0
            elif accepted == 0:
                draft_length, misses = 3, misses + 1
            stats.drafted += len(draft)
            stats.accepted += accepted
            cache.length = start + 1 + accepted  # drop the rejected tail
            doc.ids.extend(fed[: 1 + accepted])
            if rows[0].done or generated >= budget:
                break
            logits = all_logits[accepted][None]
        for row in rows:
            row.truncated = row.truncated or not row.done
        stats.decoded = generated  # steps: each decodes one token in every row
        stats.prefill_s = prefilled_at - started
        stats.decode_s = time.perf_counter() - prefilled_at
        return Completion(decoder.suggestions(rows, healed, rules, query.mode, by_total=likeliest_text), stats)
