"""What a completion request asks for and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("line", "inline", "generate", "text")


@dataclass
class CompletionQuery:
    uri: str  # document key, for the per-document prefix cache
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor ("" if none)
    mode: str  # "line" | "inline" | "generate" | "text" (see stops.StopRules)
    max_tokens: int = 48
    temperature: float = 0.0
    top_p: float = 0.95
    num_samples: int = 1  # alternatives: sampled at `temperature`; at 0, the likeliest next tokens continued greedily
    multiline: bool = True  # inline mode only: may the ghost text span lines
    # Chunks of other files put ahead of the prompt, (path, text), most similar first (model/context.py).
    # Keep the same tuple while the choice holds: the prompt, and so the KV cache, then stay the same.
    context: tuple[tuple[str, str], ...] = ()
    stop: tuple[str, ...] = ()  # text mode only: the continuation ends before the first of these
    code_first: bool = False  # text mode: past indentation the continuation begins code (generate mode always does)


@dataclass
class Suggestion:
    text: str  # text to insert at the cursor (token healing already undone: it starts at the cursor)
    score: float  # mean log-probability per generated token (for sort order)
    tokens: int  # generated tokens that make up `text` (healed bytes included)


@dataclass
class CompletionStats:
    """What one request cost: prompt tokens, how many came from the document's cache and how many
    were pre-filled, decode steps (each decodes one token in every row), prompt-lookup draft
    tokens proposed and accepted, and the seconds of pre-fill and decoding."""

    prompt: int = 0
    reused: int = 0
    prefilled: int = 0
    decoded: int = 0
    drafted: int = 0
    accepted: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class Completion:
    suggestions: list[Suggestion]  # best first; distinct texts
    stats: CompletionStats = field(default_factory=CompletionStats)
