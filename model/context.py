"""Repo-level context: chunks of a project's other files put ahead of the document's prompt.

The one place the server (which picks chunks from the workspace and from recently edited
buffers, server/workspace.py) and the trainer (which builds repo-level training examples from
the files of one source package, training/corpus/dataset.py) agree on how files are cut into
chunks, how a chunk is compared with the text at the cursor, and how chunks are written into the
token stream.

Format. Each chosen chunk is a small document of its own: a `# file: PATH` line, the chunk's
lines, then <|eof|>, as every document in the training stream ends. The document being completed
(plain text or a fill-in-the-middle prompt, model/fim.py) comes after the last chunk:

    <|eof|> # file: lib/common.sh⏎ CHUNK <|eof|> # file: bin/run.sh⏎ CHUNK <|eof|> <|fim_prefix|> ...

Why no new special token (StarCoder2 and Qwen2.5-Coder write <file_sep>/<repo_name> tokens
there): the shipped tokenizer and model, and every personal checkpoint made from them, stay
valid without resizing the embeddings; <|eof|> already means "a file ended here"; and a
`# file:` line is a shell comment, text the model reads as it reads any header comment. It costs
about 5 tokens more per chunk than one special token would.

Choice. The query is the complete lines just before the cursor line (not the line being typed,
so the choice does not change with every keystroke and the server's KV cache of the chunks
survives); each chunk scores the Jaccard similarity of its set of words with the query's
(RepoCoder's sparse retriever, llama.vim's ring buffer). Chunks are CHUNK_LINES lines, starting
every CHUNK_STRIDE lines.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

from .tokenizer import BashTokenizer

CHUNK_LINES = 24  # lines per chunk: ~150-250 tokens of shell (DESIGN: a 40-line chunk was ~250)
CHUNK_STRIDE = 12  # a new chunk starts every 12 lines (RepoCoder: windows of 20, stride 10)
MAX_CHUNK_CHARS = 2400  # a chunk of very long lines is cut at a line end (or hard, for one huge line)
QUERY_LINES = 12  # complete lines before the cursor line that choose the chunks
MIN_SIMILARITY = 0.15  # a chunk less similar than this is noise, not context
MAX_CHUNKS = 2  # chunks put ahead of one prompt
CONTEXT_SHARE = 3  # the chunks get at most 1/CONTEXT_SHARE of a prompt's (or a training sequence's) tokens
MIN_PARTIAL_TOKENS = 48  # a chunk cut to fit keeps at least this many tokens, or is left out
HEADER = "# file: "

# Words (names, numbers, options without their dashes) and runs of punctuation (`"$`, `;;`, `$(`):
# shell's vocabulary of variable names, commands and idioms.
_WORD = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def words(text: str) -> frozenset[str]:
    """The set of words and punctuation runs of `text` (what Jaccard similarity compares)."""
    return frozenset(_WORD.findall(text))


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def chunk_spans(line_count: int) -> list[tuple[int, int]]:
    """(first line, end line) of the chunks of a file of `line_count` lines: CHUNK_LINES lines
    every CHUNK_STRIDE lines, the last one ending at the file's end."""
    if line_count <= CHUNK_LINES:
        return [(0, line_count)] if line_count else []
    starts = list(range(0, line_count - CHUNK_LINES, CHUNK_STRIDE)) + [line_count - CHUNK_LINES]
    return [(start, start + CHUNK_LINES) for start in dict.fromkeys(starts)]


def chunk_text(lines: Sequence[str], start: int, end: int) -> str:
    """The text of lines[start:end] (lines with their line breaks), at most MAX_CHUNK_CHARS."""
    text = "".join(lines[start:end])
    return text[: _capped_end(text, 0, len(text))]


def _capped_end(text: str, start: int, end: int) -> int:
    """`end`, or an earlier line end so that text[start:end] has at most MAX_CHUNK_CHARS."""
    if end - start <= MAX_CHUNK_CHARS:
        return end
    cut = text.rfind("\n", start, start + MAX_CHUNK_CHARS)
    return cut + 1 if cut >= start else start + MAX_CHUNK_CHARS


def chunk_offsets(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the chunks of one file's text."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return [
        (starts[first], _capped_end(text, starts[first], starts[end])) for first, end in chunk_spans(len(starts) - 1)
    ]


def file_chunks(text: str) -> list[str]:
    """The chunks of one file's text."""
    return [text[start:end] for start, end in chunk_offsets(text)]


def word_hash(word: str) -> int:
    """A word's hash, the same in every process (int64): the workspace index is built in a
    child process and queried in the server, and Python's string hash differs between processes
    (with it, the server's index matched no query)."""
    data = word.encode("utf-8", "surrogatepass")
    return (zlib.crc32(data) << 31) ^ zlib.adler32(data)


def hashes_of(distinct_words: Iterable[str]) -> np.ndarray:
    """The sorted `word_hash`es (int64) of words given once each: how the indexes hold `words`,
    so that many chunks are compared with a query in a few numpy operations."""
    return np.unique(np.fromiter(map(word_hash, distinct_words), np.int64))


def word_hashes(text: str) -> np.ndarray:
    """`hashes_of` the distinct words of `text`."""
    return hashes_of(set(_WORD.findall(text)))


def query_text(prefix: str) -> str:
    """The text that chooses the chunks for a cursor after `prefix`: the QUERY_LINES complete
    lines before the cursor line."""
    end = prefix.rfind("\n")
    if end < 0:
        return ""
    start = end
    for _ in range(QUERY_LINES):
        start = prefix.rfind("\n", 0, start)
        if start < 0:
            break
    return prefix[start + 1 : end + 1]


def best_chunks(
    query: str, candidates: Iterable[tuple[str, str]], limit: int = MAX_CHUNKS
) -> list[tuple[str, str, float]]:
    """The `limit` (path, chunk, similarity) most similar to `query`, most similar first, at
    least MIN_SIMILARITY. A plain scan: the server's index computes the same scores faster."""
    query_words = words(query)
    scored = []
    for path, text in candidates:
        score = jaccard(query_words, words(text))
        if score >= MIN_SIMILARITY:
            scored.append((score, path, text))
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the candidates' order
    return [(path, text, score) for score, path, text in scored[:limit]]


def display_path(path: str) -> str:
    """A path as it goes into a `# file:` line: one line, no control characters."""
    return _UNPRINTABLE.sub("?", path) or "?"


def chunk_document(path: str, text: str) -> str:
    """One chunk as a document of the token stream (without its closing <|eof|>)."""
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{HEADER}{display_path(path)}\n{text}"


def chunk_ids(tok: BashTokenizer, path: str, text: str) -> list[int]:
    """The token ids of one chunk: its document, then <|eof|>."""
    return [*tok.encode(chunk_document(path, text)), tok.eof_id]


def context_ids(tok: BashTokenizer, chunks: Sequence[tuple[str, str]], max_tokens: int | None = None) -> list[int]:
    """The ids that go ahead of a document's ids (a prompt or a training example) for the
    chosen (path, text) chunks, given most similar first. They are written in reverse, so the
    most similar sits nearest the document. With `max_tokens`, the least similar chunks are
    left out first; a chunk that only partly fits keeps its first lines (and its <|eof|>) if at
    least MIN_PARTIAL_TOKENS fit. The server puts <|eof|> before them (the end of the document
    before, as in the training stream)."""
    kept: list[list[int]] = []
    room = max_tokens if max_tokens is not None else float("inf")
    for path, text in chunks:
        ids = chunk_ids(tok, path, text)
        if len(ids) > room:
            if room >= MIN_PARTIAL_TOKENS:
                kept.append([*ids[: int(room) - 1], tok.eof_id])
            break
        kept.append(ids)
        room -= len(ids)
    return [token for ids in reversed(kept) for token in ids]
