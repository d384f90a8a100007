"""Turn tldr-pages into shell snippets: `# description` lines followed by a concrete command.

    python -m bashlsp.training.corpus.tldr --out DIR [--archive tldr-pages.tar.xz]

Each tldr page (Markdown) holds pairs of a description and a command with ``{{placeholders}}``.
We make the placeholders concrete (``{{path/to/file}}`` → ``file.txt``, ``{{[-f|--force]}}`` →
``--force``; see `concrete_value`) so the model sees commands as people type them, and write:

- ``DIR/tldr.jsonl``: one document per page: {page, platform, text, split}, where text is
  ``# description`` / command pairs separated by blank lines;
- ``DIR/tldr_pairs.jsonl``: one record per pair: {description, command, template, page,
  platform, split}, for evaluating and serving generate-from-comment;
- ``DIR/ATTRIBUTION.txt``: the CC BY 4.0 credit, which must travel with anything derived.

About 5 % of the pages (by a hash of the page name, so a command's common and linux pages
share a split) are "holdout".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ...model.errors import BashlspError, TrainingError
from ...model.shell import bash_accepts

TLDR_ATTRIBUTION = "tldr-pages, © the tldr-pages team and contributors, CC BY 4.0"
# The project's shared data sits beside the checkout (`../shared/data`, see DESIGN.md); anywhere
# else, pass --archive.
DEFAULT_ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tldr-pages.tar.xz"
HOLDOUT_PERCENT = 5

# Descriptions of commands typed inside another program's prompt, not in a shell.
NOT_SHELL_DESCRIPTION_PREFIXES = ("[Interactive]",)
# tldr writes keys pressed inside a program as <Ctrl c>, <Enter>, <q>: such examples are not shell.
_KEYSTROKE = re.compile(
    r"<(Ctrl|Alt|Shift|Super|Cmd|Meta|Esc|Enter|Space|Tab|Backspace|Delete|Insert|Home|End"
    r"|PageUp|PageDown|Arrow\w+|F\d{1,2}|[^\s<>{}])(\s[^<>]*)?>"
)

# Whole placeholders with a conventional concrete value. Anything not listed keeps its own
# words (`{{package_name}}` → `package_name`), which read as well as any invented name.
KNOWN_VALUES = {
    "username": "alice",
    "user": "alice",
    "user_name": "alice",
    "group": "staff",
    "group_name": "staff",
    "password": "s3cret",
    "host": "example.com",
    "hostname": "example.com",
    "remote_host": "example.com",
    "server": "example.com",
    "domain": "example.com",
    "url": "https://example.com",
    "ip_address": "192.168.1.10",
    "ip": "192.168.1.10",
    "port": "8080",
    "command": "ls",
    "pid": "1234",
    "n": "10",
    "number": "10",
    "count": "10",
    "/dev/sdX": "/dev/sdb",
    "/dev/sdXY": "/dev/sdb1",
    "/dev/sdXN": "/dev/sdb1",
}

# tldr escapes literal braces inside commands as \{\{ and \}\}; these stand in for them while
# placeholders are parsed (characters that never occur in the pages).
_LITERAL_OPEN = "\x00"
_LITERAL_CLOSE = "\x01"

_MNEMONIC_BRACKETS = re.compile(r"\[(\w{1,6})\]")  # "[c]reate a [f]ile" → "create a file"
_OPTIONAL_ALTERNATIVES = re.compile(r"\[([^\[\]|]*\|[^\[\]]*)\]")  # "source.tar[.gz|.bz2]"
_NUMBERED = re.compile(r"^(.*?)(\d*)$")


@dataclass
class TldrPage:
    """A parsed page: command name, summary lines and (description, command template) pairs."""

    name: str
    summary: list[str] = field(default_factory=list)
    examples: list[tuple[str, str]] = field(default_factory=list)


def parse_page(markdown: str) -> TldrPage:
    """Parse a tldr page: ``# name``, ``> summary`` lines, then ``- description:`` lines each
    followed by a line holding the command in single backticks."""
    page = TldrPage(name="")
    description: str | None = None
    for raw_line in markdown.splitlines():
        line = raw_line.strip()
        if line.startswith("# ") and not page.name:
            page.name = line[2:].strip()
        elif line.startswith(">"):
            page.summary.append(line[1:].strip())
        elif line.startswith("- "):
            description = line[2:].strip()
        elif line.startswith("`") and line.endswith("`") and len(line) >= 2 and description is not None:
            page.examples.append((description, line[1:-1]))
            description = None
    if not page.name:
        raise TrainingError("not a tldr page: no '# name' title line")
    return page


def clean_description(description: str) -> str:
    """A description as a one-line comment: no trailing colon, no tldr mnemonic brackets
    ("[c]reate" → "create"), no Markdown backticks, single spaces."""
    text = description.strip()
    text = text[:-1] if text.endswith(":") else text
    text = _MNEMONIC_BRACKETS.sub(r"\1", text)
    text = text.replace("`", "")
    return " ".join(text.split())


def _pick_option(alternatives: list[str]) -> str:
    """From '-f|--force' style alternatives pick the long option, else the longest (first on ties)."""
    long_forms = [alternative for alternative in alternatives if alternative.startswith("--")]
    if long_forms:
        return long_forms[0]
    return max(alternatives, key=len)


def _concrete_path(value: str) -> str:
    """`path/to/...` placeholders → a short, plausible name: file → file.txt, directory → dir,
    output_file → output.txt, image.png stays image.png; a leading /path/to/ becomes /tmp/."""
    prefix, _, stem = value.partition("path/to")
    stem = stem.lstrip("/")
    if prefix == "/":
        prefix = "/tmp/"
    elif prefix == "~/":
        prefix = "~/"
    base, number = _NUMBERED.match(stem).groups()
    if not stem or base in ("directory", "dir", "folder"):
        name = f"dir{number}"
    elif base in ("file", "file_or_directory"):
        name = f"file{number}.txt"
    elif "." in PurePosixPath(stem).name:
        name = stem
    elif base.endswith("_file"):
        name = f"{base[: -len('_file')]}{number}.txt"
    else:
        name = stem.replace("directory", "dir")
    return prefix + name


def concrete_value(placeholder: str) -> str:
    """The concrete text for the inside of one ``{{placeholder}}``.

    In order: ``[-f|--force]`` option alternatives → the long form; optional variants inside a
    value (``source.tar[.gz|.bz2]``) → the first; lists ending in ``...``
    (``path/to/file1 path/to/file2 ...``, ``a,b,...``) → their items without the ellipsis, each
    made concrete; ``start|stop`` alternatives → the first; ``path/to/...`` → a short file or
    directory name; conventional names (username → alice, port → 8080, see KNOWN_VALUES);
    anything else (numbers, ``package_name``, literal text) → itself, without the braces.
    """
    value = placeholder.strip()
    if value.startswith("[") and value.endswith("]") and "|" in value:
        return _pick_option(value[1:-1].split("|"))
    # Optional variants inside a value ("source.tar[.gz|.bz2|.xz]"): the first.
    value = _OPTIONAL_ALTERNATIVES.sub(lambda match: match.group(1).split("|")[0], value)
    for separator in (" ", ","):
        items = value.split(separator)
        if len(items) > 1 and items[-1].strip("\"'") == "...":
            return separator.join(concrete_value(item) for item in items[:-1] if item)
    if "|" in value and " " not in value:
        alternatives = [alternative for alternative in value.split("|") if alternative and alternative != "..."]
        if alternatives:
            return concrete_value(alternatives[0])
    if "path/to" in value and " " not in value:
        return _concrete_path(value)
    return KNOWN_VALUES.get(value, value)


def concrete_command(template: str) -> str:
    """Replace every ``{{placeholder}}`` in a tldr command with a concrete value.

    A run of closing braces ends the placeholder at its last two, so ``{{{"key": 1}}}`` holds
    ``{"key": 1}``; escaped ``\\{\\{`` / ``\\}\\}`` are literal braces.
    """
    text = template.replace("\\{\\{", _LITERAL_OPEN).replace("\\}\\}", _LITERAL_CLOSE)
    pieces = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            break
        end = text.find("}}", start + 2)
        if end < 0:
            break
        while end + 2 < len(text) and text[end + 2] == "}":
            end += 1
        pieces.append(text[position:start])
        pieces.append(concrete_value(text[start + 2 : end]))
        position = end + 2
    pieces.append(text[position:])
    return "".join(pieces).replace(_LITERAL_OPEN, "{{").replace(_LITERAL_CLOSE, "}}")


def not_shell_reason(description: str, template: str) -> str | None:
    """'interactive' or 'keystrokes' for examples typed inside another program, else None."""
    if description.startswith(NOT_SHELL_DESCRIPTION_PREFIXES):
        return "interactive"
    if _KEYSTROKE.search(template):
        return "keystrokes"
    return None


def page_pairs(page: TldrPage, skipped: Counter | None = None) -> list[tuple[str, str, str]]:
    """(clean description, concrete command, template) for each shell example of a page.

    Examples that are not shell are left out and counted by reason in `skipped`: typed inside
    another program ('interactive', 'keystrokes'), empty, or rejected by ``bash -n``. To keep
    the build fast, ``bash -n`` first reads all of the page's commands at once and checks them
    one by one only when that fails. (Two broken commands could in principle mend each other,
    say two lone quotes; among the pages' thousands of commands that is not worth a process
    per command.)
    """
    skipped = skipped if skipped is not None else Counter()
    candidates = []
    for description, template in page.examples:
        command = concrete_command(template)
        reason = not_shell_reason(description, template) or (None if command.strip() else "empty")
        if reason is not None:
            skipped[reason] += 1
            continue
        candidates.append((clean_description(description), command, template))
    if candidates and not bash_accepts("".join(command + "\n" for _, command, _ in candidates)):
        parsed = [pair for pair in candidates if bash_accepts(pair[1] + "\n")]
        skipped["bash -n failed"] += len(candidates) - len(parsed)
        candidates = parsed
    return candidates


def page_document(pairs: list[tuple[str, str, str]]) -> str:
    """The snippet document: '# description' then the command, pairs separated by blank lines."""
    return "\n\n".join(f"# {description}\n{command}" for description, command, _ in pairs) + "\n"


def split_of(page_name: str) -> str:
    """'holdout' for about HOLDOUT_PERCENT % of page names (by sha256), else 'train'."""
    digest = hashlib.sha256(f"tldr:{page_name}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:4], "big") % 100 < HOLDOUT_PERCENT else "train"


def read_archive_pages(archive: Path) -> list[tuple[str, str, str]]:
    """(platform, page file stem, markdown) for every pages/<platform>/<name>.md in the
    tarball, sorted by platform and name so the output order never depends on the archive's.

    Members are read in archive order (a compressed tarball cannot seek back cheaply) and
    sorted afterwards."""
    pages = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or not member.name.endswith(".md") or len(parts) < 3 or parts[-3] != "pages":
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    pages.append((parts[-2], PurePosixPath(member.name).stem, handle.read().decode("utf-8")))
    except (OSError, tarfile.TarError, UnicodeDecodeError) as error:
        raise TrainingError(f"cannot read tldr archive {archive}: {error}") from None
    return sorted(pages)


def _pairs_and_skips(page: TldrPage) -> tuple[list[tuple[str, str, str]], Counter]:
    skipped: Counter = Counter()
    return page_pairs(page, skipped), skipped


def build_tldr(archive: Path, out: Path, *, jobs: int = 2) -> dict:
    """Write tldr.jsonl, tldr_pairs.jsonl and ATTRIBUTION.txt into `out`; return counts
    (pages, pairs, bytes of documents, holdout_pages, holdout_pairs, skipped: a Counter)."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {"pages": 0, "pairs": 0, "bytes": 0, "holdout_pages": 0, "holdout_pairs": 0, "skipped": Counter()}
    with (
        (out / "tldr.jsonl").open("w", encoding="utf-8") as documents,
        (out / "tldr_pairs.jsonl").open("w", encoding="utf-8") as pair_records,
    ):
        pages = [(platform, stem, parse_page(markdown)) for platform, stem, markdown in read_archive_pages(archive)]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            # Each page gets its own Counter: Counters are not safe to update from many threads.
            results = list(pool.map(lambda item: _pairs_and_skips(item[2]), pages))
        for (platform, stem, _), (pairs, skipped) in zip(pages, results):
            counts["skipped"].update(skipped)
            if not pairs:
                continue
            split = split_of(stem)
            text = page_document(pairs)
            documents.write(
                json.dumps({"page": stem, "platform": platform, "text": text, "split": split}, ensure_ascii=False)
                + "\n"
            )
            for description, command, template in pairs:
                record = {
                    "description": description,
                    "command": command,
                    "template": template,
                    "page": stem,
                    "platform": platform,
                    "split": split,
                }
                pair_records.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts["pages"] += 1
            counts["pairs"] += len(pairs)
            counts["bytes"] += len(text.encode("utf-8"))
            if split == "holdout":
                counts["holdout_pages"] += 1
                counts["holdout_pairs"] += len(pairs)
    (out / "ATTRIBUTION.txt").write_text(
        "tldr.jsonl and tldr_pairs.jsonl are derived from the tldr-pages project\n"
        "(https://github.com/tldr-pages/tldr), English pages/common and pages/linux:\n"
        f"{TLDR_ATTRIBUTION}\n"
        "Licence: https://creativecommons.org/licenses/by/4.0/\n"
        "Changes: placeholders replaced with concrete values, descriptions turned into shell comments.\n",
        encoding="utf-8",
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.tldr", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--archive",
        type=Path,
        default=DEFAULT_ARCHIVE,
        help="tldr-pages tarball (default: ../shared/data beside the checkout)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="pages checked with bash -n at once")
    arguments = parser.parse_args(argv)
    try:
        counts = build_tldr(arguments.archive, arguments.out, jobs=arguments.jobs)
    except BashlspError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"tldr: {counts['pages']} pages, {counts['pairs']} pairs, {counts['bytes'] / 1e6:.2f} MB; "
        f"holdout {counts['holdout_pages']} pages / {counts['holdout_pairs']} pairs"
    )
    skipped = ", ".join(f"{reason} {count}" for reason, count in counts["skipped"].most_common())
    print(f"examples left out (not shell): {skipped or 'none'}")
    print(f"attribution: {TLDR_ATTRIBUTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
