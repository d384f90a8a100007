"""The inference engine: prompts, a per-document KV cache, token healing, stop rules, decoding.

The one decoder of bashlsp: the language server, `bashlsp generate` (the free "text" mode) and
`bashlsp eval` all complete through `Engine.complete`. One module per concern:

- query.py        `CompletionQuery` in; `Completion` (suggestions and `CompletionStats`) out
- prompt.py       the prompt: plain or fill-in-the-middle (SPM), windows that keep their start
                  from keystroke to keystroke, incremental encoding
- healing.py      token healing: the partial word at the cursor is backed off and re-spelled
- stops.py        where a suggestion ends: line, inline block, generated script; never repeat the
                  text after the cursor; end before a token under MIN_TOKEN_PROB
- decode.py       token choice (greedy, top-k + nucleus sampling, greedy alternatives) and rows
- speculation.py  prompt-lookup drafts, verified in one forward
- core.py         the `Engine`: the document caches, pre-fill, the decode loop

The model runs through `forward.Forward`: on a CPU `NumpyGPT` (no torch in the process), on a
GPU `fast_gpt.FastForward`. Logits come back as numpy arrays either way and every choice of
token is made in numpy. The server calls `complete` from one worker thread; an internal lock
makes `complete`, `swap` and `warm_up` safe from any thread anyway.
"""

from .core import DEFAULT_THREADS, Engine, serving_forward
from .healing import TokenTable, token_table
from .query import MODES, Completion, CompletionQuery, CompletionStats, Suggestion
from .stops import LINE_MAX_TOKENS, MIN_TOKEN_PROB, StopRules, block_delta

__all__ = [
    "DEFAULT_THREADS",
    "LINE_MAX_TOKENS",
    "MIN_TOKEN_PROB",
    "MODES",
    "Completion",
    "CompletionQuery",
    "CompletionStats",
    "Engine",
    "StopRules",
    "Suggestion",
    "TokenTable",
    "block_delta",
    "serving_forward",
    "token_table",
]
