"""Read a built corpus directory back as documents, for the tokenizer and pre-training.

A corpus directory holds the output of `bashlsp.training.corpus.debian` (``manifest.jsonl`` and
``files/``) and/or of `bashlsp.training.corpus.tldr` (``tldr.jsonl``, ``tldr_pairs.jsonl``).
Either may be missing; a directory with neither is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...model.errors import TrainingError

SPLITS = ("train", "holdout")
SOURCES = ("debian", "tldr")


@dataclass(frozen=True)
class CorpusDoc:
    """One training document.

    text: the document (a whole script, or a tldr page as `# description` / command pairs).
    source: 'debian' or 'tldr'.
    name: the Debian package or the tldr page it came from.
    split: 'train' or 'holdout'.
    path: where inside the source it was: the installed path of a script
        ('/usr/lib/git-core/git-sh-setup') or '<platform>/<page>' for tldr.
    """

    text: str
    source: str
    name: str
    split: str
    path: str


@dataclass(frozen=True)
class TldrPair:
    """A description → command example (for generate-from-comment evaluation and retrieval)."""

    description: str
    command: str
    template: str
    page: str
    platform: str
    split: str


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise TrainingError(f"{path}:{number}: not JSON ({error.msg})") from None
    return records


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise TrainingError(f"unknown split {split!r}: use one of {', '.join(SPLITS)} (or None for all)")


def load_corpus(
    directory: str | Path, split: str | None = "train", sources: tuple[str, ...] = SOURCES
) -> list[CorpusDoc]:
    """The documents of one split ('train', 'holdout', or None for both) from `directory`.

    Debian scripts come first in manifest order, then tldr pages in file order, so the result
    is the same on every call. `sources` picks 'debian' and/or 'tldr'. A script listed in the
    manifest whose file is missing or has another size raises TrainingError: a silently
    shrunken corpus would skew every number measured on it.
    """
    _check_split(split)
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise TrainingError(f"unknown corpus source(s): {', '.join(unknown)}")
    directory = Path(directory)
    manifest = directory / "manifest.jsonl"
    tldr = directory / "tldr.jsonl"
    if not manifest.is_file() and not tldr.is_file():
        raise TrainingError(f"{directory} holds no corpus (neither manifest.jsonl nor tldr.jsonl)")
    documents: list[CorpusDoc] = []
    if "debian" in sources and manifest.is_file():
        for record in _read_jsonl(manifest):
            if split is not None and record["split"] != split:
                continue
            file_path = directory / record.get("file", f"files/{record['sha256'][:2]}/{record['sha256']}.sh")
            try:
                data = file_path.read_bytes()
            except OSError as error:
                raise TrainingError(f"corpus file missing for {record['package']}:{record['path']}: {error}") from None
            if len(data) != record["bytes"]:
                raise TrainingError(
                    f"corpus file {file_path} has {len(data)} bytes, the manifest says {record['bytes']}"
                )
            documents.append(
                CorpusDoc(data.decode("utf-8"), "debian", record["package"], record["split"], record["path"])
            )
    if "tldr" in sources and tldr.is_file():
        for record in _read_jsonl(tldr):
            if split is not None and record["split"] != split:
                continue
            documents.append(
                CorpusDoc(
                    record["text"], "tldr", record["page"], record["split"], f"{record['platform']}/{record['page']}"
                )
            )
    return documents


def load_tldr_pairs(directory: str | Path, split: str | None = "holdout") -> list[TldrPair]:
    """The description → command pairs of one split ('holdout' by default: for evaluation)."""
    _check_split(split)
    path = Path(directory) / "tldr_pairs.jsonl"
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: build it with python -m bashlsp.training.corpus.tldr")
    return [
        TldrPair(
            record["description"],
            record["command"],
            record.get("template", record["command"]),
            record["page"],
            record.get("platform", ""),
            record["split"],
        )
        for record in _read_jsonl(path)
        if split is None or record["split"] == split
    ]
