"""What a personal round trains and is judged on: the user's scripts prepared (redacted, a holdout
split by file), the general holdout shipped with the bundled model, and bits per byte on both.
Split from personal.py, which runs the rounds.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..model.checkpoint import BUNDLED_DIR, LoadedModel
from ..model.errors import TrainingError
from ..model.redact import Redaction, redact
from .collect import Collection, Script, holdout_split

GENERAL_HOLDOUT_DIR = BUNDLED_DIR / "holdout"
# As much of the general holdout is scored for the forgetting check (25 of its 38 scripts).
MAX_GENERAL_BYTES = 24 * 1024


# -- data ----------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    collection: Collection
    train: list[Script]  # redacted texts
    holdout: list[Script]
    redactions: dict[str, list[Redaction]] = field(default_factory=dict)  # script name -> where

    @property
    def num_redactions(self) -> int:
        return sum(len(r) for r in self.redactions.values())

    def digests(self) -> dict[str, str]:
        """name -> digest of the original bytes, for both sides (to see what an edit changed)."""
        return {s.name: s.digest for s in self.train + self.holdout}


def prepare(collection: Collection, holdout_fraction: float, max_holdout_bytes: int) -> PreparedData:
    """Redact every script (before anything is tokenised) and split the holdout by file."""
    redactions: dict[str, list[Redaction]] = {}
    cleaned = []
    for script in collection.scripts:
        text, found = redact(script.text)
        if found:
            redactions[script.name] = found
        cleaned.append(
            Script(path=script.path, name=script.name, text=text, digest=script.digest, reason=script.reason)
        )
    if holdout_fraction > 0:
        # The gate's measurement stays quick: the holdout is capped in bytes (the capped-off
        # candidates train).
        train, holdout = holdout_split(cleaned, fraction=holdout_fraction, max_bytes=max_holdout_bytes)
    else:
        train, holdout = cleaned, []
    return PreparedData(
        collection=collection, train=sorted(train, key=lambda s: s.name), holdout=holdout, redactions=redactions
    )


def load_general_holdout(folder: Path | None, max_bytes: int) -> tuple[list[str], str | None]:
    """General bash for the forgetting check (see read_documents). Returns (texts, note when there
    is none)."""
    folder = folder or GENERAL_HOLDOUT_DIR
    if not folder.is_dir():
        return [], f"no general holdout at {folder} (it ships with the default model); the forgetting check is skipped"
    texts, note = read_documents(folder, max_bytes)
    return texts, (f"{note}; the forgetting check is skipped" if note else None)


def read_documents(folder: Path, max_bytes: int | None) -> tuple[list[str], str | None]:
    """Every file in `folder` is one document (a `.jsonl` file holds one {"text": ...} per line),
    up to max_bytes (None: all). Returns (texts, note when there are none)."""
    if not folder.is_dir():
        return [], f"no documents at {folder} (they ship with the default model)"
    texts, total = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if path.suffix == ".jsonl":
            docs = [json.loads(line).get("text", "") for line in raw.splitlines() if line.strip()]
        else:
            docs = [raw]
        for doc in docs:
            if not doc or (texts and max_bytes is not None and total + len(doc.encode()) > max_bytes):
                continue
            texts.append(doc)
            total += len(doc.encode())
    if not texts:
        return [], f"{folder} holds no documents"
    return texts, None


def general_gate_meta(loaded: LoadedModel, folder: Path | None = None) -> dict:
    """{"gate": {...}} with `loaded`'s bits per byte on the general holdout, for its meta.json:
    a checkpoint that carries it (the bundled model, say) spares every first round that
    measurement. Figures are reused only while the holdout texts match (by digest)."""
    texts, note = load_general_holdout(folder, MAX_GENERAL_BYTES)
    if note:
        raise TrainingError(note)
    bpb = holdout_bpb(loaded, texts)
    return {
        "gate": {"general_holdout_digest": texts_digest(texts), "general_bpb_after": bpb, "general_reference_bpb": bpb}
    }


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(hashlib.sha256(text.encode("utf-8")).digest())
    return h.hexdigest()[:16]


def bpb_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f} bpb"


def kb_text(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def describe_dry_run(prepared: PreparedData, base: str, general_note: str | None, general_docs: int) -> str:
    c = prepared.collection
    lines = ["dry run: nothing is trained, nothing is written"]
    lines.append(
        f"would train on {len(prepared.train)} scripts ({kb_text(sum(s.num_bytes for s in prepared.train))}) and measure on "
        f"{len(prepared.holdout)} held-out scripts ({kb_text(sum(s.num_bytes for s in prepared.holdout))})"
    )
    for script in prepared.train:
        lines.append(f"  train    {script.name}  ({kb_text(script.num_bytes)}, {script.reason})")
    for script in prepared.holdout:
        lines.append(f"  holdout  {script.name}  ({kb_text(script.num_bytes)}, {script.reason})")
    skipped = sum(c.skipped.values())
    lines.append(f"skipped {skipped} files" + (":" if skipped else ""))
    for reason, count in sorted(c.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        examples = ", ".join(c.examples.get(reason, []))
        lines.append(f"  {reason}: {count} (e.g. {examples})")
    lines.append(
        f"redacted {prepared.num_redactions} secrets (kinds and places; the values are never shown)"
        + (":" if prepared.num_redactions else "")
    )
    for name, found in sorted(prepared.redactions.items()):
        for redaction in found:
            lines.append(f"  {redaction.describe(name)}")
    lines.append(f"would start from: {base}")
    lines.append(
        f"general holdout: {general_docs} documents" if not general_note else f"general holdout: {general_note}"
    )
    return "\n".join(lines)


# -- measuring -----------------------------------------------------------------------------------


def holdout_bpb(loaded: LoadedModel, texts: list[str], files_equal: bool = False) -> float | None:
    """Bits per byte over `texts` (windows of the full block, not overlapping, so the gate's
    measurement stays cheap; before and after are measured the same way): byte-weighted (total
    bits / total bytes), or with `files_equal` the mean of each file's own figure, so every file
    counts the same however long it is."""
    if not texts:
        return None
    from .evaluate import evaluate_bpb

    was_training = loaded.model.training
    loaded.model.eval()
    try:
        result = evaluate_bpb(loaded, texts, stride=loaded.model.config.block_size)
        return float(result["mean_file_bpb" if files_equal else "bpb"])
    finally:
        loaded.model.train(was_training)


# What the project context gives (issue 16): the server puts chunks of the user's other scripts
# ahead of every prompt (model/context.py) from the first minute, before any training. Measured on
# at most this much of your holdout, in segments of CONTEXT_SEGMENT_LINES lines, each scored after
# up to CONTEXT_PREFIX_TOKENS tokens (a quarter of a smaller block) of the file before it, with the chosen chunks ahead or not.
MAX_CONTEXT_BYTES = 16 * 1024
CONTEXT_SEGMENT_LINES = 24
CONTEXT_PREFIX_TOKENS = 256


def context_gain(loaded: LoadedModel, holdout: list[Script], others: list[Script]) -> dict | None:
    """Bits per byte of (the first MAX_CONTEXT_BYTES of) `holdout` with and without chunks of
    `others` chosen for each segment as the server chooses them (the complete lines before it are
    the query); {"plain_bpb", "context_bpb", "segments", "with_chunks"}, None when there is nothing
    to measure. Both figures are scored the same way, so only the chunks differ."""
    import torch
    import torch.nn.functional as F

    from ..model.context import CONTEXT_SHARE, best_chunks, context_ids, file_chunks, query_text

    model, tok = loaded.model, loaded.tokenizer
    block = model.config.block_size
    prefix_tokens = min(CONTEXT_PREFIX_TOKENS, block // 4)
    room = block - block // CONTEXT_SHARE - prefix_tokens - 1  # a segment's tokens, with or without chunks
    candidates = [(s.name, chunk) for s in others for chunk in file_chunks(s.text)]
    if not candidates or not holdout:
        return None
    was_training = model.training
    model.eval()
    device = model.wte.weight.device
    bits = {"plain": 0.0, "context": 0.0}
    total_bytes = segments = with_chunks = 0
    try:
        with torch.inference_mode():
            for script in holdout:
                if total_bytes >= MAX_CONTEXT_BYTES:
                    break
                lines = script.text.splitlines(keepends=True)
                for start in range(0, len(lines), CONTEXT_SEGMENT_LINES):
                    prefix = "".join(lines[:start])
                    segment = "".join(lines[start : start + CONTEXT_SEGMENT_LINES])
                    if not segment.strip() or total_bytes >= MAX_CONTEXT_BYTES:
                        continue
                    prefix_ids = tok.encode(prefix)[-prefix_tokens:] if prefix else []
                    segment_ids = tok.encode(segment)[:room]
                    size = len(tok.decode_bytes(segment_ids))
                    chunks = [(path, text) for path, text, _ in best_chunks(query_text(prefix), candidates)]
                    ctx = context_ids(tok, chunks, block // CONTEXT_SHARE) if chunks else []
                    with_chunks += bool(ctx)
                    for which, ahead in (("plain", []), ("context", ctx)):
                        ids = [tok.eof_id, *ahead, *prefix_ids, *segment_ids]  # at most block + 1
                        x = torch.tensor(ids[:-1], device=device)[None]  # (1, T)
                        targets = torch.tensor(segment_ids, device=device)  # the segment's tokens only
                        logits = model(x)[0, -len(segment_ids) :].float()  # (S, V)
                        bits[which] += F.cross_entropy(logits, targets, reduction="sum").item() / math.log(2)
                    total_bytes += size
                    segments += 1
    finally:
        model.train(was_training)
    if not total_bytes:
        return None
    return {
        "plain_bpb": bits["plain"] / total_bytes,
        "context_bpb": bits["context"] / total_bytes,
        "segments": segments,
        "with_chunks": with_chunks,
    }
