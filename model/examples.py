"""Command examples beside the model: a SQLite FTS5 index of `# description` -> command pairs.

A 5 M-parameter model cannot hold the commands of a whole system, so the knowledge sits in an
index the server and the evaluation search (the trainer builds it: `training/corpus/examples.py`
for the shipped one from tldr, cheat, eg and man-page EXAMPLES; `training/personal.py` for the
user's own comment -> code blocks). One schema, written and read here:

- ``meta(key, value)``: ``format`` (FORMAT), ``kind`` ("commands" or "personal"), ``sources``
  (JSON: source -> {licence, credit, entries}), ``entries``, ``created``;
- ``examples(id, description, command, source, page, licence)``;
- ``pages(source, page, summary, licence)``: every page of the index, with what its program is
  for when known (tldr summary, man NAME line), also for pages with no example in the index (a
  program known by its description only);
- ``examples_fts``: an external-content FTS5 table (content: the view ``examples_text``) over
  description, command, page and the page's summary, tokenised with Porter stemming (``files``
  finds ``file``), ranked with bm25;
- ``pages_fts`` (format 2): a contentless FTS5 table, one row per page (rowid: the page's), over
  the page name, its summary and all its examples' descriptions: which program a comment is about.

A search ranks examples by their own bm25 plus PAGE_WEIGHT times their page's (a comment about
a scrub finds the btrfs-scrub page through all its descriptions, not one); a page with no
example whose page score is the best offers its program itself (`utility_command`), with its
summary as the description. Of the best example's utility, the example most like the others
(`consensus_first`) comes first.

The index is opened read-only (``mode=ro``) and validated before use (schema, format, a probe
query); any problem is an `ExampleIndexError` naming the file, and callers keep working without
the index. Queries are built from the words of a comment only (each quoted), so no text from a
document is ever parsed as FTS5 query syntax.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ExampleIndexError

FORMAT = 2
READABLE_FORMATS = ("1", "2")  # format 1 (no pages_fts) is searched by example bm25 alone
INDEX_FILE = "examples.sqlite"
# The shipped index (package data, like the bundled weights).
BUNDLED_INDEX = Path(__file__).resolve().parent / "data" / INDEX_FILE
PERSONAL_INDEX = Path("examples") / "personal.sqlite"  # inside the checkpoint store
INDEX_ENV = "BASHLSP_EXAMPLE_INDEX"

# A query uses at most this many distinct words (a 100 KB comment must not become a 100 KB
# query: bm25 over a few dozen terms already picks the neighbours).
MAX_QUERY_WORDS = 32
MAX_QUERY_CHARS = 4_000
# bm25 column weights: description, command, page, page summary. Words of a comment mostly match
# a description; the page (utility name) is a strong hint when the comment names it; the summary
# says what a program is for when the description does not name it (measured on the held-out
# set: see README).
BM25_WEIGHTS = (1.0, 0.4, 2.0, 1.0)
# The page search: bm25 weights of page name, summary, descriptions; how many examples and pages
# a search weighs before it keeps `limit`; the page score's weight in an example's score; the
# weight of the page score of a page with no example (its program offered alone). Chosen on a
# dev split of the train pages (docs/benchmarks.md, Command examples), not on the held-out set.
PAGE_BM25_WEIGHTS = (2.0, 1.0, 1.0)
CANDIDATES = 30
PAGE_WEIGHT = 2.0
UTILITY_WEIGHT = 3.0
# Which of the best utility's examples comes first: the one with the highest expected NLC2CMD
# score against the others (minimum Bayes risk), each weighted exp(-(score - best) / SCALE),
# over that utility's examples among the CANDIDATES best. bm25 says little about which flags a
# comment wants; the command most like its neighbours is the safest (chosen on the dev split
# like the weights above; weighing 200 examples instead of 30 gained nothing there).
CONSENSUS_POOL = 30
CONSENSUS_SCALE = 30.0

# Words that carry no meaning for picking a command: leaving them out keeps the OR query short.
STOPWORDS = frozenset(
    "a an and any are as at be by can do for from given how i in into is it its me my of on or"
    " out so that the their them then there these this those to up using via was we what when where"
    " which while who will with without you your".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
# A nano model's context is 1,024 tokens, of which the engine keeps about 768 for the prompt:
# 2,000 characters of script (~600 tokens) plus three examples fit.
FEW_SHOT_DOCUMENT_CHARS = 2_000
# Comment -> code blocks taken from a script (the personal and workspace indexes).
MAX_PAIRS_PER_SCRIPT = 200
MAX_DESCRIPTION_CHARS = 200
MAX_COMMAND_LINES = 8
MAX_LINE_CHARS = 200  # a longer line is cut: an entry stays under ~2 KB
_DIRECTIVE = re.compile(r"^(shellcheck\b|-\*-|(vim?|ex):|(TODO|FIXME|XXX)\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Example:
    description: str
    command: str
    source: str  # "tldr", "cheat", "eg", "man", "personal", "workspace"
    page: str  # the page or file it comes from ("find", "tar.1", "backup.sh")
    licence: str
    score: float = 0.0  # bm25 (lower is better); 0 for examples not from a search

    def label(self) -> str:
        """'tldr find': where the example comes from, for an editor's list."""
        return f"{self.source} {self.page}".strip()


@dataclass(frozen=True)
class Candidate:
    """A search result before the final order: the example (its score: own bm25 plus its
    page's weighted) with the parts of the score and the page summary the reranker reads."""

    example: Example
    own: float  # the example's bm25 (0 for a program offered by its page alone)
    page: float  # its page's bm25 in the page search (0 in an index without one)
    summary: str


def shipped_index_path() -> Path | None:
    """The command-example index the server searches: $BASHLSP_EXAMPLE_INDEX when set (empty:
    none), else the one shipped in the package."""
    value = os.environ.get(INDEX_ENV)
    if value is None:
        return BUNDLED_INDEX
    return Path(value).expanduser() if value else None


def personal_index_path(store_root: Path) -> Path:
    """Where `bashlsp-train` publishes the user's own examples in a checkpoint store."""
    return Path(store_root) / PERSONAL_INDEX


def query_words(text: str) -> list[str]:
    """The distinct lower-case words of `text` worth searching for, in order, at most
    MAX_QUERY_WORDS (stopwords and one-character words left out; any script's letters count)."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text[:MAX_QUERY_CHARS]):
        word = match.group(0).lower()
        if len(word) > 1 and word not in STOPWORDS and not word.isdigit() and word not in seen:
            seen[word] = None
            if len(seen) >= MAX_QUERY_WORDS:
                break
    return list(seen)


def match_expression(words: Iterable[str]) -> str:
    """An FTS5 MATCH expression: any of the words, each a quoted string (no operators)."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def few_shot_block(examples: Iterable[Example]) -> str:
    """Examples as the model reads them ahead of a document: ``# description`` then the command,
    pairs separated by blank lines, ending with a blank line."""
    pairs = [f"# {' '.join(e.description.split())}\n{e.command.rstrip()}" for e in examples]
    return "\n\n".join(pairs) + "\n\n" if pairs else ""


def comment_code_pairs(text: str, source: str, page: str, limit: int = MAX_PAIRS_PER_SCRIPT) -> list[Example]:
    """The comment -> code blocks of a script, as a writer of it documented them: a run of at
    most 3 ``#`` lines (joined; not the shebang, not a shellcheck/vim directive) directly
    followed by code, up to the next blank or comment line (at most MAX_COMMAND_LINES lines of
    at most MAX_LINE_CHARS characters).
    The caller redacts secrets first. At most `limit` pairs."""
    pairs: list[Example] = []
    comment: list[str] = []
    code: list[str] = []

    def flush() -> None:
        description = " ".join(" ".join(comment).split())
        if code and 3 <= len(description) <= MAX_DESCRIPTION_CHARS and not _DIRECTIVE.match(description):
            pairs.append(Example(description, "\n".join(code), source, page, "the user's own"))
        code.clear()

    for line in text.split("\n"):
        if len(pairs) >= limit:
            break
        stripped = line.strip()
        if not stripped or stripped.startswith("#!"):
            flush()
            comment = []
        elif stripped.startswith("#"):
            if code:  # a comment after code starts the next block
                flush()
                comment = []
            comment.append(stripped.lstrip("#").strip())
        elif comment and len(comment) <= 3 and len(code) < MAX_COMMAND_LINES:
            code.append(line.rstrip()[:MAX_LINE_CHARS])
        else:  # code without a comment above it, or past the block's bound
            flush()
            comment = []
    flush()
    return pairs[:limit]


def script_start(examples: Sequence[Example], comment: str = "") -> str:
    """How a generated script starts when examples were retrieved ('' without examples): the
    best example's first line adapted to `comment` (`adapt_command`) and a newline, so the model
    writes what follows it. The nano model writing the arguments or flags itself scored lower
    than the example's own (docs/benchmarks.md, Command examples). A first line that goes on
    ('\\' at its end) is cut after its utility and the flags right after it, and a space
    ('sudo tar -czf ' for 'sudo tar -czf a.tgz \\'): the model writes the rest."""
    if not examples:
        return ""
    line = examples[0].command.split("\n", 1)[0]
    if not line.rstrip().endswith("\\"):
        return adapt_command(line, comment).rstrip() + "\n"
    words = line.rstrip().removesuffix("\\").split()
    taken = 0
    while taken < len(words) and _before_utility(words[taken]):
        taken += 1
    if taken == len(words):
        return ""
    taken += 1  # the utility
    while taken < len(words) and words[taken].startswith("-") and words[taken] != "--":
        taken += 1
    return " ".join(words[:taken]) + " "


# A URL, or a path a comment names: /etc, ~/notes, ./build (not a word's inner slash: and/or).
_COMMENT_PATH = re.compile(r"https?://[^\s\"'<>]+|(?<![\w.~/-])(?:~|\.{1,2})?/[\w.@%+~/-]*[\w/]")


def adapt_command(command: str, comment: str) -> str:
    """`command` with the paths and URLs a comment names in place of its own, in order: the
    comment's URLs replace the command's URL arguments, its paths the command's other
    arguments that hold a '/' ('od -c path/to/file' for 'read /dev/midi1' -> 'od -c
    /dev/midi1'). Arguments with flags or variables are kept; so is a command without such
    arguments."""
    named = [match.group(0).rstrip(".,;:") for match in _COMMENT_PATH.finditer(comment[:MAX_QUERY_CHARS])]
    urls = [path for path in named if "://" in path]
    paths = [path for path in named if "://" not in path]
    words = command.split(" ")
    for i, word in enumerate(words[1:], start=1):
        bare = word.strip("'\"")
        if not bare or bare.startswith("-") or "/" not in bare or "$" in bare:
            continue
        queue = urls if "://" in bare else paths
        if queue:
            words[i] = word.replace(bare, queue.pop(0))
    return " ".join(words)


def uses_examples(meta: dict) -> bool:
    """Whether a checkpoint was trained on few-shot example prompts (its meta.json lists
    "examples" in `prompt_formats`). Only such a model gets examples ahead of the document: the
    bundled model scores the same with and without them, and writes scripts that fail `bash -n`
    more often with them (docs/benchmarks.md, Command examples)."""
    return "examples" in (meta.get("prompt_formats") or ())


def few_shot_prompt(examples: Sequence[Example], document_prefix: str) -> str:
    """The prompt for generating below a comment: the examples ahead of the document. With
    examples, the document is cut to its last FEW_SHOT_DOCUMENT_CHARS (at a line start) so the
    engine's left-side window, which keeps the end of a long prompt, keeps the examples too."""
    if not examples:
        return document_prefix
    if len(document_prefix) > FEW_SHOT_DOCUMENT_CHARS:
        tail = document_prefix[-FEW_SHOT_DOCUMENT_CHARS:]
        newline = tail.find("\n")
        document_prefix = tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail
    return few_shot_block(examples) + document_prefix


_SEPARATORS = {"|", "||", "&&", ";", "&", "|&", ";;"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _before_utility(word: str) -> bool:
    """Whether a command may start with `word` before its utility: a NAME=value assignment or sudo."""
    return word == "sudo" or _ASSIGNMENT.match(word) is not None


def command_words(command: str) -> list[str]:
    """Shell words of a command, operators as their own words; a command shlex cannot split
    (an open quote) is split at whitespace."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = ""
        return list(lexer)
    except ValueError:
        return command.split()


def utilities_and_flags(command: str) -> list[tuple[str, frozenset[str]]]:
    """(utility, flags) of each segment of `command`, in order: segments split at ``|``, ``;``,
    ``&&``, ``||``, ``&``; a segment's utility is its first word that is neither a
    ``NAME=value`` assignment nor ``sudo`` (its file name: ``/usr/bin/find`` is ``find``); its
    flags are the words starting with ``-`` (``--opt=value`` counts as ``--opt``)."""
    segments: list[list[str]] = [[]]
    for word in command_words(" ".join(command.split("\\\n"))):
        if word in _SEPARATORS or word == "\n":
            segments.append([])
        else:
            segments[-1].append(word)
    parsed = []
    for words in segments:
        rest = list(words)
        while rest and _before_utility(rest[0]):
            rest.pop(0)
        if not rest:
            continue
        flags = frozenset(w.split("=", 1)[0] for w in rest[1:] if w.startswith("-") and len(w) > 1 and w != "--")
        parsed.append((rest[0].rsplit("/", 1)[-1], flags))
    return parsed


def flag_score(predicted: frozenset[str], reference: frozenset[str]) -> float:
    if not predicted and not reference:
        return 1.0
    return (2 * len(predicted & reference) - len(predicted | reference)) / max(len(predicted), len(reference))


def parsed_nlc2cmd(answer: list[tuple[str, frozenset[str]]], truth: list[tuple[str, frozenset[str]]]) -> float:
    """`nlc2cmd_score` of two commands already parsed by `utilities_and_flags`."""
    total = max(len(answer), len(truth))
    if total == 0 or not answer:
        return -1.0
    score = 0.0
    for i in range(total):
        if i < len(answer) and i < len(truth) and answer[i][0] == truth[i][0]:
            score += (1 + flag_score(answer[i][1], truth[i][1])) / 2
        else:
            score -= 1
    return score / total


def nlc2cmd_score(predicted: str, reference: str) -> float:
    """The simplified NLC2CMD score of one answer, in [-1, 1] (training/eval_commands.py's
    docstring): utilities aligned by position, -1 for a wrong or missing one, else half of one
    plus the flags' overlap score."""
    return parsed_nlc2cmd(utilities_and_flags(predicted), utilities_and_flags(reference))


def first_utility(command: str) -> str:
    """The utility of a command's first segment ('' for none)."""
    parsed = utilities_and_flags(command)
    return parsed[0][0] if parsed else ""


_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE examples(
    id INTEGER PRIMARY KEY, description TEXT NOT NULL, command TEXT NOT NULL,
    source TEXT NOT NULL, page TEXT NOT NULL, licence TEXT NOT NULL);
CREATE TABLE pages(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, page TEXT NOT NULL, summary TEXT NOT NULL,
    licence TEXT NOT NULL, command TEXT NOT NULL, entries INTEGER NOT NULL, UNIQUE (source, page));
CREATE VIEW examples_text AS
    SELECT e.id AS id, e.description, e.command, e.page, coalesce(p.summary, '') AS summary
    FROM examples e LEFT JOIN pages p ON p.source = e.source AND p.page = e.page;
CREATE VIRTUAL TABLE examples_fts USING fts5(
    description, command, page, summary, content='examples_text', content_rowid='id',
    tokenize='porter unicode61');
CREATE VIRTUAL TABLE pages_fts USING fts5(page, summary, descriptions, content='', tokenize='porter unicode61');
"""
_MAN_SECTION = re.compile(r"\.\d\w*$")


def page_name(page: str) -> str:
    """'find' for the pages find (tldr, cheat, eg) and find.1 (man)."""
    return _MAN_SECTION.sub("", page)


def utility_command(source: str, page: str, known: set[str], commands: Sequence[str] = ()) -> str:
    """The command a page is about: its name (a man page names a program: 'ansible-config.1' ->
    'ansible-config'), or a tldr sub-command page's program and sub-command. Which one its own
    examples say: 'git-push' whose examples run 'git push ...' -> 'git push', 'apt-add-repository'
    whose examples run 'apt-add-repository ...' stays whole (a start that is not the name, as
    'dd' on losetup.8, is another program the example uses). A page without such examples: the
    name, with a tldr page's first hyphen a space when the part before it is a page too."""
    name = page_name(page)
    starts: dict[str, int] = {}
    for command in commands:
        words = command_words(command.split("\n", 1)[0])
        while len(words) > 1 and words[0] != name and _before_utility(words[0]):
            words.pop(0)
        if words and words[0].rsplit("/", 1)[-1] == name:
            starts[name] = starts.get(name, 0) + 1
        elif len(words) > 1 and f"{words[0]}-{words[1]}" == name:
            starts[f"{words[0]} {words[1]}"] = starts.get(f"{words[0]} {words[1]}", 0) + 1
    if starts:
        return max(starts, key=lambda start: (starts[start], start == name))
    head, dash, rest = name.partition("-")
    return f"{head} {rest}" if source == "tldr" and dash and head in known and rest else name


def _fill(
    connection: sqlite3.Connection,
    entries: Iterable[Example],
    sources: dict[str, dict],
    kind: str,
    summaries: dict[tuple[str, str], str] | None = None,
    page_licences: dict[tuple[str, str], str] | None = None,
) -> int:
    connection.executescript(_SCHEMA)
    counts: dict[str, int] = {}
    rows = []
    pages: dict[tuple[str, str], list[Example]] = {key: [] for key in sorted(summaries or {})}
    for entry in entries:
        counts[entry.source] = counts.get(entry.source, 0) + 1
        rows.append((entry.description, entry.command, entry.source, entry.page, entry.licence))
        pages.setdefault((entry.source, entry.page), []).append(entry)
    connection.executemany(
        "INSERT INTO examples(description, command, source, page, licence) VALUES (?, ?, ?, ?, ?)", rows
    )
    known = {page_name(page) for source, page in pages if source == "tldr"}
    page_rows = []
    for (source, page), found in pages.items():
        summary = (summaries or {}).get((source, page), "")
        licence = (page_licences or {}).get((source, page)) or (
            found[0].licence if found else sources.get(source, {}).get("licence", "")
        )
        descriptions = " ".join(entry.description for entry in found)
        page_rows.append(
            (
                source,
                page,
                summary,
                licence,
                utility_command(source, page, known, [e.command for e in found]),
                len(found),
                descriptions,
            )
        )
    connection.executemany(
        "INSERT INTO pages(source, page, summary, licence, command, entries) VALUES (?, ?, ?, ?, ?, ?)",
        [row[:6] for row in page_rows],
    )
    connection.executemany(
        "INSERT INTO pages_fts(rowid, page, summary, descriptions) VALUES (?, ?, ?, ?)",
        [(number, row[1], row[2], row[6]) for number, row in enumerate(page_rows, start=1)],
    )
    connection.execute("INSERT INTO examples_fts(examples_fts) VALUES ('rebuild')")
    for table in ("examples_fts", "pages_fts"):
        connection.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
    described = {name: {**sources.get(name, {}), "entries": count} for name, count in sorted(counts.items())}
    meta = {
        "format": str(FORMAT),
        "kind": kind,
        "entries": str(len(rows)),
        "sources": json.dumps(described, ensure_ascii=False, sort_keys=True),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    connection.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(meta.items()))
    connection.commit()
    return len(rows)


def write_index(
    path: Path,
    entries: Iterable[Example],
    sources: dict[str, dict],
    kind: str = "commands",
    summaries: dict[tuple[str, str], str] | None = None,
    page_licences: dict[tuple[str, str], str] | None = None,
) -> int:
    """Write a new index at `path` atomically (a temporary file beside it, fsynced, then
    os.replace), so a reader never opens half an index. `sources`: source -> {licence, credit};
    entry counts are added. `summaries`: (source, page) -> what the page's program is for (a
    tldr page's summary, a man page's NAME line), searched with each of the page's examples and
    as the page's own; a page with a summary and no example is a program known by its description.
    `page_licences`: the licence of such a page's summary (default: its examples', else its
    source's). Returns the number of entries written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        connection = sqlite3.connect(tmp)
        try:
            written = _fill(connection, entries, sources, kind, summaries, page_licences)
            connection.execute("VACUUM")
        finally:
            connection.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


class ExampleIndex:
    """A read-only, validated example index. Safe to share between threads (one connection
    behind a lock: a search takes well under a millisecond to a few milliseconds)."""

    def __init__(self, path: Path, connection: sqlite3.Connection | None = None) -> None:
        self.path = Path(path)
        if connection is not None:
            self._connection = connection
        elif not self.path.is_file():
            raise ExampleIndexError(f"example index {self.path} does not exist")
        else:
            try:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            except sqlite3.Error as exc:
                raise ExampleIndexError(f"cannot open example index {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        try:
            self.meta = dict(self._connection.execute("SELECT key, value FROM meta"))
            if self.meta.get("format") not in READABLE_FORMATS:
                raise ExampleIndexError(
                    f"example index {self.path} has format {self.meta.get('format')!r}, this bashlsp reads"
                    f" {' and '.join(READABLE_FORMATS)}"
                )
            self.has_pages = self.meta["format"] != "1"
            self.sources: dict[str, dict] = json.loads(self.meta.get("sources", "{}"))
            (self.entries,) = self._connection.execute("SELECT count(*) FROM examples").fetchone()
            # A probe through the full-text index: a damaged FTS table fails here, not mid-request.
            for table in ("examples_fts", "pages_fts") if self.has_pages else ("examples_fts",):
                self._connection.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH '\"file\"' LIMIT 1").fetchall()
        except ExampleIndexError:
            self._connection.close()
            raise
        except (sqlite3.Error, ValueError) as exc:  # not a database, missing tables, bad JSON
            self._connection.close()
            raise ExampleIndexError(f"example index {self.path} is corrupt or not an example index: {exc}") from exc
        # The reranker trained for this index, when one lies beside it; a bad one is left out
        # (with a warning for the caller to pass on): the search order is then bm25's.
        self.reranker: Reranker | None = None
        self.warning = ""
        weights = self.path.with_name(RERANK_FILE)
        if connection is None and weights.is_file():
            try:
                self.reranker = Reranker.read(weights)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.warning = f"example reranker {weights} is not usable ({exc}); searching without it"

    @classmethod
    def in_memory(cls, entries: Iterable[Example], name: str, kind: str = "workspace") -> ExampleIndex:
        """An index held in memory (the open workspace documents' examples), searched like a file's."""
        connection = sqlite3.connect(":memory:", check_same_thread=False)
        _fill(connection, entries, {}, kind)
        return cls(Path(name), connection)

    def candidates(self, text: str, wanted: int = CANDIDATES) -> list[Candidate]:
        """The best `wanted` examples for the words of `text` by bm25 alone (an example's own
        plus PAGE_WEIGHT times its page's; a page with no example offers its program), best
        first, with the scores and page summary the reranker reads; [] for no searchable word."""
        words = query_words(text)
        if not words or wanted < 1:
            return []
        match = match_expression(words)
        examples_sql = (
            "SELECT e.description, e.command, e.source, e.page, e.licence, bm25(examples_fts, ?, ?, ?, ?) AS rank,"
            " coalesce(p.summary, '')"
            " FROM examples_fts JOIN examples e ON e.id = examples_fts.rowid"
            " LEFT JOIN pages p ON p.source = e.source AND p.page = e.page"
            " WHERE examples_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        if not self.has_pages:
            examples_sql = examples_sql.replace(", coalesce(p.summary, '')", ", ''").replace(
                " LEFT JOIN pages p ON p.source = e.source AND p.page = e.page", ""
            )
        pages_sql = (
            "SELECT p.source, p.page, p.summary, p.licence, p.command, p.entries, bm25(pages_fts, ?, ?, ?) AS rank"
            " FROM pages_fts JOIN pages p ON p.id = pages_fts.rowid"
            " WHERE pages_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        try:
            with self._lock:
                rows = self._connection.execute(examples_sql, (*BM25_WEIGHTS, match, wanted)).fetchall()
                pages = (
                    self._connection.execute(pages_sql, (*PAGE_BM25_WEIGHTS, match, CANDIDATES)).fetchall()
                    if self.has_pages
                    else []
                )
        except sqlite3.Error as exc:
            raise ExampleIndexError(f"search in example index {self.path} failed: {exc}") from exc
        if not pages:
            return [Candidate(Example(*row[:6]), row[5], 0.0, row[6]) for row in rows]
        page_score = {(source, page): rank for source, page, *_, rank in pages}
        weakest = max(page_score.values())  # a page past the CANDIDATES best counts as the weakest of them
        found = []
        for *fields, rank, summary in rows:
            page = page_score.get((fields[2], fields[3]), weakest)
            found.append(Candidate(Example(*fields, score=rank + PAGE_WEIGHT * page), rank, page, summary))
        found += [
            Candidate(Example(summary, command, source, page, licence, UTILITY_WEIGHT * rank), 0.0, rank, summary)
            for source, page, summary, licence, command, entries, rank in pages
            if entries == 0 and summary
        ]
        found.sort(key=lambda c: c.example.score)
        return found

    def search(self, text: str, limit: int = 5) -> list[Example]:
        """The `limit` best examples for the words of `text`, best first (score: lower is
        better; see the module docstring); [] when `text` has no searchable word. With a
        reranker beside the index, its order over its pool; else `consensus_first`."""
        if limit < 1:
            return []
        reranker = self.reranker
        found = self.candidates(text, max(limit, CANDIDATES, reranker.pool if reranker else 0))
        if reranker is not None and len(found) > 1:
            return reranker.rerank(text, found)[:limit]
        return consensus_first([c.example for c in found])[:limit]

    def page_summaries(self) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
        """(summaries, licences) of the index's pages that have a summary, keyed by (source, page):
        what `write_index` takes, so an index can be rewritten with a part of its entries."""
        summaries, licences = {}, {}
        if self.has_pages:
            with self._lock:
                for source, page, summary, licence in self._connection.execute(
                    "SELECT source, page, summary, licence FROM pages WHERE summary != '' ORDER BY id"
                ):
                    summaries[(source, page)] = summary
                    licences[(source, page)] = licence
        return summaries, licences

    def all_examples(self) -> list[Example]:
        """Every entry, in the order written (for building training documents from the index)."""
        sql = "SELECT description, command, source, page, licence FROM examples ORDER BY id"
        with self._lock:
            return [Example(*row) for row in self._connection.execute(sql)]

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def consensus_first(ranked: list[Example]) -> list[Example]:
    """`ranked` (best first) with the best utility's most typical example first: among the
    first CONSENSUS_POOL examples whose utility is the best example's, the one whose expected
    NLC2CMD score against them (weighted by their scores) is highest. It takes the best score,
    so merging with other indexes keeps it first."""
    if len(ranked) < 2:
        return ranked
    utility = first_utility(ranked[0].command)
    pool: list[tuple[Example, list]] = []
    for example in ranked:
        if utility not in example.command:  # most are another utility's: skip shlex for them
            continue
        parsed = utilities_and_flags(example.command)
        if parsed and parsed[0][0] == utility:
            pool.append((example, parsed))
            if len(pool) >= CONSENSUS_POOL:
                break
    best = ranked[0].score
    weights = [math.exp(-(example.score - best) / CONSENSUS_SCALE) for example, _ in pool]

    def expected(parsed: list) -> float:
        return sum(weight * parsed_nlc2cmd(parsed, other) for weight, (_, other) in zip(weights, pool))

    chosen = max(pool, key=lambda item: expected(item[1]))[0] if pool else ranked[0]
    return [replace(chosen, score=best)] + [example for example in ranked if example is not chosen]


RERANK_FILE = "examples_rerank.json"  # beside an index: the reranker's weights for it
RERANK_FORMAT = 1
_FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
_SUFFIXES = ("ing", "es", "ed", "s")


def _stem(word: str) -> str:
    """A crude stem ('files' and 'file', 'listing' and 'list' meet); enough to compare words."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in (m.group(0).lower() for m in _WORD.finditer(text[:MAX_QUERY_CHARS])) if len(w) > 1}


# What the reranker reads of a candidate for a comment, in this order (`rerank_features`).
RERANK_FEATURES = (
    "score_ratio",  # its search score / the best candidate's (both negative: 1 for the best)
    "log_rank",  # log(1 + its place in the search order)
    "own_ratio",  # its own bm25 / the best own bm25 among the candidates
    "page_ratio",  # its page's bm25 / the best page bm25
    "description_recall",  # share of the comment's words in its description
    "description_precision",  # share of its description's words in the comment
    "summary_recall",  # share of the comment's words in its page summary
    "command_recall",  # share of the comment's words in its command (file names, sub-commands)
    "names_page",  # the comment names its page (a part of the page name longer than 2 letters)
    "names_utility",  # the comment names its first utility
    "flags_named",  # share of the flags written in the comment (-type, --all) that its command has
    "utility_share",  # weight of the candidates with its utility / all (weights exp(-(s - best) / 30))
    "page_share",  # the same for its page
    "consensus",  # its expected NLC2CMD score against the candidates of its utility (consensus_first's)
    "segments",  # its command's segments (|, ;, &&), at most 3, / 3
    "flags",  # its first segment's flags, at most 5, / 5
    "page_only",  # a program offered by its page summary alone
    "source_tldr",
    "source_cheat",
    "source_eg",
    "source_man",
)


def rerank_features(text: str, candidates: Sequence[Candidate]) -> list[list[float]]:
    """One row of RERANK_FEATURES a candidate (search order, best first)."""
    words = _stems(text)
    asked = max(1, len(words))
    raw = {m.group(0).lower() for m in _WORD.finditer(text[:MAX_QUERY_CHARS])}
    named_flags = set(_FLAG.findall(text[:MAX_QUERY_CHARS]))
    best = candidates[0].example.score or -1.0
    best_own = min((c.own for c in candidates), default=0.0) or -1.0
    best_page = min((c.page for c in candidates), default=0.0) or -1.0
    parsed = [utilities_and_flags(c.example.command) for c in candidates]
    utilities = [found[0][0] if found else "" for found in parsed]
    weights = [math.exp(-(c.example.score - best) / CONSENSUS_SCALE) for c in candidates]
    total = sum(weights)
    by_utility: dict[str, float] = {}
    by_page: dict[tuple[str, str], float] = {}
    members: dict[str, list[int]] = {}
    for i, (c, utility, weight) in enumerate(zip(candidates, utilities, weights)):
        by_utility[utility] = by_utility.get(utility, 0.0) + weight
        key = (c.example.source, c.example.page)
        by_page[key] = by_page.get(key, 0.0) + weight
        if len(members.setdefault(utility, [])) < CONSENSUS_POOL:
            members[utility].append(i)
    rows = []
    for i, c in enumerate(candidates):
        e = c.example
        description = _stems(e.description)
        command_flags = {flag for _, flags in parsed[i] for flag in flags}
        name_parts = {part for part in re.split(r"[^a-z0-9]+", page_name(e.page).lower()) if len(part) > 2}
        same = members.get(utilities[i], [])
        mass = sum(weights[j] for j in same) or 1.0
        consensus = sum(weights[j] * parsed_nlc2cmd(parsed[i], parsed[j]) for j in same) / mass if parsed[i] else -1.0
        rows.append(
            [
                e.score / best,
                math.log1p(i),
                c.own / best_own,
                c.page / best_page,
                len(words & description) / asked,
                len(words & description) / max(1, len(description)),
                len(words & _stems(c.summary)) / asked,
                len(words & _stems(e.command)) / asked,
                float(bool(name_parts & raw)),
                float(utilities[i].lower() in raw),
                len(named_flags & command_flags) / len(named_flags) if named_flags else 0.0,
                by_utility[utilities[i]] / total,
                by_page[(e.source, e.page)] / total,
                consensus,
                min(len(parsed[i]), 3) / 3,
                min(len(parsed[i][0][1]), 5) / 5 if parsed[i] else 0.0,
                float(c.own == 0.0),
                float(e.source == "tldr"),
                float(e.source == "cheat"),
                float(e.source == "eg"),
                float(e.source == "man"),
            ]
        )
    return rows


class Reranker:
    """A linear scorer over RERANK_FEATURES (standardised), trained by training/rerank.py to put
    the candidate with the best NLC2CMD score first (its weights: a small JSON beside the index).
    Reordering `pool` candidates costs one feature row each and a dot product."""

    def __init__(self, weights: Sequence[float], mean: Sequence[float], scale: Sequence[float], pool: int) -> None:
        sizes = {len(weights), len(mean), len(scale)}
        if sizes != {len(RERANK_FEATURES)}:
            raise ValueError(f"a reranker needs {len(RERANK_FEATURES)} weights, means and scales")
        values = [*weights, *mean, *scale]
        if not all(math.isfinite(v) for v in values) or not all(v > 0 for v in scale) or pool < 2:
            raise ValueError("a reranker's weights must be finite, its scales and pool positive")
        self.weights = [w / sd for w, sd in zip(weights, scale)]  # folded: score = w . (x - mean) / scale
        self.offset = -sum(w * m for w, m in zip(self.weights, mean))
        self.pool = int(pool)

    @classmethod
    def read(cls, path: Path) -> Reranker:
        """The reranker saved at `path` (ValueError or OSError when it is not a valid one)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != RERANK_FORMAT or list(data.get("features", ())) != list(RERANK_FEATURES):
            raise ValueError(f"not a reranker of format {RERANK_FORMAT} over this bashlsp's features")
        return cls(data["weights"], data["mean"], data["scale"], data["pool"])

    def scores(self, text: str, candidates: Sequence[Candidate]) -> list[float]:
        rows = rerank_features(text, candidates)
        return [self.offset + sum(w * x for w, x in zip(self.weights, row)) for row in rows]

    def rerank(self, text: str, candidates: Sequence[Candidate]) -> list[Example]:
        """The examples of the first `pool` candidates by the reranker's score, best first, then
        the rest; the search scores are handed out again in the new order (the best still has the
        best score, so merging with other indexes keeps the order)."""
        pool = list(candidates[: self.pool])
        scores = self.scores(text, pool)
        order = sorted(range(len(pool)), key=lambda i: -scores[i])
        ranked = [replace(pool[i].example, score=pool[rank].example.score) for rank, i in enumerate(order)]
        return ranked + [c.example for c in candidates[self.pool :]]


def search_all(indexes: Iterable[ExampleIndex], text: str, limit: int = 5) -> list[Example]:
    """The best `limit` examples over several indexes (bm25 scores compare only roughly between
    indexes of different sizes; the personal ones are small, so their matches rank high, which
    is what a user wants), without repeating a command."""
    found: list[Example] = []
    for index in indexes:
        found.extend(index.search(text, limit))
    found.sort(key=lambda e: e.score)
    unique: dict[str, Example] = {}
    for example in found:
        unique.setdefault(" ".join(example.command.split()), example)
    return list(unique.values())[:limit]
