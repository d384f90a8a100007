"""Read a built corpus directory back as documents, for the tokenizer and pre-training.

A corpus directory holds the output of `bashlsp.training.corpus.debian` (``manifest.jsonl`` and
``files/``) and/or of `bashlsp.training.corpus.tldr` (``tldr.jsonl``, ``tldr_pairs.jsonl``).
Either may be missing; a directory with neither is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...model.context import MAX_CHUNKS, MIN_SIMILARITY, chunk_offsets, word_hashes
from ...model.errors import TrainingError

SPLITS = ("train", "holdout")
MAX_GROUP_CHUNKS = 512  # neighbour chunks kept per source package, spread evenly over its files
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


# -- repo-level examples ---------------------------------------------------------------------------


@dataclass
class _Group:
    """The chunks of one source package's files, as arrays (see RepoContext)."""

    doc: np.ndarray  # (chunks,) the document each chunk comes from
    start: np.ndarray  # (chunks,) character offsets in that document
    end: np.ndarray
    sizes: np.ndarray  # (chunks,) distinct words
    hashes: np.ndarray  # word hashes of all chunks, concatenated
    owner: np.ndarray  # (len(hashes),) the chunk each hash belongs to


class RepoContext:
    """Neighbour chunks for repo-level training examples: for a document, the chunks of the
    other files of its source package most similar to the lines before a split point, chosen
    as the server chooses workspace chunks for a cursor (model/context.py: the same chunks,
    query, Jaccard similarity, threshold and count; `context_ids` writes them ahead of the
    example). Documents without a group (tldr pages) or alone in theirs get none.

    Memory: a package keeps at most MAX_GROUP_CHUNKS chunks (word hashes and offsets into the
    documents' texts, which it shares)."""

    def __init__(self, texts: Sequence[str], groups: Sequence[str | None], paths: Sequence[str]) -> None:
        if not len(texts) == len(groups) == len(paths):
            raise TrainingError("RepoContext needs one group and one path per text")
        self.texts, self.paths = texts, paths
        members: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            if group is not None:
                members.setdefault(group, []).append(i)
        self.group_of = np.full(len(texts), -1, dtype=np.int32)
        self._groups: list[_Group] = []
        for docs in members.values():
            if len(docs) < 2:
                continue
            spans = [(d, a, b) for d in docs for a, b in chunk_offsets(texts[d])]
            if len(spans) > MAX_GROUP_CHUNKS:
                spans = [spans[k * len(spans) // MAX_GROUP_CHUNKS] for k in range(MAX_GROUP_CHUNKS)]
            hashes = [word_hashes(texts[d][a:b]) for d, a, b in spans]
            sizes = np.array([len(h) for h in hashes], dtype=np.int32)
            doc, start, end = (np.array(column, dtype=np.int64) for column in zip(*spans))
            owner = np.repeat(np.arange(len(spans), dtype=np.int32), sizes)
            self._groups.append(_Group(doc, start, end, sizes, np.concatenate(hashes), owner))
            self.group_of[docs] = len(self._groups) - 1

    @classmethod
    def for_corpus(cls, docs: Sequence[CorpusDoc], texts: Sequence[str] | None = None) -> RepoContext:
        """Debian scripts grouped by package; tldr pages get no neighbours. `texts`: the documents'
        texts if the caller holds them already (the same order), else the docs' own."""
        groups = [d.name if d.source == "debian" else None for d in docs]
        return cls(texts if texts is not None else [d.text for d in docs], groups, [d.path.lstrip("/") for d in docs])

    def has_neighbours(self, i: int) -> bool:
        return self.group_of[i] >= 0

    def choose(self, i: int, query: str) -> list[tuple[str, str]]:
        """The (path, text) chunks of document i's neighbours for `query` (model.context.query_text
        of the text before the split point), most similar first."""
        g = int(self.group_of[i])
        query_hashes = word_hashes(query)
        if g < 0 or not len(query_hashes):
            return []
        group = self._groups[g]
        common = np.bincount(group.owner[np.isin(group.hashes, query_hashes)], minlength=len(group.sizes))
        similarity = common / (group.sizes + len(query_hashes) - common)
        similarity[group.doc == i] = 0.0  # a file is never context for itself
        best = np.argsort(-similarity, kind="stable")[:MAX_CHUNKS]
        return [
            (self.paths[group.doc[k]], self.texts[group.doc[k]][group.start[k] : group.end[k]])
            for k in best.tolist()
            if similarity[k] >= MIN_SIMILARITY
        ]
