"""Tests of the corpus builder: shell detection, Debian extraction, tldr conversion, loading.

No network: the Debian test builds its own small .deb with dpkg-deb; the tldr tests use pages
copied into tests/fixtures/tldr/ (and the full archive only where it exists).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from bashlsp.model.errors import TrainingError
from bashlsp.model.shell import (
    bash_accepts,
    is_binary,
    looks_like_shell,
    shebang_interpreter,
    shell_reason,
)
from bashlsp.training.corpus import debian, load_corpus, load_tldr_pairs, tldr

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tldr"
ELF_HEAD = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00\x01\x00\x00\x00"

SHELL_LIBRARY = """\
# helper functions sourced by the tools
log() {
    printf '%s\\n' "$*" >&2
}

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "run me as root"
        exit 1
    fi
}

for_each_line() {
    while read -r line; do
        "$1" "$line"
    done
}

pick() {
    case "$1" in
        a) echo first ;;
        *) echo other ;;
    esac
}
"""


# -- detect ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_line, interpreter",
    [
        (b"#!/bin/sh\n", "sh"),
        (b"#! /bin/sh\n", "sh"),
        (b"#!/usr/bin/env bash\n", "bash"),
        (b"#!/bin/bash -e\n", "bash"),
        (b"#!/usr/bin/env -S bash -eu\n", "bash"),
        (b"#!/bin/dash\r\n", "dash"),
        (b"#!/bin/ksh\n", "ksh"),
    ],
)
def test_sh_family_shebangs_are_shell(first_line, interpreter):
    assert shebang_interpreter(first_line) == interpreter
    assert shell_reason(Path("/usr/bin/tool"), first_line + b"echo hi\n") == f"shebang {interpreter}"


@pytest.mark.parametrize(
    "first_line", [b"#!/usr/bin/python3\n", b"#!/usr/bin/env perl\n", b"#!/bin/zsh\n", b"#!/usr/bin/make -f\n"]
)
def test_other_interpreters_are_not_shell_even_when_named_sh(first_line):
    assert shell_reason(Path("/usr/bin/tool"), first_line + b"print('hi')\n") is None
    assert shell_reason(Path("/usr/bin/tool.sh"), first_line + b"print('hi')\n") is None


def test_binary_detection():
    assert is_binary(ELF_HEAD)
    assert shell_reason(Path("/usr/bin/tool.sh"), ELF_HEAD) is None
    assert not is_binary(b"#!/bin/sh\necho caf\xc3\xa9\n")
    assert not is_binary(b"echo caf\xc3")  # a character cut off at the end of the head
    assert not is_binary("# Fran\u00e7ois\necho hi\n".encode("latin-1"))  # text, just not UTF-8
    assert is_binary(bytes(range(128, 256)) * 4)
    assert not is_binary(b"")


def test_names_and_places_that_make_shell():
    plain = b"echo hello\n"
    assert shell_reason(Path("deploy.sh"), plain) == "extension .sh"
    assert shell_reason(Path("lib/util.bash"), plain) == "extension .bash"
    assert shell_reason(Path("/home/me/.bashrc"), plain) == "shell startup file"
    assert shell_reason(Path("/usr/share/bash-completion/completions/git"), plain) == "bash-completion file"
    assert shell_reason(Path("/etc/bash_completion.d/tool"), plain) == "bash-completion file"
    assert shell_reason(Path("/usr/share/zsh/vendor-completions/_tool"), SHELL_LIBRARY.encode()) is None
    assert shell_reason(Path("/usr/share/tool/config"), b"# -*- sh -*-\nA=1\n") == "mode line sh"
    assert shell_reason(Path("/usr/share/tool/config"), b"# vim: set ft=bash:\nA=1\n") == "mode line bash"
    assert shell_reason(Path("README"), b"Read me first.\nThen the manual.\n") is None
    assert shell_reason(Path("notes.txt"), SHELL_LIBRARY.encode()) is None


def test_editor_language_id_counts_after_the_shebang():
    # The server asks the same detector, with the editor's language id: a shebang naming another
    # language still wins; one naming nothing yet (being typed) says nothing.
    assert shell_reason(Path("/tmp/notes"), b"echo hi\n", "shellscript") == "languageId shellscript"
    assert shell_reason(Path("/tmp/notes"), b"#!\necho hi\n", "sh") == "languageId sh"
    assert shell_reason(Path("/tmp/a.sh"), b"#!/usr/bin/env python3\n", "shellscript") is None
    assert shell_reason(Path("/tmp/notes"), b"#!/bin/ksh\n", "plaintext") == "shebang ksh"
    assert shell_reason(Path("/tmp/notes"), b"just prose\n", "plaintext") is None


def test_shebang_less_libraries():
    assert shell_reason(Path("/usr/lib/git-core/git-sh-setup"), SHELL_LIBRARY.encode()) == "shell library"
    assert shell_reason(Path("/usr/share/tool/functions"), SHELL_LIBRARY.encode()) == "shell library"
    # No telling name: accepted on content alone only when it is plainly shell.
    assert shell_reason(Path("/usr/share/tool/helpers"), SHELL_LIBRARY.encode()) == "shell library"
    python = "def main():\n    if x:\n        return 1\n    for a in b:\n        pass\n" * 3
    assert shell_reason(Path("/usr/share/tool/helpers"), python.encode()) is None
    prose = "This tool is done when it is done.\nIf it fails, fi.\n" * 5
    assert not looks_like_shell(prose, strict=True)


def test_bash_accepts():
    assert bash_accepts("if true; then echo yes; fi\n")
    assert bash_accepts("case $x in @(a|b)) echo ab ;; esac\n")  # extglob syntax
    assert not bash_accepts("if true; then echo yes\n")


# -- debian ----------------------------------------------------------------------------------------

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")

SETUP_SCRIPT = "set -e\nmkdir -p /var/lib/demo\necho 'demo ready'\n"
COMPLETION = """\
_demo() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    case $cur in
        @(-f|--file)) COMPREPLY=() ;;
        *) COMPREPLY=( $(compgen -W "start stop" -- "$cur") ) ;;
    esac
}
complete -F _demo demo
"""


def make_deb(tmp_path: Path) -> Path:
    """A small package: what each file is named for is what the extraction should decide."""
    root = tmp_path / "tree"
    files = {
        "usr/share/demo/setup.sh": SETUP_SCRIPT.encode(),
        "usr/share/demo/copy-of-setup.sh": SETUP_SCRIPT.encode(),  # exact duplicate
        "usr/share/demo/reindented.sh": SETUP_SCRIPT.replace("\n", "\n  ").encode(),  # near duplicate
        "usr/share/bash-completion/completions/demo": COMPLETION.encode(),
        "usr/bin/demo": b'#!/usr/bin/env bash\nexec /usr/share/demo/setup.sh "$@"\n',
        "usr/bin/demo-report": b"#!/usr/bin/python3\nprint('report')\n",
        "usr/bin/demo-daemon": ELF_HEAD + b"\x00" * 64,
        "usr/bin/demo-broken": b"#!/bin/bash\nif true; then\n  echo never closed\n",
        "usr/bin/demo-latin1": "#!/bin/sh\n# Fran\u00e7ois\necho hi\n".encode("latin-1"),
        "usr/bin/demo-empty": b"#!/bin/sh\n# nothing here yet\n",
        "usr/share/doc/demo/README": b"Demo package.\n",
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "usr/bin/demo-link").symlink_to("demo")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        "Package: demo\nVersion: 1:1.2-3\nArchitecture: all\nMaintainer: Test <test@example.com>\n"
        "Description: demo package for tests\n"
    )
    deb = tmp_path / "demo_1.2-3_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@needs_dpkg
def test_extract_keeps_shell_and_drops_the_rest(tmp_path):
    scripts = debian.extract_shell_files(make_deb(tmp_path))
    assert (scripts.package, scripts.version, scripts.source) == ("demo", "1:1.2-3", "demo")
    kept = {shell_file.path: shell_file.reason for shell_file in scripts.files}
    assert kept == {
        "/usr/bin/demo": "shebang bash",
        "/usr/share/bash-completion/completions/demo": "bash-completion file",
        "/usr/share/demo/copy-of-setup.sh": "extension .sh",  # walked before setup.sh (sorted)
        "/usr/share/demo/reindented.sh": "extension .sh",  # near duplicates go in the writer
    }
    assert scripts.dropped == {"duplicate": 1, "bash -n failed": 1, "not utf-8": 1, "no code": 1}
    assert scripts.ignored["symlink"] == 1
    assert scripts.ignored["binary"] == 1
    assert scripts.ignored["not shell"] >= 2  # the python script and the README (plus the .deb's own files)


@needs_dpkg
def test_writer_dedupes_across_and_writes_manifest_and_lock(tmp_path):
    scripts = debian.extract_shell_files(make_deb(tmp_path))
    out = tmp_path / "corpus"
    writer = debian.CorpusWriter(out)
    record = writer.add(scripts, "MIT", "holdout")
    again = writer.add(scripts, "MIT", "train")  # the same scripts from a later package
    writer.close()
    assert record.files == 3 and again.files == 0
    # Per add: the in-package duplicate, and reindented.sh as a near duplicate of copy-of-setup.sh;
    # the second add also drops its three scripts as exact duplicates of the first's.
    assert writer.dropped["near duplicate (whitespace)"] == 2
    assert writer.dropped["duplicate"] == 2 + 3
    copies = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert len(copies) == 2 + 3  # the corpus-wide ones, each naming the kept file's sha256
    assert {copy["reason"] for copy in copies} == {"duplicate", "near duplicate (whitespace)"}

    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 3
    for entry in manifest:
        assert set(entry) == {
            "sha256",
            "file",
            "package",
            "source",
            "origin",
            "version",
            "path",
            "licence",
            "bytes",
            "reason",
            "split",
        }
        assert (entry["source"], entry["origin"]) == ("demo", "deb")
        data = (out / "files" / entry["sha256"][:2] / f"{entry['sha256']}.sh").read_bytes()
        assert entry["file"] == f"files/{entry['sha256'][:2]}/{entry['sha256']}.sh"
        assert len(data) == entry["bytes"] and debian.sha256_hex(data) == entry["sha256"]
        assert (entry["package"], entry["version"], entry["licence"], entry["split"]) == (
            "demo",
            "1:1.2-3",
            "MIT",
            "holdout",
        )

    lock = [line.split("\t") for line in (out / "packages.lock").read_text().splitlines() if not line.startswith("#")]
    assert lock[0][:6] == ["demo", "1:1.2-3", "demo", "MIT", "holdout", "3"]
    assert debian.read_lock_versions(out / "packages.lock") == {"demo": "1:1.2-3"}

    documents = load_corpus(out, "holdout")
    assert {document.path for document in documents} == {entry["path"] for entry in manifest}
    assert all(document.source == "debian" and document.name == "demo" for document in documents)
    assert load_corpus(out, "train") == []


@needs_dpkg
def test_download_uses_the_cache_without_network(tmp_path):
    deb = make_deb(tmp_path)
    cache = tmp_path / "debs"
    cache.mkdir()
    cached = cache / deb.name
    shutil.copy(deb, cached)
    assert debian.download_deb("demo", cache) == cached
    assert debian.download_deb("demo", cache, version="1:1.2-3") == cached


def test_package_list_and_holdout_choice():
    specs = debian.read_package_list(debian.PACKAGES_TSV)
    names = {spec.name for spec in specs}
    assert len(specs) >= 60 and {"bash-completion", "git", "lynis"} <= names
    chosen = debian.choose_holdout_packages(specs)
    assert set(chosen) == debian.HOLDOUT_PACKAGES  # the frozen list is what the rule gives
    survey = {spec.name: spec for spec in specs}
    assert sum(survey[name].surveyed_kb for name in chosen) >= 600
    assert len(chosen) >= 5
    assert not {"neofetch", "screenfetch", "libtool", "abs-guide"} & set(chosen)
    # Binary packages built from one source share a split.
    all_names = names | {spec.name for spec in debian.read_package_list(debian.PACKAGES_V2_TSV)}
    for _package, source in debian.SOURCE_OF.items():
        siblings = [name for name in all_names if debian.source_of(name) == source]
        assert len({debian.split_of(name) for name in siblings}) == 1, source


def test_committed_lock_covers_the_package_list():
    versions = debian.read_lock_versions(debian.COMMITTED_LOCK)
    listed = {
        spec.name for path in (debian.PACKAGES_TSV, debian.PACKAGES_V2_TSV) for spec in debian.read_package_list(path)
    }
    assert listed == set(versions)
    assert debian.HOLDOUT_PACKAGES_V2 <= {spec.name for spec in debian.read_package_list(debian.PACKAGES_V2_TSV)}


def test_package_list_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("# comment\ngit\t1\n")
    with pytest.raises(TrainingError, match="4 tab-separated columns"):
        debian.read_package_list(bad)


def test_sources_in_two_splits_are_refused():
    records = [
        debian.PackageRecord("a", "1", "src", "MIT", "train", "0"),
        debian.PackageRecord("b", "1", "src", "MIT", "holdout", "0"),
    ]
    with pytest.raises(TrainingError, match="src"):
        debian.check_sources_within_one_split(records)


# -- tldr ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder, value",
    [
        ("path/to/file", "file.txt"),
        ("path/to/file2", "file2.txt"),
        ("path/to/directory", "dir"),
        ("path/to/target_directory", "target_dir"),
        ("path/to/output_file", "output.txt"),
        ("path/to/image.png", "image.png"),
        ("path/to/source.tar[.gz|.bz2|.xz]", "source.tar.gz"),
        ("/path/to/backup.gpt", "/tmp/backup.gpt"),
        ("path/to/file1 path/to/file2 ...", "file1.txt file2.txt"),
        ("path/to/directory1,path/to/directory2,...", "dir1,dir2"),
        ("package1 package2 ...", "package1 package2"),
        ('"option1" "option2" "..."', '"option1" "option2"'),
        ("[-f|--force]", "--force"),
        ("[ls|list]", "list"),
        ("[-avuDN|--ask --verbose --update --deep --newuse]", "--ask --verbose --update --deep --newuse"),
        ("start|stop", "start"),
        ("opus|vorbis|flac|...", "opus"),
        ("username", "alice"),
        ("/dev/sdXY", "/dev/sdb1"),
        ("100", "100"),
        ("package_name", "package_name"),
        ("./...", "./..."),
        ("Hello world", "Hello world"),
    ],
)
def test_concrete_value(placeholder, value):
    assert tldr.concrete_value(placeholder) == value


def test_concrete_command_braces():
    assert tldr.concrete_command("for i in {{{1..3}}}; do {{echo $i}}; done") == "for i in {1..3}; do echo $i; done"
    assert tldr.concrete_command('echo \'{{{"key": "value"}}}\' | jq') == 'echo \'{"key": "value"}\' | jq'
    assert tldr.concrete_command(r"tool '\{\{ .Name \}\}'") == "tool '{{ .Name }}'"
    assert tldr.concrete_command("ssh {{username}}@{{remote_host}} -p {{port}}") == "ssh alice@example.com -p 8080"


PAGE = """\
# demo

> Demonstrate things.
> More information: <https://example.com>.

- [c]reate an archive of a `directory`:

`tar czf {{path/to/target.tar.gz}} {{path/to/directory}}`

- Show help:

`demo {{[-h|--help]}}`

- [Interactive] Quit the prompt:

`quit`

- Scroll down:

`<Space>`
"""


def test_parse_page_and_pairs():
    page = tldr.parse_page(PAGE)
    assert page.name == "demo"
    assert page.summary == ["Demonstrate things.", "More information: <https://example.com>."]
    assert len(page.examples) == 4
    skipped = tldr.Counter()
    pairs = tldr.page_pairs(page, skipped)
    assert pairs == [
        (
            "create an archive of a directory",
            "tar czf target.tar.gz dir",
            "tar czf {{path/to/target.tar.gz}} {{path/to/directory}}",
        ),
        ("Show help", "demo --help", "demo {{[-h|--help]}}"),
    ]
    assert skipped == {"interactive": 1, "keystrokes": 1}
    assert tldr.page_document(pairs) == (
        "# create an archive of a directory\ntar czf target.tar.gz dir\n\n# Show help\ndemo --help\n"
    )
    with pytest.raises(TrainingError):
        tldr.parse_page("no title\n")


def test_commands_that_bash_rejects_are_left_out():
    page = tldr.parse_page("# x\n\n- Good:\n\n`echo ok`\n\n- Broken:\n\n`echo 'unterminated`\n")
    skipped = tldr.Counter()
    assert [pair[1] for pair in tldr.page_pairs(page, skipped)] == ["echo ok"]
    assert skipped == {"bash -n failed": 1}


def fixture_page(platform: str, name: str) -> tldr.TldrPage:
    return tldr.parse_page((FIXTURES / platform / f"{name}.md").read_text(encoding="utf-8"))


def test_real_pages_from_fixtures():
    tar_pairs = tldr.page_pairs(fixture_page("common", "tar"))
    assert ("create an archive and write it to a file", "tar cf target.tar file1.txt file2.txt") == tar_pairs[0][:2]
    assert ("tar xf source.tar.gz --directory dir") in [pair[1] for pair in tar_pairs]

    playerctl = {pair[1] for pair in tldr.page_pairs(fixture_page("linux", "playerctl"))}
    assert 'playerctl metadata --format "Now playing: {{artist}} - {{album}} - {{title}}"' in playerctl

    less = tldr.page_pairs(fixture_page("common", "less"))
    assert less and all("<" not in pair[1] or "<<" in pair[1] for pair in less)

    tftp_skipped = tldr.Counter()
    tftp = tldr.page_pairs(fixture_page("linux", "tftp"), tftp_skipped)
    assert len(tftp) == 3 and tftp_skipped == {"interactive": 4}

    loop = tldr.page_pairs(fixture_page("common", "continue"))
    assert loop[1][1] == "for i in {1..3}; do echo $i; while :; do continue 2; done; done"
    assert [pair[1] for pair in tldr.page_pairs(fixture_page("linux", "dpkg"))][0] == "sudo dpkg --install file.deb"


def test_split_is_deterministic_and_about_five_percent():
    names = [f"command-{number}" for number in range(4000)]
    holdout = [name for name in names if tldr.split_of(name) == "holdout"]
    assert 0.03 < len(holdout) / len(names) < 0.07
    assert [tldr.split_of(name) for name in names[:50]] == [tldr.split_of(name) for name in names[:50]]


def test_build_from_a_fixture_archive(tmp_path):
    archive = tmp_path / "pages.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for path in sorted(FIXTURES.glob("*/*.md")):
            tar.add(path, arcname=f"pages/{path.parent.name}/{path.name}")
    out = tmp_path / "corpus"
    counts = tldr.build_tldr(archive, out, jobs=1)
    assert counts["pages"] == 7
    documents = [json.loads(line) for line in (out / "tldr.jsonl").read_text().splitlines()]
    assert {(document["platform"], document["page"]) for document in documents} >= {
        ("common", "tar"),
        ("linux", "dpkg"),
    }
    assert all(document["split"] == tldr.split_of(document["page"]) for document in documents)
    pairs = [json.loads(line) for line in (out / "tldr_pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == counts["pairs"]
    assert set(pairs[0]) == {"description", "command", "template", "page", "platform", "split"}
    assert tldr.TLDR_ATTRIBUTION in (out / "ATTRIBUTION.txt").read_text(encoding="utf-8")
    assert tldr.TLDR_ATTRIBUTION == "tldr-pages, © the tldr-pages team and contributors, CC BY 4.0"

    loaded = load_corpus(out, None)
    assert len(loaded) == 7 and {document.source for document in loaded} == {"tldr"}
    assert sum(len(pair_list) for pair_list in [load_tldr_pairs(out, "train"), load_tldr_pairs(out, "holdout")]) == len(
        pairs
    )


@pytest.mark.skipif(not tldr.DEFAULT_ARCHIVE.is_file(), reason="the shared tldr archive is not on this machine")
def test_real_archive_page():
    for platform, stem, markdown in tldr.read_archive_pages(tldr.DEFAULT_ARCHIVE):
        if (platform, stem) == ("common", "tar"):
            assert markdown == (FIXTURES / "common" / "tar.md").read_text(encoding="utf-8")
            break
    else:
        pytest.fail("common/tar.md not in the archive")


# -- loader ----------------------------------------------------------------------------------------


def test_loader_errors(tmp_path):
    with pytest.raises(TrainingError, match="holds no corpus"):
        load_corpus(tmp_path, "train")
    (tmp_path / "tldr.jsonl").write_text("")
    with pytest.raises(TrainingError, match="unknown split"):
        load_corpus(tmp_path, "test")
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"sha256": "ab" * 32, "package": "p", "path": "/x", "bytes": 3, "split": "train"}) + "\n"
    )
    with pytest.raises(TrainingError, match="missing"):
        load_corpus(tmp_path, "train")
