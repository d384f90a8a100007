"""Rest-of-line completers for the next-line and keystroke measures: the language server's
engine (`bashlsp.model.engine`, line mode, greedy, nothing after the cursor), so eval measures
the decoder editors get: its token healing, prompt windows and stop rules.

Two kinds, both run as the server would (on a CPU the numpy backend):
- "server": the engine with the server's stop-at-a-guess rule (MIN_TOKEN_PROB, or
  --min-token-prob): what an editor is offered;
- "reference": the same engine without that rule: the model's whole greedy line (up to the
  engine's per-line token bound), so the model is measured apart from the rule.
"""

from __future__ import annotations

from ...model.engine import MIN_TOKEN_PROB, CompletionQuery, Engine
from ...model.errors import BashlspError

COMPLETERS = ("reference", "server")
DEFAULT_LINE_TOKENS = 48  # most tokens asked for a rest-of-line (the engine bounds a line further)


def as_served(loaded):
    """`loaded` as the server would run it: on a CPU, the numpy backend."""
    return loaded.on_numpy() if str(loaded.device) == "cpu" else loaded


class EngineCompleter:
    """`completer(prefix, following=None) -> suggestion`: the engine's rest of the line after
    `prefix`. One document for all calls, so successive keystrokes reuse its KV cache as in an
    editor. Counts the tokens it pre-filled and the decode steps it took."""

    def __init__(
        self,
        loaded,
        max_new_tokens: int = DEFAULT_LINE_TOKENS,
        threads: int | None = None,
        min_token_prob: float = MIN_TOKEN_PROB,
    ) -> None:
        self.engine = Engine(as_served(loaded), num_threads=threads or None, min_token_prob=min_token_prob)
        self.max_new_tokens = max_new_tokens
        self.prefilled_tokens = 0
        self.decode_steps = 0

    def __call__(self, prefix: str, following: str | None = None) -> str:
        """`following` (the real text after the prefix) is not used: the engine cannot stop early
        on a suggestion that is already wrong, as an editor's cannot."""
        query = CompletionQuery(
            uri="bashlsp-eval", prefix=prefix, suffix="", mode="line", max_tokens=self.max_new_tokens, temperature=0.0
        )
        completion = self.engine.complete(query)
        self.prefilled_tokens += completion.stats.prefilled
        self.decode_steps += completion.stats.decoded
        return completion.suggestions[0].text if completion.suggestions else ""


def make_completer(
    loaded,
    kind: str,
    max_new_tokens: int = DEFAULT_LINE_TOKENS,
    threads: int | None = None,
    min_token_prob: float | None = None,
) -> EngineCompleter:
    """A rest-of-line completer of `kind` ("reference" or "server", see the module docstring);
    min_token_prob overrides the server's rule (server kind only)."""
    if kind == "reference":
        return EngineCompleter(loaded, max_new_tokens, threads, min_token_prob=0.0)
    if kind == "server":
        rule = MIN_TOKEN_PROB if min_token_prob is None else min_token_prob
        return EngineCompleter(loaded, max_new_tokens, threads, min_token_prob=rule)
    raise BashlspError(f"unknown completer {kind!r}; choose {' or '.join(COMPLETERS)}")
