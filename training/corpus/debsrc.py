"""Shell scripts from Debian *source* packages: test suites, examples and tools that no binary
package installs (git's t/, coreutils' tests/, bind9's system tests, ...).

The system's apt configuration is never touched: `private_apt_config` writes an apt.conf whose
only sources are ``deb-src`` lines and whose lists and cache live under the build's work
directory, and every apt call gets it through ``APT_CONFIG``. ``apt-get source --download-only``
fetches the .dsc and its tarballs (nothing is unpacked, built or installed); the tarballs are
then read as a stream with `tarfile` (never unpacked to disk), each member judged by
`filters.judge`. Licences come from the package's machine-readable ``debian/copyright``: the
last ``Files:`` paragraph whose patterns match a file's path gives its licence, as DEP-5 says.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ...model.errors import TrainingError
from ...model.shell import HEAD_BYTES
from .filters import judge

SOURCES_TSV = Path(__file__).with_name("debian-source-packages.tsv")
COMMITTED_SOURCE_LOCK = Path(__file__).with_name("debian-sources.lock")

ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEB_SRC_LINES = (
    f"deb-src [signed-by={ARCHIVE_KEYRING}] http://deb.debian.org/debian bookworm main",
    f"deb-src [signed-by={ARCHIVE_KEYRING}] http://deb.debian.org/debian bookworm-updates main",
    f"deb-src [signed-by={ARCHIVE_KEYRING}] http://deb.debian.org/debian-security bookworm-security main",
)
STYLES = frozenset({"test-suite", "tool", "init", "library", "examples"})
_TARBALL = re.compile(r"\.tar(\.(gz|xz|bz2|lzma|zst))?$")
_ORIG_COMPONENT = re.compile(r"\.orig-([A-Za-z0-9][-A-Za-z0-9]*)\.tar")


@dataclass(frozen=True)
class SourceSpec:
    """One row of the source-package list: name, the survey's figures and the kind of code."""

    name: str
    surveyed_files: int
    surveyed_kb: int
    style: str


def read_source_list(path: Path) -> list[SourceSpec]:
    """Read a source-package TSV (source, files, KB, style; '#' starts a comment line)."""
    specs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        columns = [column.strip() for column in line.split("\t")]
        if len(columns) != 4:
            raise TrainingError(f"{path}:{number}: expected 4 tab-separated columns, got {len(columns)}")
        name, files, kb, style = columns
        if style not in STYLES:
            raise TrainingError(f"{path}:{number}: style {style!r} is not one of {', '.join(sorted(STYLES))}")
        try:
            specs.append(SourceSpec(name, int(files), int(kb), style))
        except ValueError as error:
            raise TrainingError(f"{path}:{number}: files and KB must be integers ({error})") from None
    return specs


def private_apt_config(root: Path, run) -> dict[str, str]:
    """The environment for apt calls that see only the deb-src lines, with lists and cache under
    `root`. Runs ``apt-get update`` once (when no Sources index is there yet). `run` is the
    builder's subprocess helper."""
    root = Path(root).resolve()
    for directory in ("etc/sources.list.d", "etc/preferences.d", "lists/partial", "cache/archives/partial"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "etc/sources.list").write_text("\n".join(DEB_SRC_LINES) + "\n", encoding="utf-8")
    settings = {
        "Dir::Etc::SourceList": root / "etc/sources.list",
        "Dir::Etc::SourceParts": root / "etc/sources.list.d",
        "Dir::Etc::Preferences": root / "etc/preferences",
        "Dir::Etc::PreferencesParts": root / "etc/preferences.d",
        "Dir::State::Lists": root / "lists",
        "Dir::Cache": root / "cache",
    }
    config = root / "apt.conf"
    config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()), encoding="utf-8")
    environment = {**os.environ, "APT_CONFIG": str(config)}
    if not any((root / "lists").glob("*_Sources*")):
        result = run(["apt-get", "update"], env=environment, text=True)
        if result.returncode != 0:
            raise TrainingError(f"apt-get update (deb-src only, {config}) failed: {result.stderr.strip()[-500:]}")
    return environment


def read_dsc(dsc: Path) -> tuple[str, list[tuple[str, int, str]]]:
    """(Version, [(file name, size, sha256)]) of a .dsc (signed or not)."""
    version = ""
    files: list[tuple[str, int, str]] = []
    in_checksums = False
    for line in Path(dsc).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Version:"):
            version = line.split(":", 1)[1].strip()
        if in_checksums and line.startswith(" "):
            digest, size, name = line.split()
            files.append((name, int(size), digest))
            continue
        in_checksums = line.startswith("Checksums-Sha256:")
    if not version or not files:
        raise TrainingError(f"{dsc}: not a source package description (no Version or Checksums-Sha256)")
    return version, files


def _complete(dsc: Path) -> bool:
    _, files = read_dsc(dsc)
    return all((dsc.parent / name).is_file() and (dsc.parent / name).stat().st_size == size for name, size, _ in files)


def download_source(source: str, workdir: Path, environment: dict[str, str], run, version: str | None = None) -> Path:
    """The .dsc of `source` (at `version` if given) in `workdir/<source>/`, fetched with
    ``apt-get source --download-only`` unless it and all its files are already there."""
    directory = Path(workdir) / source
    directory.mkdir(parents=True, exist_ok=True)
    cached = [dsc for dsc in sorted(directory.glob(f"{source}_*.dsc")) if _complete(dsc)]
    if version is not None:
        cached = [dsc for dsc in cached if read_dsc(dsc)[0] == version]
    if len(cached) == 1:
        return cached[0]
    if len(cached) > 1:
        raise TrainingError(f"several source versions of {source} in {directory}; pin one with --source-lock")
    target = source if version is None else f"{source}={version}"
    result = run(["apt-get", "source", "--download-only", target], cwd=directory, env=environment, text=True)
    if result.returncode != 0 and version is None:
        # The newest version (often a security update) can be missing from a mirror while the
        # release's own version is there: try the other versions the index lists, newest first.
        for other in source_versions(source, environment, run):
            target = f"{source}={other}"
            result = run(["apt-get", "source", "--download-only", target], cwd=directory, env=environment, text=True)
            if result.returncode == 0:
                return download_source(source, workdir, environment, run, other)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("E:")] or [result.stderr.strip()]
        raise TrainingError(f"apt-get source --download-only {target} failed: {' '.join(errors)[-500:]}")
    fetched = [dsc for dsc in sorted(directory.glob(f"{source}_*.dsc")) if _complete(dsc)]
    if not fetched:
        raise TrainingError(f"apt-get source {target} left no complete .dsc in {directory}")
    return download_source(source, workdir, environment, run, version)


def source_versions(source: str, environment: dict[str, str], run) -> list[str]:
    """The versions of `source` the deb-src index lists, newest first (as apt would choose)."""
    result = run(["apt-cache", "showsrc", "--only-source", source], env=environment, text=True)
    versions = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("Version:")]

    def newer_first(a: str, b: str) -> int:
        return -1 if run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0 else 1

    return sorted(dict.fromkeys(versions), key=functools.cmp_to_key(newer_first))


def tree_path(tarball_name: str, member_name: str) -> str:
    """Where a tarball member lands in the unpacked source tree, as dpkg-source lays it out:
    the orig (or native) tarball's top directory is dropped, a component tarball
    (``.orig-NAME.tar.*``) goes under NAME/, the debian tarball already starts with debian/."""
    name = member_name.removeprefix("./")
    if ".debian.tar" in tarball_name:
        return name
    name = name.split("/", 1)[1] if "/" in name else name
    component = _ORIG_COMPONENT.search(tarball_name)
    return f"{component.group(1)}/{name}" if component else name


def parse_copyright(text: str) -> list[tuple[list[str], str]]:
    """[(Files patterns, licence short name)] of a machine-readable debian/copyright, in order."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
                continue
            if ":" in line:
                current, value = line.split(":", 1)
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields and "license" in fields:
            licence = fields["license"].split("\n", 1)[0].strip()
            if licence:
                paragraphs.append((fields["files"].split(), licence))
    return paragraphs


def licence_of(path: str, paragraphs: list[tuple[list[str], str]], default: str) -> str:
    """The licence of the last paragraph whose patterns match `path` (DEP-5), else `default`."""
    found = default
    for patterns, licence in paragraphs:
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            found = licence
    return found


def source_tarballs(dsc: Path) -> list[Path]:
    """The tarballs a .dsc names, debian tarball first (it holds debian/copyright)."""
    _, files = read_dsc(dsc)
    tarballs = [dsc.parent / name for name, _, _ in files if _TARBALL.search(name)]
    return sorted(tarballs, key=lambda path: (".debian.tar" not in path.name, path.name))


def scan_tarball(tarball: Path, visit) -> str | None:
    """Stream through `tarball`, calling visit(path, head, size, read) for each regular file and
    visit(path, None, 0, None) for links; returns the text of debian/copyright if seen."""
    copyright_text = None
    try:
        with tarfile.open(tarball, mode="r|*") as stream:
            for member in stream:
                path = tree_path(tarball.name, member.name)
                if member.issym() or member.islnk():
                    visit(path, None, 0, None)
                    continue
                if not member.isfile():
                    continue
                handle = stream.extractfile(member)
                head = handle.read(HEAD_BYTES)
                if path == "debian/copyright":
                    copyright_text = (head + handle.read()).decode("utf-8", errors="replace")
                    continue
                # A stream can only move forward: read the rest now, if the verdict will need it.
                rest: list[bytes] = []

                def read(head=head, handle=handle, rest=rest) -> bytes:
                    if not rest:
                        rest.append(head + handle.read())
                    return rest[0]

                visit(path, head, member.size, read)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise TrainingError(f"cannot read {tarball}: {error}") from None
    return copyright_text


def extract_source_files(dsc: Path) -> tuple[str, list[tuple[str, str, str]], dict, dict, str | None]:
    """Read every tarball of a source package: (version, [(path, text, reason)] kept in tree
    order, dropped counts, ignored counts, debian/copyright text or None)."""
    version, _ = read_dsc(dsc)
    kept: list[tuple[str, str, str]] = []
    dropped: dict[str, int] = {}
    ignored: dict[str, int] = {}
    seen_paths: set[str] = set()

    def visit(path: str, head: bytes | None, size: int, read) -> None:
        if head is None:
            ignored["symlink"] = ignored.get("symlink", 0) + 1
            return
        if path in seen_paths:  # a debian/ file shipped in the orig tarball too: the debian one wins
            return
        seen_paths.add(path)
        verdict = judge(path, head, size, read)
        if verdict.kept:
            kept.append((path, verdict.text, verdict.reason))
        else:
            counter = ignored if verdict.ignored else dropped
            counter[verdict.reason] = counter.get(verdict.reason, 0) + 1

    copyright_text = None
    for tarball in source_tarballs(dsc):
        copyright_text = scan_tarball(tarball, visit) or copyright_text
    return version, kept, dropped, ignored, copyright_text
