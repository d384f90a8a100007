"""Build the shell-script corpus for the default model from Debian binary and source packages.

    python -m bashlsp.training.corpus.debian --out DIR [--packages TSV] [--sources TSV] [--jobs N]
        [--lock packages.lock] [--source-lock sources.lock] [--source-cap-mb MB] [--no-sources]

Binary packages (`debian-shell-packages.tsv`): ``apt-get download`` the .deb into a cache (never
installed) and ``dpkg-deb -x`` it into a temporary directory. Source packages
(`debian-source-packages.tsv`): ``apt-get source --download-only`` through a private deb-src
apt configuration, tarballs read as streams (see `debsrc`). Every file gets one verdict from
`filters.judge` (shell by `model/shell.py`, at most 1 MiB, UTF-8, not generated, not another
language in disguise, accepted by ``bash -n``); then exact, whitespace-only and MinHash
near-duplicates are dropped across the whole corpus, and each source package adds at most
SOURCE_CAP_BYTES. Output in DIR:

- ``files/<sha256[:2]>/<sha256>.sh``: one file per unique script (sha256 of its bytes);
- ``manifest.jsonl``: one record per file: sha256, file, package, source, origin ('deb' or
  'dsc'), version, path (installed path, or the path in the source tree), licence, bytes,
  reason, split. A package's files stay together under its name, with their paths;
- ``packages.lock`` and ``sources.lock``: the exact versions used (copies are committed beside
  this module as `debian-packages.lock` and `debian-sources.lock`).

Re-runs are cheap: downloads are cached (``--workdir``, ``--source-workdir``) and so is each
package's extraction (``--cache``, keyed by the sha256 of its .deb/.dsc); only the corpus-wide
passes run again. A package that cannot be fetched (a 404) is reported and skipped.

Why one module of ~700 lines: the build is one pipeline (lists and locks, download, extract,
judge, corpus-wide dedupe, write) whose stages share the package records; the parts that stand
alone live beside it (`debsrc.py`, `filters.py`, `holdout.py`).

The split is by source package, so no package's style leaks from train into holdout: see
`HOLDOUT_PACKAGES` and `HOLDOUT_SOURCES`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ...model.errors import BashlspError, TrainingError
from ...model.shell import HEAD_BYTES
from . import debsrc
from .filters import NearDuplicates, judge

PACKAGES_TSV = Path(__file__).with_name("debian-shell-packages.tsv")
PACKAGES_V2_TSV = Path(__file__).with_name("debian-shell-packages-v2.tsv")
COMMITTED_LOCK = Path(__file__).with_name("debian-packages.lock")


# Chosen once with `choose_holdout_packages` on the 62 surveyed packages (10 source packages,
# 11 binary packages, 130 files and 658 KB by the survey's figures; the build of 2026-11-21 kept
# 133 files, 0.71 MB of 12.42 MB, about 6 % of the bytes) and frozen here, so that adding packages to the lists later never moves a file between splits.
# Packages not named here are "train".
HOLDOUT_PACKAGES = frozenset(
    {
        "bash-builtins",
        "bash-doc",
        "console-setup",
        "dkms",
        "docker.io",
        "ifupdown",
        "initramfs-tools",
        "initramfs-tools-core",
        "kdump-tools",
        "rbenv",
        "yadm",
    }
)

# Corpus v2 (issue 15) holds out more, chosen by hand for their styles among the packages that
# the archive served, whole source packages at a time, and frozen like the first set: init
# scripts (sysvinit's initscripts, sysv-rc, sysvinit-utils; orphan-sysvinit-scripts), libraries
# (liquidprompt, bats-assert/-support/-file), tools (surfraw, openresolv, isc-dhcp's client
# scripts) and test suites (grep, btrfs-progs, libnbd). Binary packages of
# debian-shell-packages-v2.tsv:
HOLDOUT_PACKAGES_V2 = frozenset(
    {
        "bats-assert",
        "bats-file",
        "bats-support",
        "initscripts",
        "isc-dhcp-client",
        "liquidprompt",
        "openresolv",
        "orphan-sysvinit-scripts",
        "surfraw",
        "sysv-rc",
        "sysvinit-utils",
    }
)
# Source packages (besides the sources of the holdout binary packages, see `source_split`):
HOLDOUT_SOURCES = frozenset({"btrfs-progs", "grep", "isc-dhcp", "libnbd"})

# Most bytes one source package adds, so that one test suite's style does not dominate.
SOURCE_CAP_BYTES = 3_000_000


@dataclass(frozen=True)
class PackageSpec:
    """One row of a package list: name, licence and the survey's figures (unique files, KB)."""

    name: str
    licence: str
    surveyed_files: int = 0
    surveyed_kb: int = 0


def read_package_list(path: Path) -> list[PackageSpec]:
    """Read a package TSV (package, files, KB, licence; '#' starts a comment line)."""
    specs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 4:
            raise TrainingError(f"{path}:{number}: expected 4 tab-separated columns, got {len(columns)}")
        name, files, kb, licence = (column.strip() for column in columns)
        try:
            specs.append(PackageSpec(name, licence, int(files), int(kb)))
        except ValueError as error:
            raise TrainingError(f"{path}:{number}: files and KB must be integers ({error})") from None
    return specs


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


# Binary packages in the lists whose source package has another name (`dpkg-deb -f X Source`).
# Packages built from one source share authors and style, so they always go to the same split.
SOURCE_OF = {
    "bash-builtins": "bash",
    "bash-doc": "bash",
    "initramfs-tools-core": "initramfs-tools",
    "initscripts": "sysvinit",
    "sysv-rc": "sysvinit",
    "sysvinit-utils": "sysvinit",
    "isc-dhcp-client": "isc-dhcp",
}


def source_of(package: str) -> str:
    return SOURCE_OF.get(package, package)


def choose_holdout_packages(
    specs: list[PackageSpec], *, min_packages: int = 5, min_kb: int = 600, max_source_kb: int = 300
) -> list[str]:
    """Pick holdout packages deterministically: walk the eligible source packages in order of
    sha256(source name) and take all their binary packages until at least `min_packages`
    packages and `min_kb` KB (by the survey's figures) are held out.

    Not eligible: sources with fewer than 3 files, sources made of giant files (over 50 KB a
    file on average: neofetch, screenfetch, libtool, rkhunter) and sources over
    `max_source_kb` (abs-guide, live-build): a holdout dominated by one program measures that
    program, not shell in general, and the big packages are worth more in training.
    """
    groups: dict[str, list[PackageSpec]] = {}
    for spec in specs:
        groups.setdefault(source_of(spec.name), []).append(spec)
    chosen: list[str] = []
    total_kb = 0
    for source in sorted(groups, key=_name_hash):
        files = sum(spec.surveyed_files for spec in groups[source])
        kb = sum(spec.surveyed_kb for spec in groups[source])
        if files < 3 or kb > 50 * files or kb > max_source_kb:
            continue
        if len(chosen) >= min_packages and total_kb >= min_kb:
            break
        chosen.extend(spec.name for spec in groups[source])
        total_kb += kb
    return sorted(chosen)


def split_of(package: str) -> str:
    """'holdout' for the frozen holdout binary packages (both sets), else 'train'."""
    return "holdout" if package in HOLDOUT_PACKAGES | HOLDOUT_PACKAGES_V2 else "train"


def source_split(source: str) -> str:
    """'holdout' for a source package held out by name or as the source of a holdout binary
    package (bash for bash-doc), else 'train'."""
    held_out = HOLDOUT_SOURCES | {source_of(package) for package in HOLDOUT_PACKAGES | HOLDOUT_PACKAGES_V2}
    return "holdout" if source in held_out else "train"


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, check=False, **kwargs)
    except FileNotFoundError:
        raise TrainingError(f"{command[0]} not found: building the corpus needs a Debian system") from None


def deb_field(deb: Path, name: str) -> str:
    """One control field of a .deb (`dpkg-deb -f`), e.g. its exact 'Version'."""
    result = _run(["dpkg-deb", "-f", str(deb), name], text=True)
    if result.returncode != 0:
        raise TrainingError(f"dpkg-deb -f {deb} {name} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def download_deb(package: str, workdir: Path, version: str | None = None) -> Path:
    """The .deb of `package` (at `version` if given) in `workdir`, downloaded with
    ``apt-get download`` unless already there. Nothing is installed."""
    workdir.mkdir(parents=True, exist_ok=True)
    # Package names cannot contain '_', so "<name>_" matches this package only.
    cached = sorted(workdir.glob(f"{package}_*.deb"))
    if version is not None:
        cached = [deb for deb in cached if deb_field(deb, "Version") == version]
    if len(cached) == 1:
        return cached[0]
    if len(cached) > 1:
        raise TrainingError(
            f"several cached .deb files for {package} in {workdir}: "
            f"{', '.join(deb.name for deb in cached)}; delete the stale ones or pin versions with --lock"
        )
    target = package if version is None else f"{package}={version}"
    result = _run(["apt-get", "download", target], cwd=workdir, text=True)
    if result.returncode != 0:
        raise TrainingError(f"apt-get download {target} failed: {result.stderr.strip()[-500:]}")
    return download_deb(package, workdir, version)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ShellFile:
    """A script kept from a package: its path as installed, text, why it counts as shell."""

    path: str
    text: str
    reason: str
    licence: str | None = None  # None: the package's licence

    @property
    def data(self) -> bytes:
        return self.text.encode("utf-8")


@dataclass
class PackageScripts:
    """What one .deb gave: the kept scripts and counts of what was dropped or ignored, by reason.

    `dropped` counts shell candidates that failed a check ('bash -n failed', 'not utf-8',
    'too large', 'no code', 'duplicate', 'near duplicate'); `ignored` counts the other files
    ('not shell', 'binary', 'symlink', 'special file').
    """

    package: str
    version: str
    source: str
    deb_sha256: str  # of the .deb, or of the .dsc for a source package
    files: list[ShellFile] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)
    origin: str = "deb"  # 'deb' (a binary package) or 'dsc' (a source package's tarballs)
    licence: str | None = None  # a source package's main licence (debian/copyright's `Files: *`)


def _classify_tree(root: Path, result: PackageScripts) -> None:
    """Walk an unpacked package (without following symlinks) and fill `result`."""
    seen_in_package: set[str] = set()
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()
        for name in sorted(names):
            file_path = Path(directory, name)
            installed_path = "/" + file_path.relative_to(root).as_posix()
            mode = file_path.lstat().st_mode
            if stat.S_ISLNK(mode):
                result.ignored["symlink"] += 1
                continue
            if not stat.S_ISREG(mode):
                result.ignored["special file"] += 1
                continue
            with file_path.open("rb") as handle:
                head = handle.read(HEAD_BYTES)
            verdict = judge(installed_path, head, file_path.stat().st_size, file_path.read_bytes)
            if not verdict.kept:
                (result.ignored if verdict.ignored else result.dropped)[verdict.reason] += 1
                continue
            digest = sha256_hex(verdict.text.encode("utf-8"))
            if digest in seen_in_package:
                result.dropped["duplicate"] += 1
                continue
            seen_in_package.add(digest)
            result.files.append(ShellFile(installed_path, verdict.text, verdict.reason))


def extract_shell_files(deb: Path, package: str | None = None, tmp_parent: Path | None = None) -> PackageScripts:
    """Unpack `deb` with ``dpkg-deb -x`` into a temporary directory (never installing it) and
    return its shell scripts. Exact duplicates inside the package are dropped here; duplicates
    across packages are dropped by `CorpusWriter`."""
    deb = Path(deb)
    package = package or deb_field(deb, "Package")
    result = PackageScripts(
        package=package,
        version=deb_field(deb, "Version"),
        # "Source: name (version)" when it differs from the binary package; absent when equal.
        source=deb_field(deb, "Source").split(" ")[0] or package,
        deb_sha256=sha256_hex(deb.read_bytes()),
    )
    with tempfile.TemporaryDirectory(prefix="unpack-", dir=tmp_parent) as tmp:
        unpacked = _run(["dpkg-deb", "-x", str(deb), tmp], text=True)
        if unpacked.returncode != 0:
            raise TrainingError(f"dpkg-deb -x {deb} failed: {unpacked.stderr.strip()}")
        _classify_tree(Path(tmp), result)
        copyright_file = Path(tmp, "usr/share/doc", package, "copyright")
        if copyright_file.is_file() and not copyright_file.is_symlink():
            paragraphs = debsrc.parse_copyright(copyright_file.read_text(encoding="utf-8", errors="replace"))
            result.licence = debsrc.licence_of("", paragraphs, "see /usr/share/doc/" + package + "/copyright")
    return result


def extract_source_scripts(dsc: Path, source: str) -> PackageScripts:
    """The shell scripts of a source package's tarballs (read as streams, see `debsrc`), each
    with its licence from debian/copyright. Exact duplicates inside the package are dropped."""
    dsc = Path(dsc)
    version, kept, dropped, ignored, copyright_text = debsrc.extract_source_files(dsc)
    result = PackageScripts(source, version, source, sha256_hex(dsc.read_bytes()), origin="dsc")
    result.dropped.update(dropped)
    result.ignored.update(ignored)
    paragraphs = debsrc.parse_copyright(copyright_text or "")
    default = "see debian/copyright" if copyright_text else "unknown (no debian/copyright)"
    seen: set[str] = set()
    for path, text, reason in kept:
        digest = sha256_hex(text.encode("utf-8"))
        if digest in seen:
            result.dropped["duplicate"] += 1
            continue
        seen.add(digest)
        result.files.append(ShellFile(path, text, reason, debsrc.licence_of(path, paragraphs, default)))
    result.licence = debsrc.licence_of("", paragraphs, default)  # only `Files: *` matches ""
    return result


# Bump when the filters change what a package gives: cached extractions of older versions are redone.
EXTRACTION_VERSION = 2


def cached_extraction(cache: Path, key: str, extract) -> PackageScripts:
    """`extract()`, or its result saved under `cache` by an earlier run (a rebuild after an
    interruption or a list change redoes only new packages). `key` names the input exactly
    (package and the sha256 of its .deb/.dsc)."""
    path = Path(cache) / f"{key}.v{EXTRACTION_VERSION}.json"
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        return PackageScripts(
            record["package"],
            record["version"],
            record["source"],
            record["deb_sha256"],
            [ShellFile(**shell_file) for shell_file in record["files"]],
            Counter(record["dropped"]),
            Counter(record["ignored"]),
            record["origin"],
            record["licence"],
        )
    scripts = extract()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    record = {
        "package": scripts.package,
        "version": scripts.version,
        "source": scripts.source,
        "deb_sha256": scripts.deb_sha256,
        "files": [vars(shell_file) for shell_file in scripts.files],
        "dropped": dict(scripts.dropped),
        "ignored": dict(scripts.ignored),
        "origin": scripts.origin,
        "licence": scripts.licence,
    }
    temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)
    return scripts


@dataclass
class PackageRecord:
    """One line of packages.lock (or sources.lock)."""

    package: str
    version: str
    source: str
    licence: str
    split: str
    deb_sha256: str
    files: int = 0
    bytes: int = 0
    origin: str = "deb"


class CorpusWriter:
    """Writes unique scripts, the manifest and the locks into an output directory.

    Feed packages in a fixed order with `add`; the first package to bring a script (or a near
    copy of it, see `filters.NearDuplicates`) keeps it and later copies count as duplicates.
    Give holdout packages first, so a script shared by a holdout and a train package stays in
    holdout only and nothing leaks into training.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.files_dir = self.out / "files"
        # A rebuild replaces the previous Debian output (not other sources' files in `out`).
        shutil.rmtree(self.files_dir, ignore_errors=True)
        self.files_dir.mkdir(parents=True)
        self.manifest_path = self.out / "manifest.jsonl"
        self._manifest = self.manifest_path.open("w", encoding="utf-8")
        # Which file each corpus-wide copy was dropped for, to audit the thresholds.
        self._copies = (self.out / "duplicates.jsonl").open("w", encoding="utf-8")
        self._duplicates = NearDuplicates()
        self.packages: list[PackageRecord] = []
        self.dropped: Counter = Counter()
        self.ignored: Counter = Counter()
        self.failed: list[tuple[str, str]] = []  # (package, why) of packages that could not be read

    def add(self, scripts: PackageScripts, licence: str, split: str, cap_bytes: int | None = None) -> PackageRecord:
        """Write the package's new scripts. With `cap_bytes`, stop at that many bytes (the rest
        counts as 'over the package cap'), taking files in the order of sha256(path) so the cap
        samples every directory instead of the first ones in the tarball."""
        record = PackageRecord(
            scripts.package, scripts.version, scripts.source, licence, split, scripts.deb_sha256, origin=scripts.origin
        )
        self.dropped.update(scripts.dropped)
        self.ignored.update(scripts.ignored)
        files = scripts.files
        if cap_bytes is not None:
            files = sorted(files, key=lambda shell_file: sha256_hex(shell_file.path.encode("utf-8")))
        for shell_file in files:
            data = shell_file.data
            if cap_bytes is not None and record.bytes + len(data) > cap_bytes:
                self.dropped["over the package cap"] += 1
                continue
            digest = sha256_hex(data)
            copy = self._duplicates.check(digest, shell_file.text)
            if copy is not None:
                reason, kept = copy
                self.dropped[reason] += 1
                dropped = {"package": scripts.package, "path": shell_file.path, "reason": reason, "kept": kept}
                self._copies.write(json.dumps(dropped, ensure_ascii=False) + "\n")
                continue
            relative = f"files/{digest[:2]}/{digest}.sh"
            target = self.out / relative
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(data)
            manifest_record = {
                "sha256": digest,
                "file": relative,
                "package": scripts.package,
                "source": scripts.source,
                "origin": scripts.origin,
                "version": scripts.version,
                "path": shell_file.path,
                "licence": shell_file.licence or licence,
                "bytes": len(data),
                "reason": shell_file.reason,
                "split": split,
            }
            self._manifest.write(json.dumps(manifest_record, ensure_ascii=False) + "\n")
            record.files += 1
            record.bytes += len(data)
        self.packages.append(record)
        return record

    def close(self) -> None:
        self._manifest.close()
        self._copies.close()
        write_lock(self.out / "packages.lock", [record for record in self.packages if record.origin == "deb"])
        sources = [record for record in self.packages if record.origin == "dsc"]
        if sources:
            write_lock(self.out / "sources.lock", sources)


LOCK_HEADER = "# package\tversion\tsource\tlicence\tsplit\tfiles\tbytes\tdeb_sha256\n"


def write_lock(path: Path, records: list[PackageRecord]) -> None:
    """Write the exact versions used, one package a line, sorted by name."""
    lines = [
        "# Debian packages behind the default model's shell corpus (bashlsp.training.corpus.debian).\n",
        "# files/bytes: unique scripts kept from the package; deb_sha256: the .deb that was unpacked\n",
        "# (for a source package: its .dsc, whose checksums pin every tarball).\n",
        LOCK_HEADER,
    ]
    for record in sorted(records, key=lambda record: record.package):
        lines.append(
            f"{record.package}\t{record.version}\t{record.source}\t{record.licence}\t{record.split}\t"
            f"{record.files}\t{record.bytes}\t{record.deb_sha256}\n"
        )
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_lock_versions(path: Path) -> dict[str, str]:
    """package → version from a packages.lock, to rebuild with exactly those versions."""
    versions = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        package, version = line.split("\t")[:2]
        versions[package] = version
    return versions


def build_corpus(
    specs: list[PackageSpec],
    out: Path,
    workdir: Path,
    *,
    jobs: int = 2,
    versions: dict[str, str] | None = None,
    source_specs: list[debsrc.SourceSpec] = (),
    source_workdir: Path | None = None,
    source_versions: dict[str, str] | None = None,
    source_cap_bytes: int | None = SOURCE_CAP_BYTES,
    cache: Path | None = None,
) -> CorpusWriter:
    """Download, extract and write every binary package in `specs` and source package in
    `source_specs`; returns the closed writer, whose `packages`, `dropped`, `ignored` and
    `failed` make up the summary. A package that cannot be fetched or read (a 404, a broken
    tarball) is reported in `failed` and the build goes on. With `cache`, extractions are kept
    there and a re-run only downloads and reads what is new."""
    versions = versions or {}
    source_versions = source_versions or {}
    for kind, names in (("packages", [s.name for s in specs]), ("source packages", [s.name for s in source_specs])):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise TrainingError(f"{kind} listed twice: {', '.join(duplicates)}")
    workdir = Path(workdir)
    unpack_dir = workdir / "unpack"
    unpack_dir.mkdir(parents=True, exist_ok=True)
    source_workdir = Path(source_workdir or workdir.parent / "sources")
    environment = debsrc.private_apt_config(source_workdir / "apt", _run) if source_specs else None

    def extract_deb(spec: PackageSpec) -> PackageScripts:
        deb = download_deb(spec.name, workdir, versions.get(spec.name))
        if cache is None:
            return extract_shell_files(deb, spec.name, unpack_dir)
        key = f"deb-{spec.name}-{sha256_hex(deb.read_bytes())[:16]}"
        return cached_extraction(cache, key, lambda: extract_shell_files(deb, spec.name, unpack_dir))

    def extract_dsc(spec: debsrc.SourceSpec) -> PackageScripts:
        dsc = debsrc.download_source(spec.name, source_workdir, environment, _run, source_versions.get(spec.name))
        if cache is None:
            return extract_source_scripts(dsc, spec.name)
        key = f"dsc-{spec.name}-{sha256_hex(dsc.read_bytes())[:16]}"
        return cached_extraction(cache, key, lambda: extract_source_scripts(dsc, spec.name))

    # Holdout first (see CorpusWriter), then train; binary packages before source packages
    # (a script a binary package installs is credited to it); list order within each.
    jobs_list = []
    for split in ("holdout", "train"):
        jobs_list += [(spec, extract_deb, None) for spec in specs if split_of(spec.name) == split]
        jobs_list += [
            (spec, extract_dsc, source_cap_bytes) for spec in source_specs if source_split(spec.name) == split
        ]

    def attempt(job):
        spec, extract, _ = job
        try:
            return extract(spec)
        except TrainingError as error:
            return error

    writer = CorpusWriter(out)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for (spec, extract, cap), scripts in zip(jobs_list, pool.map(attempt, jobs_list)):
                if isinstance(scripts, TrainingError):
                    writer.failed.append((spec.name, str(scripts)))
                    print(f"{spec.name:24} FAILED: {scripts}", flush=True)
                    continue
                if extract is extract_dsc:
                    record = writer.add(scripts, scripts.licence or "unknown", source_split(spec.name), cap)
                else:
                    # '-' in the list: the licence the package's own copyright file gives.
                    licence = spec.licence if spec.licence != "-" else scripts.licence or "unknown"
                    record = writer.add(scripts, licence, split_of(spec.name))
                print(
                    f"{record.package:24} {record.origin:3} {record.version:32} {record.split:8} "
                    f"{record.files:5} files {record.bytes / 1000:8.1f} KB",
                    flush=True,
                )
    finally:
        writer.close()
    check_sources_within_one_split(writer.packages)
    return writer


def check_sources_within_one_split(records: list[PackageRecord]) -> None:
    """Raise if binary packages of one source package landed in different splits (their shared
    style would leak from training into the holdout): add them to SOURCE_OF/HOLDOUT_PACKAGES."""
    splits_by_source: dict[str, set[str]] = {}
    for record in records:
        splits_by_source.setdefault(record.source, set()).add(record.split)
    mixed = sorted(source for source, splits in splits_by_source.items() if len(splits) > 1)
    if mixed:
        raise TrainingError(f"source packages split across train and holdout: {', '.join(mixed)}")


def format_summary(writer: CorpusWriter) -> str:
    """A human-readable summary: totals, per split, drops by reason, holdout packages."""
    lines = []
    total_files = sum(record.files for record in writer.packages)
    total_bytes = sum(record.bytes for record in writer.packages)
    lines.append(f"packages: {len(writer.packages)}   files kept: {total_files}   size: {total_bytes / 1e6:.2f} MB")
    for split in ("train", "holdout"):
        for origin, kind in (("deb", "binary"), ("dsc", "source")):
            records = [r for r in writer.packages if r.split == split and r.origin == origin]
            lines.append(
                f"  {split:8} {len(records):3} {kind} packages {sum(r.files for r in records):6} files "
                f"{sum(r.bytes for r in records) / 1e6:7.2f} MB"
            )
    lines.append("dropped shell candidates: " + _format_counter(writer.dropped))
    lines.append("other files ignored: " + _format_counter(writer.ignored))
    holdout = sorted(record.package for record in writer.packages if record.split == "holdout")
    lines.append("holdout packages: " + ", ".join(holdout))
    empty = sorted(record.package for record in writer.packages if record.files == 0)
    if empty:
        lines.append("packages that gave no unique script: " + ", ".join(empty))
    for package, why in writer.failed:
        lines.append(f"FAILED {package}: {why}")
    return "\n".join(lines)


def _format_counter(counter: Counter) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counter.most_common()) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.debian", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--packages",
        type=Path,
        action="append",
        help=f"binary package list TSV (repeatable; default: {PACKAGES_TSV.name} and {PACKAGES_V2_TSV.name})",
    )
    parser.add_argument(
        "--sources",
        type=Path,
        action="append",
        help=f"source package list TSV (repeatable; default: {debsrc.SOURCES_TSV.name} beside this module)",
    )
    parser.add_argument("--no-sources", action="store_true", help="binary packages only")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="cache of downloaded .deb files (default: OUT/../debs)"
    )
    parser.add_argument(
        "--source-workdir",
        type=Path,
        default=None,
        help="cache of downloaded source packages and the private deb-src apt config (default: OUT/../sources)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="extractions kept between runs (default: OUT/../extracted)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="packages downloaded and read at once")
    parser.add_argument("--lock", type=Path, default=None, help="a packages.lock: download exactly those versions")
    parser.add_argument(
        "--source-lock", type=Path, default=None, help="a sources.lock: download exactly those source versions"
    )
    parser.add_argument(
        "--source-cap-mb",
        type=float,
        default=SOURCE_CAP_BYTES / 1e6,
        help="most MB of scripts one source package adds (default %(default)s)",
    )
    arguments = parser.parse_args(argv)

    try:
        specs = [
            spec for path in arguments.packages or [PACKAGES_TSV, PACKAGES_V2_TSV] for spec in read_package_list(path)
        ]
        source_specs = []
        if not arguments.no_sources:
            lists = arguments.sources or [debsrc.SOURCES_TSV]
            source_specs = [spec for path in lists for spec in debsrc.read_source_list(path)]
        if not specs and not source_specs:
            raise TrainingError("no packages to fetch")
        if arguments.source_cap_mb <= 0:
            raise TrainingError(f"--source-cap-mb must be positive, got {arguments.source_cap_mb}")
        out = arguments.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        writer = build_corpus(
            specs,
            out,
            arguments.workdir or out.parent / "debs",
            jobs=arguments.jobs,
            versions=read_lock_versions(arguments.lock) if arguments.lock else None,
            source_specs=source_specs,
            source_workdir=arguments.source_workdir or out.parent / "sources",
            source_versions=read_lock_versions(arguments.source_lock) if arguments.source_lock else None,
            source_cap_bytes=int(arguments.source_cap_mb * 1e6),
            cache=arguments.cache or out.parent / "extracted",
        )
    except BashlspError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(writer))
    return 1 if writer.failed else 0


if __name__ == "__main__":
    sys.exit(main())
