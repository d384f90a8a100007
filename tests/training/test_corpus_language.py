"""The language stage's corpus builder on fixture packages built here with dpkg-deb (no network:
download_deb finds them in the work folder), and the fixture tldr pages."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from support import FIXTURES

from bashlsp.training.corpus import language, load_corpus
from bashlsp.training.pretrain import load_documents

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("groff") is None, reason="needs dpkg-deb and groff"
)

MAN_PAGE = r""".TH DEMO 1
.SH NAME
demo \- show how the demo tool archives files
.SH DESCRIPTION
.B demo
copies every file named on the command line into an archive and reports how many it copied.
It never changes the files themselves; the archive is written next to them unless
.B \-o
names another place.
.SH OPTIONS
.TP
.B \-o " dir"
Write the archive into dir.
.SH EXAMPLES
Archive every log file:
.PP
.RS
demo *.log SECRET_EXAMPLE_COMMAND
.RE
.SH SEE ALSO
tar(1)
"""
REFERENCE = (
    "Debian Reference\n\nTable of Contents\n\n" + "Preface text about this reference and its licence. " * 5 + "\n\n"
    "Chapter 1. GNU/Linux tutorials\n\n"
    + "Learning a computer system is like learning a new foreign language. " * 5
    + "\n\nChapter 2. Debian package management\n\n"
    + "Debian is a volunteer organization. " * 8
    + "\n"
)
COPYRIGHT = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+\n"


def make_deb(folder: Path, package: str, files: dict[str, bytes]) -> Path:
    root = folder / f"tree-{package}"
    for relative, data in {**files, f"usr/share/doc/{package}/copyright": COPYRIGHT.encode()}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.com>\nDescription: test\n"
    )
    deb = folder / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


def tldr_archive(path: Path) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for page in sorted((FIXTURES / "tldr").rglob("*.md")):
            data = page.read_bytes()
            info = tarfile.TarInfo(f"tldr/pages/{page.parent.name}/{page.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("language-src")
    (work / "debs").mkdir()
    make_deb(work / "debs", "demo", {"usr/share/man/man1/demo.1.gz": gzip.compress(MAN_PAGE.encode())})
    make_deb(work / "debs", language.REFERENCE_PACKAGE, {language.REFERENCE_TEXT: gzip.compress(REFERENCE.encode())})
    out = tmp_path_factory.mktemp("language") / "corpus"
    archive = tldr_archive(work / "tldr.tar.xz")
    summary = language.build_language(out, work, ["demo"], archive, None)
    return out, summary


def test_man_pages_and_the_reference_become_documents_without_examples(built):
    out, summary = built
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    by_origin = {}
    for record in records:
        by_origin.setdefault(record["origin"], []).append(record)
    [man] = by_origin["man"]
    text = (out / man["file"]).read_text()
    assert "copies every file named on the command line" in text and "Write the archive into dir." in text
    assert "SECRET_EXAMPLE_COMMAND" not in text and "EXAMPLES" not in text  # held-out answers stay out
    assert man["path"] == "/usr/share/man/man1/demo.1.gz" and man["version"] == "1.0-1"
    assert man["licence"].startswith("GPL-2+") and "Debian package demo 1.0-1" in man["licence"]
    chapters = [(out / r["file"]).read_text() for r in by_origin["debian-reference"]]
    assert [c.splitlines()[0] for c in chapters][1:] == [
        "Chapter 1. GNU/Linux tutorials",
        "Chapter 2. Debian package management",
    ]
    assert summary["packages"] == 2 and {r["split"] for r in records} <= {"train", "holdout"}


def test_tldr_descriptions_without_commands_for_train_pages_only(built):
    out, _ = built
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    tldr_docs = [r for r in records if r["origin"] == "tldr"]
    assert tldr_docs and all(r["licence"] == "CC-BY-4.0" for r in tldr_docs)
    for record in tldr_docs:
        text = (out / record["file"]).read_text()
        assert "`" not in text and "{{" not in text  # descriptions, never a command template
        assert language.examples.split_of("tldr", record["path"]) == "train"
        assert text.splitlines()[1].startswith("- ")


def test_lock_and_attribution_are_written_and_pretraining_reads_the_corpus(built):
    out, _ = built
    lock = (out / "language.lock").read_text().splitlines()
    rows = [line.split("\t") for line in lock if not line.startswith("#")]
    assert [r[:2] for r in rows] == [["debian-reference-en", "1.0-1"], ["demo", "1.0-1"]]
    assert language.read_lock_versions(out / "language.lock") == {"debian-reference-en": "1.0-1", "demo": "1.0-1"}
    assert "CC BY 4.0" in (out / "ATTRIBUTION.md").read_text()
    train, holdout, summary = load_documents(out)
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert len(train) + len(holdout) == len(load_corpus(out, None)) == len(manifest)
    assert any("Debian is a volunteer organization." in text for text in train + holdout)


def test_the_committed_lock_pins_the_build_of_the_docs_figures():
    versions = language.read_lock_versions(language.COMMITTED_LOCK)
    assert versions[language.REFERENCE_PACKAGE] == "2.100" and len(versions) >= 100
