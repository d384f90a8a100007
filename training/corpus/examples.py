"""Build the command-example index the package ships, and its held-out evaluation set.

    python -m bashlsp.training.corpus.examples --out model/data --workdir data/examples-src \\
        [--archive tldr-pages.tar.xz] [--cheat cheat-2.5.1.tar.gz] [--eg eg-1.2.3.tar.gz]

`# description` -> command pairs from four sources, each entry with its source and licence:

- tldr-pages (CC BY 4.0), parsed and made concrete by `tldr.py`;
- the `cheat` 2.5.1 cheatsheets (PyPI sdist; MIT or GPL-3.0): ``# To do this:`` then the command;
- `eg` 1.2.3's examples (PyPI sdist; MIT): a Markdown paragraph then an indented block, whose
  ``$ `` lines are the commands when it has any (the rest is output);
- the EXAMPLES sections of Debian man pages (man1, man8) of MAN_PACKAGES, ``apt-get download`` +
  ``dpkg-deb -x`` into the work folder (never installed), rendered with groff: an introducing
  paragraph then an indented block; the command must name the page's program and pass ``bash -n``.
  The licence is the package's (its DEP-5 copyright file's ``Files: *`` licence, else "see ...").

The split is by page (a command's page in one source), made before the index is built: tldr
pages use tldr.py's split (the one the bundled model was trained with, so the model never saw a
held-out tldr page); cheat, eg and man pages get the same 5 % rule on "<source>:<page>". Half of
each held-out page's pairs (by a hash of the pair, `held_out`) go to `examples_holdout.jsonl`;
the index holds everything else minus any entry whose command equals a held-out command
(whitespace aside), so no held-out pair is in it.
The sdists are downloaded with ``pip download --no-deps --no-binary :all:`` when not given.

Why one module of ~570 lines: four small parsers (one a source) that share the entry type, the
split and the writer; apart they would each import the other three's common half.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from ...model.errors import BashlspError, TrainingError
from ...model.examples import INDEX_FILE, Example, ExampleIndex, few_shot_prompt, write_index
from ...model.shell import bash_accepts
from . import tldr
from .debian import deb_field, download_deb

HOLDOUT_FILE = "examples_holdout.jsonl"
ATTRIBUTION_FILE = "EXAMPLES-ATTRIBUTION.md"
HOLDOUT_PERCENT = tldr.HOLDOUT_PERCENT

CHEAT_SDIST = "cheat==2.5.1"
EG_SDIST = "eg==1.2.3"
SOURCES = {
    "tldr": {"licence": "CC-BY-4.0", "credit": tldr.TLDR_ATTRIBUTION},
    "cheat": {
        "licence": "MIT OR GPL-3.0",
        "credit": "cheat 2.5.1 cheatsheets (PyPI sdist), © Chris Allen Lane and contributors, MIT or GPL-3.0",
    },
    "eg": {"licence": "MIT", "credit": "eg 1.2.3 examples (PyPI sdist), © 2015 Sam Sudar and contributors, MIT"},
    "man": {
        "licence": "per entry (the Debian package's licence)",
        "credit": "EXAMPLES sections of Debian manual pages; each entry carries its package's licence",
    },
}

# Debian packages whose man1/man8 pages are read for EXAMPLES (binary package names, bookworm).
MAN_PACKAGES = (
    "coreutils findutils grep sed tar util-linux procps iproute2 openssh-client rsync curl wget gzip"
    " xz-utils bzip2 zip unzip gawk diffutils less file lsof strace psmisc kmod e2fsprogs dpkg apt passwd"
    " sudo cron systemd git-man openssl gnupg jq tmux screen bsdextrautils cpio patch make sqlite3 xxd bc"
    " time moreutils parallel inotify-tools nmap socat netcat-openbsd tcpdump pv sysstat lvm2 mdadm"
    " cryptsetup-bin btrfs-progs dosfstools mount fdisk iputils-ping bind9-dnsutils net-tools man-db bash"
    " zstd lz4 p7zip-full ffmpeg ghostscript libimage-exiftool-perl qpdf poppler-utils sox mtools iptables"
    " nftables ethtool iw rclone restic duplicity ansible-core expect dialog whiptail libc-bin login"
    " bsdutils debianutils attr acl at logrotate rename tree ripgrep fd-find fzf htop ncdu smartmontools"
    " hdparm nvme-cli pciutils usbutils dmidecode xfsprogs ntfs-3g parted gdisk squashfs-tools xorriso"
    " mkvtoolnix lame flac vorbis-tools graphicsmagick optipng jpegoptim pngquant webp gifsicle units dc"
    " redis-tools mosquitto-clients aria2 lftp whois traceroute mtr-tiny iperf3 arping fping ngrep tshark"
    " bridge-utils openvpn wireguard-tools sshpass autossh mosh pass pwgen"
).split()

MAX_DESCRIPTION_CHARS = 200
MAX_COMMAND_LINES = 8
MAX_COMMAND_CHARS = 400


def split_of(source: str, page: str) -> str:
    """'holdout' or 'train' for a page: tldr's own split for tldr, the same rule salted with the
    source for the others."""
    if source == "tldr":
        return tldr.split_of(page)
    digest = hashlib.sha256(f"{source}:{page}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:4], "big") % 100 < HOLDOUT_PERCENT else "train"


def held_out(entry: Example) -> bool:
    """Is this pair in the evaluation set? Half of the pairs (by a hash of the pair) of the
    held-out pages; the other half stays in the index, so a held-out command's utility has
    neighbours there, as a known command has for a user (eval_commands --unseen-pages measures
    the stricter case of a page with no neighbour at all)."""
    if split_of(entry.source, entry.page) != "holdout":
        return False
    digest = hashlib.sha256(f"{entry.description}\n{entry.command}".encode()).digest()
    return digest[0] % 2 == 0


def clean_description(text: str) -> str:
    """One line, no trailing colon or full stop, no Markdown backticks or list bullets."""
    text = " ".join(text.replace("`", "").split()).lstrip("•*- ").strip()
    while text and text[-1] in ":.":
        text = text[:-1].rstrip()
    return text


def usable_pair(description: str, command: str) -> bool:
    return (
        3 <= len(description) <= MAX_DESCRIPTION_CHARS
        and re.search(r"[A-Za-z]{2}", description) is not None
        and bool(command.strip())
        and len(command) <= MAX_COMMAND_CHARS
        and command.count("\n") < MAX_COMMAND_LINES
    )


def normalised(command: str) -> str:
    return " ".join(command.split())


# -- tldr --------------------------------------------------------------------------------------------


_NOT_A_SUMMARY = ("More information", "See also", "Some subcommands", "This command is an alias", "Note:")


def tldr_summary(page: tldr.TldrPage) -> str:
    """What the page's program is for: its summary lines without links, cross-references and notes."""
    lines = [line for line in page.summary if not line.startswith(_NOT_A_SUMMARY) and "tldr " not in line]
    return clean_description(" ".join(lines))


def tldr_entries(archive: Path, summaries: dict[tuple[str, str], str], jobs: int = 2) -> list[Example]:
    pages = [(stem, tldr.parse_page(markdown)) for _, stem, markdown in tldr.read_archive_pages(archive)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda item: tldr.page_pairs(item[1]), pages))
    for stem, page in pages:
        summaries.setdefault(("tldr", stem), tldr_summary(page))  # common/ comes before linux/
    licence = SOURCES["tldr"]["licence"]
    return [
        Example(description, command, "tldr", stem, licence)
        for (stem, _), pairs in zip(pages, results)
        for description, command, _ in pairs
    ]


# -- cheat ------------------------------------------------------------------------------------------


def parse_cheat_sheet(text: str) -> list[tuple[str, str]]:
    """(description, command) pairs of a cheat sheet: a run of ``#`` lines, then the command
    lines up to the next blank or comment line."""
    pairs, comment, command = [], [], []

    def flush() -> None:
        if comment and command:
            pairs.append((clean_description(" ".join(comment)), "\n".join(command)))
        command.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            flush()
            comment = []
        elif line.lstrip().startswith("#"):
            if command:  # a comment after commands starts the next pair
                flush()
                comment = []
            comment.append(line.lstrip()[1:].strip())
        else:
            command.append(line)
    flush()
    return [(d[3:] if d.startswith("To ") else d, c) for d, c in pairs]


def read_sdist_members(sdist: Path, folder: str) -> list[tuple[str, str]]:
    """(file name, text) of the files directly inside `folder` of an sdist tarball, sorted."""
    found = []
    try:
        with tarfile.open(sdist, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.isfile() and len(parts) >= 2 and parts[-2] == folder:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found.append((parts[-1], handle.read().decode("utf-8", errors="replace")))
    except (OSError, tarfile.TarError) as error:
        raise TrainingError(f"cannot read {sdist}: {error}") from None
    return sorted(found)


def cheat_entries(sdist: Path) -> list[Example]:
    entries = []
    for name, text in read_sdist_members(sdist, "cheatsheets"):
        for description, command in parse_cheat_sheet(text):
            entries.append(Example(description, command, "cheat", name, SOURCES["cheat"]["licence"]))
    return entries


# -- eg ----------------------------------------------------------------------------------------------


def parse_eg_page(text: str) -> list[tuple[str, str]]:
    """(description, command) pairs of an eg page: the paragraph before each indented code block
    (or the heading when no paragraph precedes it). A block with ``$ `` lines keeps those (the
    rest is the output they print); otherwise every line is a command."""
    pairs: list[tuple[str, str]] = []
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    description = ""
    for block in blocks:
        if all(line.startswith("    ") for line in block):
            code = [line[4:] for line in block]
            prompted = [line[2:] for line in code if line.startswith("$ ")]
            commands = prompted if prompted else code
            if description and commands:
                description = clean_description(description)
                if len(description) > MAX_DESCRIPTION_CHARS:  # a long paragraph: its last sentence introduces the code
                    description = clean_description(re.split(r"(?<=[.:;])\s", description)[-1])
                pairs.append((description, "\n".join(commands)))
                description = ""
        else:
            first = block[0].lstrip()
            description = first.lstrip("#").strip() if first.startswith("#") else " ".join(block)
    return pairs


def eg_entries(sdist: Path) -> list[Example]:
    entries = []
    for name, text in read_sdist_members(sdist, "examples"):
        if not name.endswith(".md"):
            continue
        for description, command in parse_eg_page(text):
            entries.append(Example(description, command, "eg", name[:-3], SOURCES["eg"]["licence"]))
    return entries


# -- man pages ---------------------------------------------------------------------------------------

_SECTION_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/&-]*$")
_PROMPT = re.compile(r"^(\$|%|#|>)\s+")


def render_man(source: bytes) -> str:
    """A man page as plain text (groff, no hyphenation, very long lines: a paragraph is a line)."""
    result = subprocess.run(
        ["groff", "-t", "-man", "-Tutf8", "-rLL=2000n", "-rHY=0", "-P-cbou"],
        input=source,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.stdout.decode("utf-8", errors="replace")


def man_section(rendered: str, names: tuple[str, ...] = ("EXAMPLES", "EXAMPLE")) -> list[str]:
    lines, inside = [], False
    for line in rendered.splitlines():
        if _SECTION_HEADING.match(line):
            inside = line.strip() in names
            continue
        if inside:
            lines.append(line.rstrip())
    return lines


def man_summary(rendered: str) -> str:
    """The NAME line's description: 'find - search for files' -> 'search for files'."""
    name = " ".join(" ".join(man_section(rendered, ("NAME",))).split())
    return clean_description(re.split(r"\s[-‐—]\s", name, maxsplit=1)[-1]) if name else ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_man_examples(rendered: str, program: str) -> list[tuple[str, str]]:
    """(description, command) pairs from a rendered page's EXAMPLES section: a block indented
    deeper than the paragraph before it is code; its prompt-marked lines (``$ ``) are the
    commands when it has any. A command must name `program`; `bash -n` is checked later."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in man_section(rendered):
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    pairs, prose, prose_indent = [], "", None
    name_pattern = re.compile(rf"(^|[\s/|;(`]){re.escape(program)}($|\s)")
    for block in blocks:
        indent = min(_indent(line) for line in block)
        first = block[0].strip()
        looks_like_prose = first.startswith("•") or (first.endswith((".", ":")) and not _PROMPT.match(first))
        if prose_indent is not None and indent > prose_indent and not looks_like_prose:
            lines = [line.strip() for line in block]
            prompted = [_PROMPT.sub("", line) for line in lines if _PROMPT.match(line)]
            # Continuation lines (after a trailing backslash) of a prompted command have no prompt.
            if prompted:
                commands, keep = [], False
                for line in lines:
                    if _PROMPT.match(line):
                        commands.append(_PROMPT.sub("", line))
                        keep = line.endswith("\\")
                    elif keep:
                        commands.append(line)
                        keep = line.endswith("\\")
            else:
                commands = lines
            command = "\n".join(commands)
            if prose and name_pattern.search(command):
                description = clean_description(prose)
                if len(description) > MAX_DESCRIPTION_CHARS:
                    description = clean_description(re.split(r"(?<=[.:;])\s", description)[0])
                pairs.append((description, command))
                prose = ""
        else:
            bullets = [i for i, line in enumerate(block) if line.lstrip().startswith("•")]
            # A subsection heading sits on the line above its first bullet: the bullet's text is the description.
            prose = " ".join(line.strip() for line in block[bullets[-1] if bullets else 0 :])
            prose_indent = indent
    return pairs


def deb_licence(root: Path, package: str) -> str:
    """The licence of the `Files: *` stanza of the package's DEP-5 copyright file, else a pointer."""
    pointer = f"see /usr/share/doc/{package}/copyright"
    copyright_file = root / "usr/share/doc" / package / "copyright"
    try:
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return pointer
    for stanza in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", stanza, re.MULTILINE):
            match = re.search(r"^License:\s*(\S.*)$", stanza, re.MULTILINE)
            if match:
                return f"{match.group(1).strip()} ({pointer})"
    return pointer


def man_entries(
    workdir: Path,
    packages: list[str],
    skipped: Counter,
    summaries: dict[tuple[str, str], str],
    page_licences: dict[tuple[str, str], str],
    jobs: int = 2,
) -> tuple[list[Example], dict[str, str]]:
    """Entries from the man pages of `packages` and the version of each package read. Every
    man1/man8 page's NAME line goes into `summaries` (with its licence in `page_licences`), also
    for a page without EXAMPLES: the index then knows the program by what it is for."""
    entries, versions = [], {}
    for package in packages:
        try:
            deb = download_deb(package, workdir / "debs")
        except TrainingError as error:
            print(f"warning: {error}", file=sys.stderr)
            skipped["package not downloadable"] += 1
            continue
        versions[package] = deb_field(deb, "Version")
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            unpacked = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, check=False)
            if unpacked.returncode != 0:
                skipped["dpkg-deb -x failed"] += 1
                continue
            root = Path(tmp)
            licence = f"{deb_licence(root, package)}; Debian package {package} {versions[package]}"
            sources: list[tuple[str, bytes]] = []
            for section in ("man1", "man8"):
                for page in sorted((root / "usr/share/man" / section).glob("*")):
                    if page.is_symlink() or not page.is_file():
                        continue
                    name = page.name[:-3] if page.name.endswith(".gz") else page.name
                    try:
                        data = page.read_bytes()
                        sources.append((name, gzip.decompress(data) if page.name.endswith(".gz") else data))
                    except (OSError, gzip.BadGzipFile, EOFError):
                        skipped["unreadable man page"] += 1
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                rendered_pages = list(pool.map(lambda item: render_man(item[1]), sources))
            for (name, data), rendered in zip(sources, rendered_pages):
                summary = man_summary(rendered)
                if summary:
                    summaries[("man", name)] = summary
                    page_licences[("man", name)] = licence
                if b"EXAMPLE" in data:
                    for description, command in parse_man_examples(rendered, name.rsplit(".", 1)[0]):
                        entries.append(Example(description, command, "man", name, licence))
    return entries, versions


# -- the index ---------------------------------------------------------------------------------------


def fetch_sdist(requirement: str, workdir: Path) -> Path:
    """The sdist tarball of `requirement` in workdir, downloaded with pip unless already there."""
    name, _, version = requirement.partition("==")
    cached = sorted(workdir.glob(f"{name}-{version}.tar.gz"))
    if cached:
        return cached[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", requirement]
    result = subprocess.run([*command, "-d", str(workdir)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TrainingError(f"pip download {requirement} failed: {result.stderr.strip()[-500:]}")
    return fetch_sdist(requirement, workdir)


def check_syntax(entries: list[Example], skipped: Counter, jobs: int = 2) -> list[Example]:
    """Entries whose command `bash -n` accepts (tldr's are checked by tldr.py already)."""
    pending = [entry for entry in entries if entry.source != "tldr"]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        verdicts = dict(zip(map(id, pending), pool.map(lambda e: bash_accepts(e.command + "\n"), pending)))
    kept = [entry for entry in entries if verdicts.get(id(entry), True)]
    skipped["bash -n failed"] += len(entries) - len(kept)
    return kept


def build_examples(
    out: Path, workdir: Path, archive: Path, cheat: Path | None, eg: Path | None, packages: list[str], jobs: int = 2
) -> dict:
    """Build the index and the held-out set into `out`; return counts by source and split."""
    workdir.mkdir(parents=True, exist_ok=True)
    skipped: Counter = Counter()
    summaries: dict[tuple[str, str], str] = {}
    page_licences: dict[tuple[str, str], str] = {}
    entries = tldr_entries(archive, summaries, jobs)
    entries += cheat_entries(cheat or fetch_sdist(CHEAT_SDIST, workdir))
    entries += eg_entries(eg or fetch_sdist(EG_SDIST, workdir))
    man, versions = man_entries(workdir, packages, skipped, summaries, page_licences, jobs)
    entries += man
    entries = [entry for entry in entries if usable_pair(entry.description, entry.command)]
    entries = check_syntax(entries, skipped, jobs)
    unique: dict[tuple[str, str], Example] = {}
    for entry in entries:
        unique.setdefault((entry.description.lower(), normalised(entry.command)), entry)
    skipped["duplicate"] += len(entries) - len(unique)
    holdout = [entry for entry in unique.values() if held_out(entry)]
    held_commands = {normalised(entry.command) for entry in holdout}
    kept = [entry for entry in unique.values() if not held_out(entry)]
    index_entries = [entry for entry in kept if normalised(entry.command) not in held_commands]
    skipped["same command as a held-out pair"] += len(kept) - len(index_entries)
    out.mkdir(parents=True, exist_ok=True)
    written = write_index(out / INDEX_FILE, index_entries, SOURCES, summaries=summaries, page_licences=page_licences)
    write_pairs(out / HOLDOUT_FILE, holdout, "holdout")
    man_licences = Counter(
        licence.split(" (")[0].split(";")[0]
        for licence in [e.licence for e in index_entries if e.source == "man"] + list(page_licences.values())
    )
    summary_counts = Counter(source for (source, _), summary in summaries.items() if summary)
    write_attribution(
        out / ATTRIBUTION_FILE, Counter(e.source for e in index_entries), versions, summary_counts, man_licences
    )
    return {
        "index": written,
        "holdout": len(holdout),
        "by_source": dict(Counter(e.source for e in index_entries)),
        "holdout_by_source": dict(Counter(e.source for e in holdout)),
        "man_packages": len(versions),
        "skipped": skipped,
    }


def write_pairs(path: Path, entries: list[Example], split: str) -> None:
    """Evaluation pairs as JSON lines (what eval_commands.read_holdout reads)."""
    with path.open("w", encoding="utf-8") as handle:
        for entry in entries:
            record = {
                "description": entry.description,
                "command": entry.command,
                "source": entry.source,
                "page": entry.page,
                "licence": entry.licence,
                "split": split,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def dev_page(source: str, page: str) -> bool:
    """A train page of the dev split: HOLDOUT_PERCENT of the train pages, by a hash salted
    apart from the held-out split's."""
    if split_of(source, page) != "train":
        return False
    digest = hashlib.sha256(f"dev:{source}:{page}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HOLDOUT_PERCENT


def dev_split(index_path: Path, out: Path) -> dict:
    """The split retrieval is tuned on, built from an index alone, so the held-out set is never
    looked at: half of the pairs (by the pair's hash, as `held_out`) of the dev pages go to
    `out/examples_holdout.jsonl`, the rest of the index (minus any entry with a dev pair's
    command) to `out/examples.sqlite` with the same page summaries. Evaluate it with
    ``eval_commands --index out/examples.sqlite --holdout out/examples_holdout.jsonl``."""
    index = ExampleIndex(index_path)
    entries = index.all_examples()
    summaries, licences = index.page_summaries()
    sources = {name: {k: v for k, v in source.items() if k != "entries"} for name, source in index.sources.items()}
    index.close()

    def is_dev(entry: Example) -> bool:
        digest = hashlib.sha256(f"{entry.description}\n{entry.command}".encode()).digest()
        return dev_page(entry.source, entry.page) and digest[0] % 2 == 0

    dev = [entry for entry in entries if is_dev(entry)]
    dev_commands = {normalised(entry.command) for entry in dev}
    kept = [entry for entry in entries if not is_dev(entry) and normalised(entry.command) not in dev_commands]
    out.mkdir(parents=True, exist_ok=True)
    written = write_index(out / INDEX_FILE, kept, sources, summaries=summaries, page_licences=licences)
    write_pairs(out / HOLDOUT_FILE, dev, "dev")
    return {"index": written, "dev": len(dev), "dev_pages": len({(e.source, e.page) for e in dev})}


def few_shot_documents(index_path: Path, out: Path, max_documents: int, few_shot: int = 3) -> dict:
    """Training documents in the prompt format of the server's action, written as `out/tldr.jsonl`
    (the corpus format `bashlsp-train --pretrain` reads): for an index entry, its `few_shot`
    best neighbours in the index that are not the entry itself (nor the same command), ahead of
    a script that is the shebang, the entry's description as a comment and its command.

    Entries of held-out pages are left out, so the model never sees a page the evaluation asks
    about. About 2 % of the documents (by a hash) are the run's holdout. Entries are taken
    evenly spaced, at most `max_documents`."""
    index = ExampleIndex(index_path)
    entries = [entry for entry in index.all_examples() if split_of(entry.source, entry.page) == "train"]
    step = max(1, len(entries) // max(1, max_documents))
    chosen = entries[::step][:max_documents]
    out.mkdir(parents=True, exist_ok=True)
    counts = Counter()
    with (out / "tldr.jsonl").open("w", encoding="utf-8") as handle:
        for entry in chosen:
            own = normalised(entry.command)
            found = index.search(entry.description, few_shot + 3)
            neighbours = [e for e in found if normalised(e.command) != own][:few_shot]
            text = few_shot_prompt(neighbours, f"#!/bin/bash\n# {entry.description}\n") + entry.command + "\n"
            digest = hashlib.sha256(text.encode()).digest()
            split = "holdout" if digest[0] < 5 else "train"
            counts[split] += 1
            record = {"page": entry.page, "platform": f"fewshot-{entry.source}", "text": text, "split": split}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return dict(counts)


def write_attribution(
    path: Path,
    counts: Counter,
    versions: dict[str, str],
    summaries: Counter | None = None,
    man_licences: Counter | None = None,
) -> None:
    """EXAMPLES-ATTRIBUTION.md: each source credited, the licence decision, the Debian packages
    read. `summaries`: page summaries by source; `man_licences`: man-page texts (examples and
    NAME lines) by licence."""
    summaries = summaries or Counter()
    lines = [
        "# Command examples: sources and licences",
        "",
        f"`{INDEX_FILE}` and `{HOLDOUT_FILE}` hold `# description` -> command pairs built by",
        "`python -m bashlsp.training.corpus.examples`, and one-line summaries of what pages' programs",
        "are for (tldr page summaries, man-page NAME lines). Every entry and every summary records its",
        "source and licence (`examples.licence`, `pages.licence`).",
        "",
    ]
    for name, source in SOURCES.items():
        lines.append(
            f"- **{name}** ({counts.get(name, 0)} entries, {summaries.get(name, 0)} page summaries in the index):"
            f" {source['credit']}."
        )
    lines += [
        "",
        "## Licence decision",
        "",
        "bashlsp's code is MIT. These two files are not: they are data, distributed under the licences",
        "of the texts they were taken from, recorded per entry and per summary, with each source",
        "credited here. They are not relicensed under MIT, and the wheel's MIT licence does not cover",
        "them. In particular the man-page texts (EXAMPLES commands with the sentence that introduces",
        "them, and NAME lines) keep their Debian package's licence, mostly GPL (counts below; it is the",
        "`Files: *` licence of the package's copyright file, and where a stanza there names the manual",
        "pages, that stanza's licence is the one that applies); the GPL",
        "texts' source is the Debian package and version named in each entry's licence (Debian keeps",
        "the source of every released version), and this builder reproduces the extraction. Entries",
        "whose licence reads 'see /usr/share/doc/PACKAGE/copyright' had no DEP-5 `Files: *` licence;",
        "their licence is that file's. This has not been reviewed by a lawyer. A distribution that",
        "must be MIT only can build the index without any man-page text: `--packages` with no package",
        "names (tldr is CC BY 4.0, cheat MIT or GPL-3.0, eg MIT).",
        "",
    ]
    if man_licences:
        lines.append("Man-page texts in the index by licence (examples and NAME lines together):")
        lines.append("")
        lines.append(", ".join(f"{licence} {n}" for licence, n in man_licences.most_common()))
        lines.append("")
    lines += [
        "tldr-pages: https://github.com/tldr-pages/tldr, licence https://creativecommons.org/licenses/by/4.0/;",
        "changes: placeholders replaced with concrete values, descriptions turned into shell comments.",
        "",
        "Debian packages whose manual pages were read (version):",
        "",
        ", ".join(f"{package} {version}" for package, version in sorted(versions.items())),
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.examples", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the index and the held-out set")
    parser.add_argument("--workdir", type=Path, required=True, help="downloads and unpacked packages go here")
    parser.add_argument("--archive", type=Path, default=tldr.DEFAULT_ARCHIVE, help="tldr-pages tarball")
    parser.add_argument("--cheat", type=Path, help="cheat-2.5.1.tar.gz (default: pip download into --workdir)")
    parser.add_argument("--eg", type=Path, help="eg-1.2.3.tar.gz (default: pip download into --workdir)")
    parser.add_argument("--packages", nargs="*", help="Debian packages for man pages (default: MAN_PACKAGES)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--training-docs",
        type=Path,
        metavar="DIR",
        help="instead of building: write few-shot training documents from the index in --out into DIR",
    )
    parser.add_argument("--max-docs", type=int, default=12_000, help="with --training-docs: at most this many")
    parser.add_argument(
        "--dev-split",
        type=Path,
        metavar="DIR",
        help="instead of building: write the tuning split of the index in --out (train pages only) into DIR",
    )
    arguments = parser.parse_args(argv)
    if arguments.dev_split is not None:
        try:
            counts = dev_split(arguments.out / INDEX_FILE, arguments.dev_split)
        except BashlspError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"dev split in {arguments.dev_split}: {counts}")
        return 0
    if arguments.training_docs is not None:
        try:
            counts = few_shot_documents(arguments.out / INDEX_FILE, arguments.training_docs, arguments.max_docs)
        except BashlspError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"few-shot documents in {arguments.training_docs / 'tldr.jsonl'}: {counts}")
        return 0
    try:
        counts = build_examples(
            arguments.out,
            arguments.workdir,
            arguments.archive,
            arguments.cheat,
            arguments.eg,
            MAN_PACKAGES if arguments.packages is None else arguments.packages,
            arguments.jobs,
        )
    except BashlspError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"index: {counts['index']} entries {counts['by_source']}; {counts['man_packages']} Debian packages read")
    print(f"held out: {counts['holdout']} pairs {counts['holdout_by_source']}")
    print("left out: " + ", ".join(f"{reason} {n}" for reason, n in counts["skipped"].most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
