"""`bashlsp eval DIR`: how good is a checkpoint on a folder of shell scripts?

Four measures (definitions in shared/DESIGN.md, "Measuring quality"), each file read fresh:

- bits per byte (bpb): the model's total negative log-likelihood of a file's bytes, in bits,
  divided by its bytes. The first token is predicted from `<|eof|>` (how files are separated in
  training), so no context is carried between files. Files longer than the model's block are
  scored in windows of `block_size` tokens that advance by `stride` (default block_size // 2);
  each window scores only the tokens the previous one did not, so every token after the first
  window is predicted from at least block_size - stride tokens of context. The end-of-file token
  is not scored: only the file's own bytes count. xz -9e on each file is printed beside it.
- next-line completion: at sampled line starts the model gets the file so far and greedily writes
  the rest of the line; exact match (equal whitespace-separated tokens) and edit similarity
  (1 - Levenshtein distance / longer length, on the stripped lines, as CodeXGLUE's line task).
- keystroke savings rate (KSR): simulate typing the start of each file; at every position the
  model suggests the rest of the line; a suggestion that is a non-empty prefix of what follows is
  accepted for one keystroke, otherwise one character is typed. KSR = 1 - keystrokes / characters.
- comment-to-script generation: from `#!/bin/bash\\n# <description>\\n`, sample (T=0.8, top-p
  0.95) up to 128 tokens whose first token must begin code (as the server does), stopping at a
  blank line or end of file, and check the script with `bash -O extglob -n` as the server does
  (`bashlsp.model.shell_check`; parse only: generated code is never executed). A generation without a line of code (empty, or only comments) counts as a
  failure: it passes `bash -n` trivially but completes nothing. Beside these raw samples, the
  same descriptions go through the server's Generate script from comment (its engine, stop
  rules and the tries of `bashlsp.model.generation`: `server_generation_pass_rate`): the share
  for which a user is offered a script that passes `bash -n`.

Completions use token healing: the last partial word of the prompt is taken back out of the
prompt and the first generated tokens are constrained to re-spell it, so `ech|` can continue as
the single token `echo` the model learned, instead of from the split `ech` it never saw.
`--completer server` measures through the language server's own engine instead.

Cost: keystroke simulation dominates. Each keystroke re-uses the KV cache of the previous one
(only the last word is pre-filled again) and stops decoding as soon as the suggestion departs
from the real text, so a keystroke costs about one pre-fill and two decode steps. Measured with
a nano model (5.3 M parameters) on 50 held-out Debian scripts, 1 thread, on 2 shared CPU cores:
about 450 s of CPU time for the whole evaluation with the defaults, 60 % of it keystrokes.
"""

from __future__ import annotations

import argparse
import codecs
import json
import lzma
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..model.engine import token_table
from ..model.errors import BashlspError

# Defaults sized so ~50 files finish in minutes with the nano model on 2 CPU cores.
DEFAULT_LINES_PER_FILE = 10
DEFAULT_KSR_CHARS = 300
DEFAULT_GENERATIONS = 40
DEFAULT_LINE_TOKENS = 48  # longest suggested rest-of-line, in tokens
GENERATION_TOKENS = 128
GENERATION_TEMPERATURE = 0.8
GENERATION_TOP_P = 0.95
GENERATION_HEADER = "#!/bin/bash\n"
MAX_FILE_BYTES = 1_000_000  # larger files are skipped (generated data, not scripts)
MAX_HEAL_BYTES = 64  # token healing takes back at most this much of the prompt
MAX_HEAL_TOKENS = 8  # ... and at most this many tokens
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv"})


# -- bits per byte -------------------------------------------------------------------------------


def score_windows(num_ids: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """Plan the windows that score a sequence of `num_ids` token ids (the first is the BOS).

    Returns (start, end, scored): the model reads ids[start:end] and predicts ids[start+1:end+1];
    only the last `scored` of those predictions count. Together the windows score every
    prediction (ids[1:]) exactly once; each window after the first is `block_size` long and
    scores the `stride` (or fewer) newest targets, so those see >= block_size - stride context.
    """
    if block_size < 1 or not 1 <= stride <= block_size:
        raise ValueError(f"need 1 <= stride ({stride}) <= block_size ({block_size})")
    last = num_ids - 1  # inputs run up to index last-1; targets up to index last
    if last < 1:
        return []
    windows = []
    end = min(block_size, last)
    windows.append((0, end, end))
    while end < last:
        new_end = min(end + stride, last)
        windows.append((max(0, new_end - block_size), new_end, new_end - end))
        end = new_end
    return windows


@torch.inference_mode()
def total_nll_bits(loaded, text: str, stride: int | None = None) -> float:
    """The model's negative log-likelihood of all of `text`'s tokens, in bits (see module doc)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    block = model.config.block_size
    ids = [tokenizer.eof_id] + tokenizer.encode(text)
    device = model.wte.weight.device
    data = torch.tensor(ids, device=device)
    nats = 0.0
    for start, end, scored in score_windows(len(ids), block, stride or max(1, block // 2)):
        logits = model(data[None, start:end])[0, -scored:]  # (scored, V) float32
        targets = data[end - scored + 1 : end + 1]
        nats += F.cross_entropy(logits.float(), targets, reduction="sum").item()
    return nats / math.log(2)


def bits_per_byte(loaded, text: str, stride: int | None = None) -> float:
    """Bits per byte of `text` read fresh (BOS = `<|eof|>`), windowed past the block size."""
    size = len(text.encode("utf-8"))
    if size == 0:
        raise ValueError("bits per byte of an empty text is undefined")
    return total_nll_bits(loaded, text, stride) / size


def evaluate_bpb(loaded, texts: Sequence[str], stride: int | None = None, progress: bool = False) -> dict:
    """bpb over several files: byte-weighted overall (total bits / total bytes), the mean of the
    per-file figures, and each file's own (NaN for an empty text)."""
    per_file, total_bits, total_bytes = [], 0.0, 0
    for text in _progress(texts, "bits per byte", progress):
        size = len(text.encode("utf-8"))
        if size == 0:
            per_file.append(float("nan"))  # undefined; kept so per_file lines up with texts
            continue
        bits = total_nll_bits(loaded, text, stride)
        per_file.append(bits / size)
        total_bits += bits
        total_bytes += size
    defined = [value for value in per_file if value == value]
    return {
        "bpb": total_bits / total_bytes if total_bytes else float("nan"),
        "mean_file_bpb": sum(defined) / len(defined) if defined else float("nan"),
        "bits": total_bits,
        "bytes": total_bytes,
        "per_file": per_file,
        "stride": stride or max(1, loaded.model.config.block_size // 2),
        "block_size": loaded.model.config.block_size,
    }


def xz_bpb(text: str | bytes) -> float:
    """Bits per byte of `xz -9e` on this one text: the .xz container at preset 9 | extreme."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not data:
        raise ValueError("bits per byte of an empty text is undefined")
    compressed = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    return 8 * len(compressed) / len(data)


# -- string measures -----------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance: the fewest single-character insertions, deletions and substitutions."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def edit_similarity(prediction: str, truth: str) -> float:
    """1 - Levenshtein / longer length, in [0, 1]; two empty strings are identical (1.0).

    The CodeXGLUE line task's "edit sim" normalised to [0, 1]. (Its script calls fuzzywuzzy's
    `ratio`, which counts a substitution as two edits over the summed lengths; this is the
    plain Levenshtein form most later papers use.)"""
    longest = max(len(prediction), len(truth))
    return 1.0 if longest == 0 else 1.0 - levenshtein(prediction, truth) / longest


def exact_match(prediction: str, truth: str) -> bool:
    """Equal as sequences of whitespace-separated tokens (indentation and spacing ignored)."""
    return prediction.split() == truth.split()


# -- completion with token healing and a reused KV cache -----------------------------------------

# The end of a text that the byte-level BPE pre-tokenizer (GPT-2's pattern) keeps as one piece:
# a word with an optional leading space, a number, a run of punctuation, or trailing whitespace.
_LAST_PIECE = re.compile(r"(?: ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+)\Z")


def healing_split(tokenizer, prefix: str) -> tuple[list[int], list[int]]:
    """Split the tokens of `prefix` into those the model reads as they are and the tail it must
    spell again itself.

    The tail is the tokens covering the last pre-tokenizer piece (a partial word, or trailing
    whitespace whose split depends on what follows), at most MAX_HEAL_TOKENS / MAX_HEAL_BYTES.
    """
    ids = tokenizer.encode(prefix)
    match = _LAST_PIECE.search(prefix)
    if not ids or match is None:
        return ids, []
    want = len(match.group(0).encode("utf-8"))
    table = tokenizer.token_bytes
    taken, cut = 0, len(ids)
    while cut > 0 and taken < want and len(ids) - cut < MAX_HEAL_TOKENS:
        if taken + len(table[ids[cut - 1]]) > MAX_HEAL_BYTES:
            break
        cut -= 1
        taken += len(table[ids[cut]])
    return ids[:cut], ids[cut:]


def _complete_text(data: bytes) -> str:
    """Decode UTF-8, dropping a character cut off at the end."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)


class LineCompleter:
    """Greedy rest-of-line completion for one model, reusing its KV cache between calls.

    Calls with prompts that share a start (successive keystrokes, successive lines of one file)
    pre-fill only the tokens after the common prefix: `cache.length` is lowered to it.

    Token healing without extra decode steps: the healed tail is pre-filled with the prompt, and
    the logits at its positions say which token the model would pick at each healing step (under
    the constraint to re-spell the tail). While that is the tail's own token, the step is free
    (it is already in the cache); at the first other choice the cache is cut back there and
    decoding goes on normally. The result is the same as decoding the tail step by step.
    """

    def __init__(self, loaded, max_new_tokens: int = DEFAULT_LINE_TOKENS) -> None:
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.block_size = self.model.config.block_size
        self.max_new_tokens = max(1, min(max_new_tokens, self.block_size // 2))
        # The longest prompt before the healed tail, leaving room for the tail and the answer.
        self.prompt_limit = max(1, self.block_size - self.max_new_tokens - MAX_HEAL_TOKENS - 1)
        self.device = self.model.wte.weight.device
        self.cache = self.model.new_cache(1, self.block_size)
        self.cached_ids: list[int] = []  # the ids whose keys/values fill cache[:length]
        self.token_bytes = self.tokenizer.token_bytes
        self.table = token_table(self.tokenizer)  # the server's healing constraint, the same here
        self.decode_steps = 0  # tokens fed one at a time (for timing reports)
        self.prefilled_tokens = 0

    def _pick(self, logits: torch.Tensor, required: bytes) -> int:
        if not required:
            return int(logits.argmax())
        allowed = torch.from_numpy(self.table.allowed(required)).to(self.device)
        return int(allowed[logits[allowed].argmax()])

    def _window(self, ids: list[int]) -> list[int]:
        """The prompt the model reads: BOS + ids, or, past the block, a recent window of ids whose
        start moves in steps of half a window so that successive prompts share their start."""
        limit = self.prompt_limit
        if len(ids) + 1 <= limit:
            return [self.tokenizer.eof_id] + ids
        step = max(1, limit // 2)
        start = math.ceil((len(ids) - limit) / step) * step
        return ids[start:]

    def _feed(self, ids: list[int], rows: int) -> torch.Tensor:
        """Bring the cache to `ids`, pre-filling only what follows the cached common prefix;
        the logits (rows, V) of the last `rows` positions."""
        common = 0
        limit = min(len(ids) - rows, len(self.cached_ids), self.cache.length)
        while common < limit and self.cached_ids[common] == ids[common]:
            common += 1
        self.cache.length = common
        self.prefilled_tokens += len(ids) - common
        split = len(ids) - rows
        if split - common > 64:  # a long new stretch: no logits wanted for most of it
            self.model(torch.tensor([ids[common:split]], device=self.device), cache=self.cache, last_only=True)
            common = split
        logits = self.model(torch.tensor([ids[common:]], device=self.device), cache=self.cache)
        self.cached_ids = list(ids)
        return logits[0, -rows:]

    @torch.inference_mode()
    def complete(self, prefix: str, following: str | None = None) -> str:
        """Greedy continuation of `prefix` up to (not including) the next newline.

        With `following` (the text that really comes next), decoding stops as soon as the
        suggestion can no longer be a prefix of it: it would be rejected whatever came after, so
        the accept/reject outcome is the same and keystroke simulation gets much cheaper.
        """
        body, tail = healing_split(self.tokenizer, prefix)
        required = self.tokenizer.decode_bytes(tail)
        healed_length = len(required)
        target = following.encode("utf-8") if following is not None else None
        prompt = self._window(body)
        tail_logits = self._feed(prompt + tail, len(tail) + 1)
        logits = tail_logits[0]
        out = bytearray()
        in_tail = bool(tail)  # every step so far re-picked the tail's own token
        for step in range(self.max_new_tokens):
            token = self._pick(logits, required)
            if in_tail:
                if token == tail[step]:
                    out += self.token_bytes[token]
                    required = required[len(self.token_bytes[token]) :]
                    logits = tail_logits[step + 1]  # this token is already in the cache
                    in_tail = step + 1 < len(tail)
                    continue
                in_tail = False  # another spelling: forget the rest of the tail
                self.cache.length = len(prompt) + step
                del self.cached_ids[len(prompt) + step :]
            data = self.token_bytes[token]
            if not data:  # end of file or another special token
                break
            out += data
            required = required[len(data) :] if required.startswith(data) else b""
            suggestion = bytes(out[healed_length:])
            newline = suggestion.find(b"\n")
            if newline >= 0:
                return _complete_text(suggestion[:newline])
            if not required and target is not None and not target.startswith(suggestion):
                break
            if step == self.max_new_tokens - 1:
                break  # out of tokens: no need to read the last one
            logits = self.model(torch.tensor([[token]], device=self.device), cache=self.cache, last_only=True)[0, -1]
            self.cached_ids.append(token)
            self.decode_steps += 1
        return _complete_text(bytes(out[healed_length:]))


def _as_served(loaded):
    """`loaded` as the server would run it: on a CPU, the numpy backend."""
    return loaded.on_numpy() if str(loaded.device) == "cpu" else loaded


def server_engine_completer(
    loaded, max_new_tokens: int = DEFAULT_LINE_TOKENS, threads: int | None = None, min_token_prob: float | None = None
):
    """The language server's own engine (`bashlsp.model.engine`, "line" mode, greedy, nothing
    after the cursor) as a completer, to measure exactly what an editor is offered: on a CPU
    the numpy backend the server runs there. It cannot stop early on a wrong suggestion, so
    keystroke simulation through it is slower."""
    from ..model.engine import MIN_TOKEN_PROB, CompletionQuery, Engine

    engine = Engine(
        _as_served(loaded),
        num_threads=threads or None,
        min_token_prob=MIN_TOKEN_PROB if min_token_prob is None else min_token_prob,
    )

    def complete(prefix: str, following: str | None = None) -> str:
        query = CompletionQuery(
            uri="bashlsp-eval", prefix=prefix, suffix="", mode="line", max_tokens=max_new_tokens, temperature=0.0
        )
        suggestions = engine.complete(query).suggestions
        return suggestions[0].text if suggestions else ""

    return complete


# -- next-line completion ------------------------------------------------------------------------


def line_starts(text: str) -> list[tuple[int, str]]:
    """(offset, line) for each line of `text` without its newline."""
    starts, offset = [], 0
    for line in text.split("\n"):
        starts.append((offset, line))
        offset += len(line) + 1
    if text.endswith("\n"):
        starts.pop()  # the empty "line" after the final newline
    return starts


def sample_line_positions(text: str, per_file: int, seed: str | int) -> list[tuple[int, str]]:
    """Up to `per_file` non-blank lines after the first (which has no context), chosen by `seed`,
    in file order."""
    candidates = [(offset, line) for offset, line in line_starts(text)[1:] if line.strip()]
    if per_file <= 0:
        return []
    if len(candidates) > per_file:
        candidates = sorted(random.Random(seed).sample(candidates, per_file))
    return candidates


def next_line_metrics(
    loaded,
    texts: Sequence[str],
    lines_per_file: int = DEFAULT_LINES_PER_FILE,
    seed: int = 0,
    names: Sequence[str] | None = None,
    max_new_tokens: int = DEFAULT_LINE_TOKENS,
    completer: Callable[[str], str] | None = None,
    progress: bool = False,
) -> dict:
    """Exact match and edit similarity of greedy rest-of-line predictions at sampled line starts.

    Line choice is seeded by `seed` and each file's name (its index when `names` is None), so a
    file gets the same lines whatever other files are evaluated with it.
    """
    line_completer = LineCompleter(loaded, max_new_tokens) if completer is None else None
    complete = completer or line_completer.complete
    matches, similarity, count, examples = 0, 0.0, 0, []
    for index, text in enumerate(_progress(texts, "next line", progress)):
        name = names[index] if names is not None else str(index)
        for offset, truth in sample_line_positions(text, lines_per_file, f"{seed}:{name}"):
            prediction = complete(text[:offset])
            hit = exact_match(prediction, truth)
            matches += hit
            similarity += edit_similarity(prediction.strip(), truth.strip())
            count += 1
            if len(examples) < 5:
                examples.append({"file": name, "truth": truth, "prediction": prediction, "exact": hit})
    return {
        "exact_match": matches / count if count else float("nan"),
        "edit_similarity": similarity / count if count else float("nan"),
        "lines": count,
        "lines_per_file": lines_per_file,
        "examples": examples,
    }


# -- keystroke savings ---------------------------------------------------------------------------


def typed_span(text: str, max_chars: int) -> str:
    """The first `max_chars` characters of `text`, extended to the end of that line (newline
    included) so that no line is cut in the middle."""
    if max_chars <= 0 or max_chars >= len(text):
        return text
    newline = text.find("\n", max_chars - 1)
    return text if newline < 0 else text[: newline + 1]


def simulate_typing(text: str, completer: Callable[[str, str], str]) -> tuple[int, int]:
    """Type `text` with a completer's help: (keystrokes, characters).

    `completer(prefix, following)` returns its suggestion for what comes after `prefix`;
    `following` is the rest of the text, which a completer may use only to stop working on a
    suggestion that is already wrong. A suggestion that is a non-empty prefix of what follows is
    accepted for one keystroke; anything else costs one keystroke for the next character.
    """
    position, keystrokes = 0, 0
    while position < len(text):
        following = text[position:]
        suggestion = completer(text[:position], following)
        if suggestion and following.startswith(suggestion):
            position += len(suggestion)
        else:
            position += 1
        keystrokes += 1
    return keystrokes, len(text)


def keystroke_savings(
    texts: Iterable[str],
    completer: Callable[[str, str], str],
    max_chars: int = DEFAULT_KSR_CHARS,
    progress: bool = False,
) -> dict:
    """KSR = 1 - keystrokes / characters over the typed start of each text (see `typed_span`)."""
    keystrokes = characters = files = 0
    texts = list(texts)
    for text in _progress(texts, "keystrokes", progress):
        span = typed_span(text, max_chars)
        if not span:
            continue
        pressed, typed = simulate_typing(span, completer)
        keystrokes += pressed
        characters += typed
        files += 1
    return {
        "ksr": 1.0 - keystrokes / characters if characters else float("nan"),
        "keystrokes": keystrokes,
        "characters": characters,
        "files": files,
        "chars_per_file": max_chars,
    }


def model_keystroke_savings(
    loaded,
    texts: Iterable[str],
    max_chars: int = DEFAULT_KSR_CHARS,
    progress: bool = False,
    max_new_tokens: int = DEFAULT_LINE_TOKENS,
) -> dict:
    """KSR with the model's greedy rest-of-line completion (token healing, one shared KV cache)."""
    completer = LineCompleter(loaded, max_new_tokens)
    result = keystroke_savings(texts, completer.complete, max_chars, progress)
    result["decode_steps"] = completer.decode_steps
    result["prefilled_tokens"] = completer.prefilled_tokens
    return result


def make_completer(
    loaded,
    kind: str,
    max_new_tokens: int = DEFAULT_LINE_TOKENS,
    threads: int | None = None,
    min_token_prob: float | None = None,
):
    """A rest-of-line completer: "reference" (this module's LineCompleter) or "server" (the
    language server's engine)."""
    if kind == "reference":
        return LineCompleter(loaded, max_new_tokens).complete
    if kind == "server":
        return server_engine_completer(loaded, max_new_tokens, threads, min_token_prob)
    raise BashlspError(f"unknown completer {kind!r}; choose reference or server")


# -- comment-to-script generation ----------------------------------------------------------------


def shell_tools():
    """The server's `bash -n` (and shellcheck) runner; a clear error when bash is missing, since
    then no generation could be judged."""
    from ..model.shell_check import ShellTools

    tools = ShellTools(warn=lambda message: None)  # shellcheck is optional here
    if not tools.bash.available:
        raise BashlspError(f"generations are checked with bash -n: {tools.bash.problem}")
    return tools


def generation_prompt(description: str) -> str:
    return f"{GENERATION_HEADER}# {' '.join(description.split())}\n"


_NOT_A_DESCRIPTION = re.compile(r"^(!|\s*-\*-|\s*(vim?|ex):|\s*shellcheck\b|\s*(TODO|FIXME|XXX)\b)", re.IGNORECASE)


def comment_descriptions(text: str, max_block_lines: int = 3) -> list[str]:
    """Descriptions from comment blocks directly followed by code, as a writer of the script used
    them: a block of at most `max_block_lines` `# ...` lines (joined) whose next line is code.
    Skips the shebang, mode lines, shellcheck directives, TODO notes and comments without a word."""
    descriptions = []
    block: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#!"):  # a shebang is no description
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped[1:].strip())
            continue
        if stripped and block and len(block) <= max_block_lines:
            description = " ".join(" ".join(block).split())
            if (
                description
                and not _NOT_A_DESCRIPTION.match(description)
                and re.search(r"[A-Za-z]{3}", description)
                and len(description) <= 200
            ):
                descriptions.append(description)
        block = []
    return descriptions


def read_generation_pairs(path: Path) -> tuple[list[str], str]:
    """Descriptions from a tldr pairs file (JSON lines with description, command, page, split):
    the holdout pairs when the file marks a split, else all of them."""
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BashlspError(f"{path}:{number}: not JSON: {exc}") from exc
                if not isinstance(record, dict) or not isinstance(record.get("description"), str):
                    raise BashlspError(f"{path}:{number}: expected an object with a 'description' string")
                records.append(record)
    except OSError as exc:
        raise BashlspError(f"cannot read {path}: {exc}") from exc
    holdout = [r for r in records if r.get("split") == "holdout"]
    if holdout:
        return [r["description"] for r in holdout], f"{path} (holdout pairs)"
    return [r["description"] for r in records], f"{path} (all pairs: none marked holdout)"


def generation_pass_rate(
    loaded,
    descriptions: Sequence[str],
    seed: int = 0,
    max_new_tokens: int = GENERATION_TOKENS,
    temperature: float = GENERATION_TEMPERATURE,
    top_p: float = GENERATION_TOP_P,
    progress: bool = False,
) -> dict:
    """Share of scripts generated from `#!/bin/bash\\n# <description>\\n` that pass `bash -n`.

    One sample per description (seeded with seed + its index) whose first token must begin code,
    as in the server, stopping at a blank line or end of file. Generations without a line of code
    (empty, or comments only) count as failures."""
    from ..model.generation import has_code_line
    from ..model.sampling import SamplingOptions, generate

    tools = shell_tools()
    tokenizer = loaded.tokenizer
    passed = no_code = cut = 0
    examples = []
    for index, description in enumerate(_progress(descriptions, "generation", progress)):
        prompt = generation_prompt(description)
        options = SamplingOptions(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=("\n\n",),
            seed=seed + index,
            code_first=True,  # as the server's generate-from-comment does
        )
        sample = generate(loaded.model, tokenizer, tokenizer.encode(prompt), options)[0]
        # The script ends at its first blank line, also one right after the comment line.
        code = "" if sample.text.startswith("\n") else sample.text
        has_code = has_code_line(code)
        ok = has_code and tools.check_syntax(prompt + code).ok is True
        passed += ok
        no_code += not has_code
        cut += sample.finish_reason == "length"
        if len(examples) < 3:
            examples.append({"description": description, "generated": code, "passes": ok})
    total = len(descriptions)
    return {
        "pass_rate": passed / total if total else float("nan"),
        "passed": passed,
        "total": total,
        "no_code": no_code,  # empty or comments only
        "cut_at_max_tokens": cut,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "examples": examples,
    }


def server_generation_pass_rate(loaded, descriptions: Sequence[str], seed: int = 0, progress: bool = False) -> dict:
    """Share of descriptions for which the server's Generate-script-from-comment, with its
    default settings, offers a script: the engine in generate mode (its stop rules) and the
    tries of `bashlsp.model.generation` (the greedy script, then SAMPLES sampled ones; the
    first that has code and passes `bash -n` wins). What an editor user gets, where
    generation_pass_rate measures single raw samples."""
    import asyncio

    from ..model.engine import CompletionQuery, Engine
    from ..model.generation import MAX_TOKENS, RETRY_TEMPERATURE, SAMPLES, attempts, generate_script

    tools = shell_tools()
    engine = Engine(_as_served(loaded), seed=seed)
    offered = first_try = tried = 0
    examples = []

    async def check_syntax(script: str):
        return tools.check_syntax(script)

    for description in _progress(descriptions, "generation (server)", progress):
        prompt = generation_prompt(description)

        async def complete(num_samples: int, temperature: float, prompt: str = prompt):
            query = CompletionQuery(
                uri="bashlsp-eval-generate",
                prefix=prompt,
                suffix="",
                mode="generate",
                max_tokens=MAX_TOKENS,
                temperature=temperature,
                num_samples=num_samples,
            )
            return engine.complete(query).suggestions

        generated = asyncio.run(generate_script(complete, check_syntax, tries=attempts()))
        tried += generated.tried
        offered += generated.script is not None
        first_try += generated.attempt == 0
        if len(examples) < 3:
            examples.append({"description": description, "script": generated.script})
    total = len(descriptions)
    return {
        "pass_rate": offered / total if total else float("nan"),
        "offered": offered,
        "greedy_passed": first_try,  # offered on the first (greedy) attempt
        "total": total,
        "scripts_checked": tried,  # scripts with a line of code that bash -n checked
        "samples": SAMPLES,
        "retry_temperature": RETRY_TEMPERATURE,
        "max_new_tokens": MAX_TOKENS,
        "examples": examples,
    }


# -- collecting files ----------------------------------------------------------------------------


@dataclass
class ScriptSet:
    root: Path
    paths: list[Path] = field(default_factory=list)  # relative to root
    texts: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(
        default_factory=lambda: {
            "not_shell": 0,
            "binary": 0,
            "unreadable": 0,
            "not_utf8": 0,
            "empty": 0,
            "too_large": 0,
        }
    )


def _shell_detector():
    from ..model.shell import HEAD_BYTES, is_binary, shell_reason

    return HEAD_BYTES, is_binary, shell_reason


def collect_scripts(root: Path, max_file_bytes: int = MAX_FILE_BYTES) -> ScriptSet:
    """Every shell script under `root` (symlinks not followed), each read fresh, sorted by path."""
    head_bytes, is_binary, shell_reason = _shell_detector()
    root = Path(root)
    if not root.is_dir():
        raise BashlspError(f"{root} is not a directory")
    found = ScriptSet(root)
    candidates = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
        for name in files:
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            candidates.append(path)
    for path in sorted(candidates):
        try:
            size = path.stat().st_size
            with open(path, "rb") as handle:
                head = handle.read(head_bytes)
                if is_binary(head):
                    found.skipped["binary"] += 1
                    continue
                if shell_reason(path, head) is None:
                    found.skipped["not_shell"] += 1
                    continue
                if size > max_file_bytes:
                    found.skipped["too_large"] += 1
                    continue
                data = head + handle.read()
        except OSError:
            found.skipped["unreadable"] += 1
            continue
        if is_binary(data):
            found.skipped["binary"] += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            found.skipped["not_utf8"] += 1
            continue
        if not text:
            found.skipped["empty"] += 1
            continue
        found.paths.append(path.relative_to(root))
        found.texts.append(text)
    return found


# -- the command ---------------------------------------------------------------------------------


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, file=sys.stderr, leave=False, disable=None)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure a checkpoint on the shell scripts under DIR: bits per byte (beside xz -9e), "
        "next-line exact match and edit similarity, keystroke savings, and the share of "
        "comment-to-script generations that pass `bash -n`.",
    )
    parser.add_argument("dir", metavar="DIR", help="folder of shell scripts (read, never written)")
    parser.add_argument(
        "--checkpoint",
        help="checkpoint directory, store id, or 'default' (default: the store's current, else the bundled model)",
    )
    parser.add_argument("--store", help="checkpoint store directory (default: $BASHLSP_STORE or the platform data dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (default: auto)")
    parser.add_argument(
        "--max-files", type=int, default=0, metavar="N", help="evaluate a seeded sample of N files (default 0: all)"
    )
    parser.add_argument(
        "--lines-per-file",
        type=int,
        default=DEFAULT_LINES_PER_FILE,
        metavar="N",
        help=f"next-line positions sampled per file (default {DEFAULT_LINES_PER_FILE}; 0 skips)",
    )
    parser.add_argument(
        "--ksr-chars",
        type=int,
        default=DEFAULT_KSR_CHARS,
        metavar="N",
        help=f"keystroke simulation on the first N characters of each file, to the end of that line (default {DEFAULT_KSR_CHARS}; 0 skips)",
    )
    parser.add_argument(
        "--generations",
        type=int,
        default=DEFAULT_GENERATIONS,
        metavar="N",
        help=f"comment-to-script generations checked with bash -n (default {DEFAULT_GENERATIONS}; 0 skips)",
    )
    parser.add_argument(
        "--generations-from",
        type=Path,
        metavar="FILE",
        help="take descriptions from a tldr pairs JSON-lines file (holdout split) instead of DIR's comments",
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=0,
        metavar="N",
        help="bpb window stride in tokens for long files (default: block_size / 2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for every sampled choice (default 0)")
    parser.add_argument(
        "--completer",
        choices=("reference", "server"),
        default="reference",
        help="rest-of-line completion for next-line and keystroke figures: this module's greedy "
        "completer with token healing (default; stops early on a suggestion that is already wrong), "
        "or the language server's engine (what editors get; slower)",
    )
    parser.add_argument(
        "--min-token-prob",
        type=float,
        default=None,
        metavar="P",
        help="with --completer server: end suggestions before a token under this probability "
        "(default: the server's own setting; 0 never)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (default 0: torch's choice; 1 is often faster on a busy machine)",
    )
    return parser


def _check_arguments(args) -> None:
    for name in ("max_files", "lines_per_file", "ksr_chars", "generations", "stride", "threads"):
        if getattr(args, name) < 0:
            raise BashlspError(f"--{name.replace('_', '-')} must not be negative")


def run_eval(args) -> dict:
    from ..model.checkpoint import CheckpointStore, load_checkpoint, resolve_checkpoint
    from ..model.device import resolve_device

    _check_arguments(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    scripts = collect_scripts(Path(args.dir))
    found = len(scripts.texts)
    if not scripts.texts:
        raise BashlspError(f"no readable shell scripts under {args.dir} (skipped: {scripts.skipped})")
    if args.max_files and found > args.max_files:
        keep = sorted(random.Random(args.seed).sample(range(found), args.max_files))
        scripts.paths = [scripts.paths[i] for i in keep]
        scripts.texts = [scripts.texts[i] for i in keep]
    names = [str(p) for p in scripts.paths]
    timings["collect_s"] = time.perf_counter() - started

    store = CheckpointStore(args.store) if args.store else None
    mark = time.perf_counter()
    loaded = load_checkpoint(resolve_checkpoint(args.checkpoint, store), device=resolve_device(args.device))
    loaded.model.eval()
    timings["load_s"] = time.perf_counter() - mark
    show_progress = not args.json

    mark = time.perf_counter()
    bpb = evaluate_bpb(loaded, scripts.texts, stride=args.stride or None, progress=show_progress)
    timings["bpb_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    xz_bits = [xz_bpb(text) * len(text.encode("utf-8")) for text in scripts.texts]
    total_bytes = sum(len(text.encode("utf-8")) for text in scripts.texts)
    xz_per_file = [bits / len(text.encode("utf-8")) for bits, text in zip(xz_bits, scripts.texts)]
    xz = {
        "bpb": sum(xz_bits) / total_bytes,
        "mean_file_bpb": sum(xz_per_file) / len(xz_per_file),
        "per_file": xz_per_file,
    }
    timings["xz_s"] = time.perf_counter() - mark

    result = {
        "dir": str(args.dir),
        "checkpoint": {
            "path": str(loaded.path),
            "id": loaded.id,
            "num_params": loaded.model.num_params(),
            "block_size": loaded.config.block_size,
        },
        "device": str(loaded.device),
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "files": {"found": found, "evaluated": len(scripts.texts), "bytes": total_bytes, "skipped": scripts.skipped},
        "bpb": {key: bpb[key] for key in ("bpb", "mean_file_bpb", "block_size", "stride")},
        "xz_bpb": {key: xz[key] for key in ("bpb", "mean_file_bpb")},
        "per_file": [
            {"path": name, "bytes": len(text.encode("utf-8")), "bpb": model_bpb, "xz_bpb": xz_file}
            for name, text, model_bpb, xz_file in zip(names, scripts.texts, bpb["per_file"], xz_per_file)
        ],
        "next_line": None,
        "ksr": None,
        "generation": None,
        "generation_server": None,
    }

    result["completer"] = args.completer
    if args.lines_per_file:
        mark = time.perf_counter()
        completer = make_completer(loaded, args.completer, threads=args.threads, min_token_prob=args.min_token_prob)
        result["next_line"] = next_line_metrics(
            loaded, scripts.texts, args.lines_per_file, args.seed, names, completer=completer, progress=show_progress
        )
        timings["next_line_s"] = time.perf_counter() - mark
    if args.ksr_chars:
        mark = time.perf_counter()
        if args.completer == "reference":
            result["ksr"] = model_keystroke_savings(loaded, scripts.texts, args.ksr_chars, progress=show_progress)
        else:
            completer = make_completer(loaded, args.completer, threads=args.threads, min_token_prob=args.min_token_prob)
            result["ksr"] = keystroke_savings(scripts.texts, completer, args.ksr_chars, progress=show_progress)
        timings["ksr_s"] = time.perf_counter() - mark
    if args.generations:
        if args.generations_from:
            descriptions, source = read_generation_pairs(args.generations_from)
        else:
            descriptions = [d for text in scripts.texts for d in comment_descriptions(text)]
            descriptions = list(dict.fromkeys(descriptions))  # dedupe, keep order
            source = f"comments followed by code in {args.dir}"
        available = len(descriptions)
        if available > args.generations:
            descriptions = [
                descriptions[i] for i in sorted(random.Random(args.seed).sample(range(available), args.generations))
            ]
        mark = time.perf_counter()
        generation = generation_pass_rate(loaded, descriptions, seed=args.seed, progress=show_progress)
        generation.update(source=source, available=available)
        result["generation"] = generation
        result["generation_server"] = server_generation_pass_rate(
            loaded, descriptions, seed=args.seed, progress=show_progress
        )
        timings["generation_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    result["timings"] = timings
    return result


def _percent(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f} %"


def format_report(result: dict) -> str:
    ckpt, files = result["checkpoint"], result["files"]
    skipped = (
        ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in files["skipped"].items() if count) or "none"
    )
    lines = [
        f"checkpoint {ckpt['id']} ({ckpt['num_params'] / 1e6:.2f} M parameters) from {ckpt['path']} "
        f"on {result['device']} ({result['threads']} threads)",
        f"scripts under {result['dir']}: {files['evaluated']} evaluated of {files['found']} found "
        f"({files['bytes']} bytes); skipped: {skipped}",
        "",
        f"bits per byte, each file read fresh (windows of {result['bpb']['block_size']} tokens, stride {result['bpb']['stride']})",
    ]
    per_file = result["per_file"]
    if len(per_file) <= 100:
        width = max(12, min(48, max(len(row["path"]) for row in per_file)))
        lines.append(f"  {'file':<{width}} {'bytes':>8} {'model':>7} {'xz -9e':>7}")
        for row in per_file:
            name = row["path"] if len(row["path"]) <= width else "..." + row["path"][-(width - 3) :]
            lines.append(f"  {name:<{width}} {row['bytes']:>8} {row['bpb']:>7.3f} {row['xz_bpb']:>7.3f}")
    else:
        width = 12
        lines.append(f"  ({len(per_file)} files: per-file figures with --json)")
    lines.append(
        f"  {'all (bits/bytes)':<{width}} {files['bytes']:>8} {result['bpb']['bpb']:>7.3f} {result['xz_bpb']['bpb']:>7.3f}"
    )
    lines.append(
        f"  {'mean of files':<{width}} {'':>8} {result['bpb']['mean_file_bpb']:>7.3f} {result['xz_bpb']['mean_file_bpb']:>7.3f}"
    )
    nl = result["next_line"]
    if nl:
        lines += [
            "",
            f"next-line completion: {nl['lines']} lines (up to {nl['lines_per_file']} per file, seed {result['seed']}), "
            f"greedy, {result['completer']} completer",
            f"  exact match      {_percent(nl['exact_match'])}",
            f"  edit similarity  {_percent(nl['edit_similarity'])}",
        ]
    ksr = result["ksr"]
    if ksr:
        lines += [
            "",
            f"keystroke savings: first {ksr['chars_per_file']} characters of {ksr['files']} files (to the line's end), "
            f"greedy rest-of-line, {result['completer']} completer",
            f"  {ksr['keystrokes']} keystrokes for {ksr['characters']} characters: KSR {_percent(ksr['ksr'])}",
        ]
    gen = result["generation"]
    if gen:
        lines += [
            "",
            f"comment-to-script generation: {gen['total']} of {gen['available']} prompts from {gen['source']}",
            f"  (T={gen['temperature']}, top-p {gen['top_p']}, up to {gen['max_new_tokens']} tokens, stop at a blank line)",
            f"  pass bash -n  {gen['passed']}/{gen['total']} = {_percent(gen['pass_rate'])}"
            f"  (no code {gen['no_code']}, cut at {gen['max_new_tokens']} tokens {gen['cut_at_max_tokens']})",
        ]
        server = result.get("generation_server")
        if server:
            lines.append(
                f"  through the server's Generate script from comment (greedy, then {server['samples']} samples at "
                f"T={server['retry_temperature']}; stop rules): a script offered for {server['offered']}/{server['total']} "
                f"= {_percent(server['pass_rate'])} ({server['greedy_passed']} on the greedy try)"
            )
    timing = ", ".join(f"{name[:-2].replace('_', '-')} {seconds:.1f} s" for name, seconds in result["timings"].items())
    lines += ["", f"time: {timing}"]
    return "\n".join(lines)


def _json_safe(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def main(argv: list[str] | None = None, prog: str = "bashlsp eval") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        result = run_eval(args)
    except BashlspError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_json_safe(result), indent=2))
    else:
        print(format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
