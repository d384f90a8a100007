"""The measures: bits per byte (with xz -9e beside it) and the string measures of next-line completion.

bpb: the model's total negative log-likelihood of a file's bytes, in bits, divided by its bytes.
The first token is predicted from `<|eof|>` (how files are separated in training), so no context
is carried between files. Files longer than the model's block are scored in windows of
`block_size` tokens that advance by `stride` (default block_size // 2); each window scores only
the tokens the previous one did not, so every token after the first window is predicted from at
least block_size - stride tokens of context. The end-of-file token is not scored: only the
file's own bytes count.
"""

from __future__ import annotations

import lzma
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .progress import progress_bar


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
    for text in progress_bar(texts, "bits per byte", progress):
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
