"""Build the English corpus of the language stage (`bashlsp-train --pretrain --stage language`).

    python -m bashlsp.training.corpus.language --out DIR [--workdir DIR/src] [--lock language.lock]
        [--archive tldr-pages.tar.xz] [--cheat cheat-2.5.1.tar.gz] [--packages coreutils grep ...]

English prose that ships in Debian's archive and is about the shell and the system, as the
two-stage projects bashlsp grew from used (natural language first, then code):

- manual pages (man1, man5, man8) of examples.MAN_PACKAGES, ``apt-get download`` + ``dpkg-deb -x``
  into the work folder (never installed), rendered with groff (examples.render_man). Their
  EXAMPLES sections are left out: the generate-from-comment evaluation holds out pairs taken from
  them (examples_holdout.jsonl), and a language stage should not have read its answers.
- the Debian Reference (``debian-reference-en``: its plain-text edition), one document a chapter;
- tldr-pages and cheat descriptions without their commands: a page's summary and the
  descriptions of its examples, for the pages of the examples index's train split only.

Every document carries its licence (the package's DEP-5 ``Files: *`` licence; tldr CC BY 4.0;
cheat MIT or GPL-3.0). The output is read by `load_corpus` like the Debian builder's:
``manifest.jsonl`` and ``files/``, a document's split by a hash of its name (HOLDOUT_PERCENT);
``language.lock`` pins the package versions and .deb checksums (a copy is committed beside this
module: rebuild exactly with ``--lock``), ``ATTRIBUTION.md`` names the sources and licences.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ...model.errors import BashlspError, TrainingError
from . import examples
from .debian import deb_field, download_deb, read_lock_versions, sha256_hex

COMMITTED_LOCK = Path(__file__).with_name("language-packages.lock")
REFERENCE_PACKAGE = "debian-reference-en"
REFERENCE_TEXT = "usr/share/debian-reference/debian-reference.en.txt.gz"
MAN_SECTIONS = ("man1", "man5", "man8")
MAX_PAGES_PER_PACKAGE = 40  # one package's pages (git-man, openssl) must not make up the stage
MIN_DOCUMENT_CHARS = 200
LEFT_OUT_SECTIONS = ("EXAMPLES", "EXAMPLE")
_CHAPTER = re.compile(r"^Chapter\s\d+\.\s\S", re.MULTILINE)  # \s: the text has no-break spaces there


@dataclass(frozen=True)
class LanguageDoc:
    text: str
    origin: str  # "man", "debian-reference", "tldr" or "cheat"
    package: str  # the Debian package, or the source ("tldr-pages", "cheat")
    version: str
    path: str  # the installed path, or "<platform>/<page>" for tldr
    licence: str


def split_of(origin: str, name: str) -> str:
    """'holdout' for about HOLDOUT_PERCENT % of documents (by a hash of origin and name)."""
    digest = hashlib.sha256(f"language:{origin}:{name}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:4], "big") % 100 < examples.HOLDOUT_PERCENT else "train"


def man_prose(rendered: str) -> str:
    """A rendered page without its EXAMPLES sections, runs of blank lines and of spaces inside a
    line squeezed (indentation stays)."""
    kept, inside = [], False
    for line in rendered.splitlines():
        if re.match(r"^[A-Z][A-Z0-9 ,/&-]*$", line):
            inside = line.strip() in LEFT_OUT_SECTIONS
        if not inside:
            # Rendered 2000 columns wide (a paragraph a line), the header and footer lines are
            # padded to that width: their runs of spaces shrink to two.
            kept.append(re.sub(r"(?<=\S) {3,}(?=\S)", "  ", line.rstrip()))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip() + "\n"


def unpacked(deb: Path, workdir: Path):
    """A temporary folder holding the extracted .deb (dpkg-deb -x; nothing is installed)."""
    folder = tempfile.TemporaryDirectory(dir=workdir)
    result = subprocess.run(["dpkg-deb", "-x", str(deb), folder.name], capture_output=True, check=False)
    if result.returncode != 0:
        folder.cleanup()
        raise TrainingError(f"dpkg-deb -x {deb} failed: {result.stderr.decode(errors='replace').strip()}")
    return folder


def man_documents(root: Path, package: str, version: str, licence: str, skipped: Counter) -> list[LanguageDoc]:
    pages = []
    for section in MAN_SECTIONS:
        pages += [p for p in sorted((root / "usr/share/man" / section).glob("*")) if p.is_file() and not p.is_symlink()]
    documents = []
    for page in pages[:MAX_PAGES_PER_PACKAGE]:
        try:
            data = page.read_bytes()
            data = gzip.decompress(data) if page.name.endswith(".gz") else data
        except (OSError, gzip.BadGzipFile, EOFError):
            skipped["unreadable man page"] += 1
            continue
        text = man_prose(examples.render_man(data))
        if len(text) < MIN_DOCUMENT_CHARS:
            skipped["man page too short"] += 1
            continue
        path = "/" + str(page.relative_to(root))
        documents.append(LanguageDoc(text, "man", package, version, path, licence))
    skipped["man pages past the per-package cap"] += max(0, len(pages) - MAX_PAGES_PER_PACKAGE)
    return documents


def reference_documents(root: Path, version: str, licence: str) -> list[LanguageDoc]:
    """The Debian Reference's plain text, one document a chapter (the table of contents and
    the preface before the first chapter heading that starts a line are one more)."""
    source = root / REFERENCE_TEXT
    try:
        text = gzip.decompress(source.read_bytes()).decode("utf-8", errors="replace")
    except (OSError, gzip.BadGzipFile, EOFError) as error:
        raise TrainingError(f"{REFERENCE_PACKAGE}: cannot read {REFERENCE_TEXT}: {error}") from None
    starts = [0] + [m.start() for m in _CHAPTER.finditer(text)]
    chapters = [text[a:b].strip() + "\n" for a, b in zip(starts, starts[1:] + [len(text)])]
    return [
        LanguageDoc(chapter, "debian-reference", REFERENCE_PACKAGE, version, f"/{REFERENCE_TEXT}#{i}", licence)
        for i, chapter in enumerate(chapters)
        if len(chapter) >= MIN_DOCUMENT_CHARS
    ]


def description_documents(entries: list[examples.Example], summaries: dict[tuple[str, str], str]) -> list[LanguageDoc]:
    """One document a page of the examples' train split: its summary, then its examples'
    descriptions as a list; never a command."""
    pages: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        if examples.split_of(entry.source, entry.page) == "train":
            pages.setdefault((entry.source, entry.page), []).append(entry.description)
    documents = []
    for (source, page), descriptions in sorted(pages.items()):
        summary = summaries.get((source, page), "")
        lines = [f"{page}: {summary}" if summary else f"{page}:"] + [f"- {d}" for d in dict.fromkeys(descriptions)]
        package = "tldr-pages" if source == "tldr" else source
        licence = examples.SOURCES[source]["licence"]
        documents.append(LanguageDoc("\n".join(lines) + "\n", source, package, "", page, licence))
    return documents


def build_language(
    out: Path,
    workdir: Path,
    packages: list[str],
    archive: Path | None,
    cheat: Path | None,
    versions: dict[str, str] | None = None,
) -> dict:
    """Write the corpus into `out`; return counts by origin and split, and what was skipped."""
    workdir.mkdir(parents=True, exist_ok=True)
    skipped: Counter = Counter()
    documents: list[LanguageDoc] = []
    locked: list[tuple[str, str, str, str, int, int]] = []
    for package in [*packages, REFERENCE_PACKAGE]:
        try:
            deb = download_deb(package, workdir / "debs", (versions or {}).get(package))
        except TrainingError as error:
            print(f"warning: {error}", file=sys.stderr)
            skipped["package not downloadable"] += 1
            continue
        version = deb_field(deb, "Version")
        with unpacked(deb, workdir) as tmp:
            root = Path(tmp)
            licence = f"{examples.deb_licence(root, package)}; Debian package {package} {version}"
            if package == REFERENCE_PACKAGE:
                found = reference_documents(root, version, licence)
            else:
                found = man_documents(root, package, version, licence, skipped)
        documents += found
        locked.append(
            (package, version, licence, sha256_hex(deb.read_bytes()), len(found), sum(len(d.text) for d in found))
        )
    summaries: dict[tuple[str, str], str] = {}
    entries = examples.tldr_entries(archive, summaries) if archive else []
    entries += examples.cheat_entries(cheat) if cheat else []
    documents += description_documents(entries, summaries)
    return write_language(out, documents, locked, skipped)


def write_language(out: Path, documents: list[LanguageDoc], locked: list[tuple], skipped: Counter) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    seen = set()
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for doc in documents:
            data = doc.text.encode("utf-8")
            digest = sha256_hex(data)
            if digest in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(digest)
            file = f"files/{digest[:2]}/{digest}.txt"
            (out / file).parent.mkdir(parents=True, exist_ok=True)
            (out / file).write_bytes(data)
            split = split_of(doc.origin, f"{doc.package}:{doc.path}")
            record = {
                "sha256": digest,
                "file": file,
                "package": doc.package,
                "source": doc.package,
                "origin": doc.origin,
                "version": doc.version,
                "path": doc.path,
                "licence": doc.licence,
                "bytes": len(data),
                "split": split,
            }
            manifest.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[f"{doc.origin} {split}"] += 1
            counts[f"{doc.origin} bytes"] += len(data)
    write_lock(out / "language.lock", locked)
    write_attribution(out / "ATTRIBUTION.md", locked, counts)
    return {"documents": dict(sorted(counts.items())), "packages": len(locked), "skipped": dict(skipped)}


def write_lock(path: Path, locked: list[tuple]) -> None:
    lines = [
        "# Debian packages read by bashlsp.training.corpus.language (the language stage's corpus).",
        "# documents/chars: what was kept from the package; deb_sha256: the .deb that was unpacked.",
        "# package\tversion\tlicence\tdeb_sha256\tdocuments\tchars",
    ]
    lines += ["\t".join(map(str, row)) for row in sorted(locked)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_attribution(path: Path, locked: list[tuple], counts: Counter) -> None:
    lines = [
        "# Sources of the language-stage corpus",
        "",
        "English text only; built with `python -m bashlsp.training.corpus.language`.",
        "",
        f"- Debian manual pages (man1, man5, man8; EXAMPLES sections left out) and the Debian Reference: "
        f"{len(locked)} packages, each document with its package's licence in manifest.jsonl; versions in language.lock.",
        f"- {examples.SOURCES['tldr']['credit']}: page summaries and example descriptions (no commands).",
        f"- {examples.SOURCES['cheat']['credit']}: descriptions only.",
        "",
        "| origin | train | holdout | MB |",
        "|---|---:|---:|---:|",
    ]
    for origin in ("man", "debian-reference", "tldr", "cheat"):
        if counts[f"{origin} bytes"]:
            lines.append(
                f"| {origin} | {counts[f'{origin} train']} | {counts[f'{origin} holdout']} | {counts[f'{origin} bytes'] / 1e6:.1f} |"
            )
    lines += ["", "| package | version | licence |", "|---|---|---|"]
    lines += [f"| {row[0]} | {row[1]} | {row[2].split(';')[0]} |" for row in sorted(locked)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.language", description="Build the language stage's English corpus."
    )
    p.add_argument("--out", type=Path, required=True, help="corpus directory to write (manifest.jsonl, files/)")
    p.add_argument("--workdir", type=Path, help="where .deb files are downloaded and unpacked (default OUT/src)")
    p.add_argument("--lock", type=Path, help="a language.lock: download exactly those versions")
    p.add_argument("--packages", nargs="+", help="packages whose man pages are read (default: examples.MAN_PACKAGES)")
    p.add_argument("--archive", type=Path, help="tldr-pages.tar.xz (its descriptions; left out if not given)")
    p.add_argument("--cheat", type=Path, help="the cheat 2.5.1 sdist (its descriptions; left out if not given)")
    args = p.parse_args(argv)
    try:
        versions = read_lock_versions(args.lock) if args.lock else None
        packages = args.packages or (
            sorted(set(versions) - {REFERENCE_PACKAGE}) if versions else list(examples.MAN_PACKAGES)
        )
        summary = build_language(
            args.out, args.workdir or args.out / "src", packages, args.archive, args.cheat, versions
        )
    except BashlspError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
