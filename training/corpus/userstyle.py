"""Build the user-style held-out set: shell that users write, from npm and PyPI, none of it in Debian.

    python -m bashlsp.training.corpus.userstyle --out DIR [--workdir DIR/src] [--lock LOCK]
        [--packages npm:n pypi:cheatshh ...] [--exclude-manifest data/corpus/manifest.jsonl]
    python -m bashlsp.training.corpus.userstyle --out DIR --export DIR2

The training corpus is Debian's, so its holdout packages are Debian's style too. Users write
other things: version managers and installers, CLI tools in bash, prompt and test helpers,
build and CI scripts. Such projects ship on npm and PyPI, and this builder takes their shell
from there:

- the packages and exact versions are pinned in ``userstyle.lock`` (committed beside this
  module): registry, name, version, the licence the package states (package.json's
  ``license``, PKG-INFO's ``License-Expression`` / ``License`` / licence classifiers, else the
  first line of a LICENSE file, else "unknown"), the files and bytes kept, the tarball's sha256
  and file name. A tarball whose sha256 differs is refused;
- the tarballs are fetched with the registries' own clients, ``npm pack NAME@VERSION
  --ignore-scripts`` and ``pip download --no-deps --no-binary :all: NAME==VERSION`` (pip, not
  this builder, asks the sdist's build backend for its metadata), into the work folder, once;
- each tarball is read as a stream (tarfile, zipfile); nothing in it is run and no tree is
  unpacked. A member is kept when `filters.judge` keeps it (model.shell's detector, the
  generated-file rules, bash -n), it is at most model.shell.MAX_USER_SCRIPT_BYTES (what
  ``bashlsp eval`` reads), it is not under node_modules or another tool folder nor a file a tool
  writes (TOOL_WRITTEN_NAMES), and its exact content is not in the Debian corpus
  (``--exclude-manifest``). Near-duplicates across the set go (`filters.NearDuplicates`; packages
  are read in the lock's order, so a rebuild keeps the same copy), and one package gives at most
  PACKAGE_CAP_BYTES and PACKAGE_CAP_FILES;
- a package that cannot be fetched or read (a 404, a damaged tarball, a changed sha256) is
  named on stderr and left out, the others are built, and the exit status is 1;
- output as the Debian builder writes it: ``files/<aa>/<sha256>.sh`` and ``manifest.jsonl``
  (sha256, file, package, source, origin npm|pypi, version, path inside the tarball, licence,
  bytes, reason, split "holdout"), and the lock of what was built (``DIR/userstyle.lock``).

``--export DIR2`` copies a built set to DIR2/<registry>-<name>/<path>, one folder per package:
``bashlsp eval DIR2`` measures a model on the whole set and ``bashlsp bench context repo
DIR2/*`` takes each package as a project.

With ``--packages`` the given (or latest) versions are resolved and a new lock is written into
DIR (the survey: what each package gives); without, the committed lock is rebuilt exactly. The
packages, their licences and which candidates were left out (Debian ships them, or they hold no
shell) are in docs/benchmarks.md, "User-style held-out set".
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...model.errors import BashlspError, TrainingError
from ...model.shell import HEAD_BYTES, MAX_USER_SCRIPT_BYTES, SKIPPED_DIR_NAMES
from .filters import NearDuplicates, judge

LOCK_NAME = "userstyle.lock"
COMMITTED_LOCK = Path(__file__).with_name(LOCK_NAME)
REGISTRIES = ("npm", "pypi")
# One project must not make the set: a framework with 100 helpers would outweigh ten small tools,
# in bytes (bpb) and in files (next-line and keystroke figures sample files).
PACKAGE_CAP_BYTES = 160 * 1024
PACKAGE_CAP_FILES = 30
# Written by a tool, not by the project's authors (filters.GENERATED_NAMES' autotools files are the
# Debian side of this): Gradle's wrapper script ships in every React Native and Android package.
TOOL_WRITTEN_NAMES = frozenset({"gradlew"})
LOCK_HEADER = "# registry\tname\tversion\tlicence\tfiles\tbytes\tsha256\tfile\n"
FETCH_TIMEOUT_S = 300


@dataclass
class LockedPackage:
    """One line of userstyle.lock."""

    registry: str  # "npm" or "pypi"
    name: str
    version: str
    licence: str = ""
    files: int = 0
    bytes: int = 0
    sha256: str = ""  # of the tarball as the registry serves it
    file: str = ""  # the tarball's file name in the work folder


def read_lock(path: Path) -> list[LockedPackage]:
    packages = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 8 or fields[0] not in REGISTRIES:
            raise TrainingError(f"{path}:{number}: expected 8 tab-separated fields (registry npm|pypi first): {line!r}")
        registry, name, version, licence, files, size, sha256, file = fields
        packages.append(LockedPackage(registry, name, version, licence, int(files), int(size), sha256, file))
    return packages


def lock_order(package: LockedPackage) -> tuple[str, str]:
    return package.registry, package.name


def write_lock(path: Path, packages: list[LockedPackage]) -> None:
    lines = [
        "# npm and PyPI packages behind the user-style held-out set (bashlsp.training.corpus.userstyle).\n",
        "# licence: from the package's own metadata; files/bytes: unique shell files kept; sha256: the tarball.\n",
        LOCK_HEADER,
    ]
    for p in sorted(packages, key=lock_order):
        lines.append(f"{p.registry}\t{p.name}\t{p.version}\t{p.licence}\t{p.files}\t{p.bytes}\t{p.sha256}\t{p.file}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def parse_package_arg(text: str) -> LockedPackage:
    """'npm:NAME[@VERSION]' or 'pypi:NAME[==VERSION]' (a scoped npm name keeps its leading @)."""
    registry, _, rest = text.partition(":")
    if registry not in REGISTRIES or not rest:
        raise TrainingError(f"--packages takes npm:NAME[@VERSION] or pypi:NAME[==VERSION], not {text!r}")
    if registry == "npm":
        name, _, version = rest[1:].partition("@") if rest.startswith("@") else rest.partition("@")
        name = "@" + name if rest.startswith("@") else name
    else:
        name, _, version = rest.partition("==")
    return LockedPackage(registry, name, version)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(command: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=FETCH_TIMEOUT_S)
    except FileNotFoundError:
        raise TrainingError(f"{command[0]} is not installed (needed to fetch {command[-1]})") from None
    except subprocess.TimeoutExpired:
        raise TrainingError(f"{' '.join(command)} did not finish in {FETCH_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise TrainingError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def fetch(package: LockedPackage, workdir: Path) -> Path:
    """The package's tarball in workdir/<registry>/: the locked file when it is there already,
    else downloaded with the registry's client. Sets package.file (and package.version when it
    was not given)."""
    folder = workdir / package.registry
    folder.mkdir(parents=True, exist_ok=True)
    if package.file and (folder / package.file).is_file():
        return folder / package.file
    before = {path.name for path in folder.iterdir()}
    if package.registry == "npm":
        spec = f"{package.name}@{package.version}" if package.version else package.name
        output = _run(["npm", "pack", spec, "--ignore-scripts", "--json", "--pack-destination", str(folder)])
        try:
            packed = json.loads(output)[0]
            package.version, package.file = packed["version"], packed["filename"].replace("/", "-").lstrip("@")
        except (json.JSONDecodeError, IndexError, KeyError, TypeError):
            raise TrainingError(f"npm pack {spec} did not answer with its tarball: {output[:200]!r}") from None
    else:
        spec = f"{package.name}=={package.version}" if package.version else package.name
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(folder), spec])
        new = sorted({path.name for path in folder.iterdir()} - before)
        if not package.file:
            matches = new or sorted(
                path.name for path in folder.iterdir() if _sdist_name(path.name)[0] == _normalise(package.name)
            )
            if len(matches) != 1:
                raise TrainingError(f"pip download {spec}: expected one new sdist in {folder}, found {matches}")
            package.file = matches[0]
        if not package.version:
            package.version = _sdist_name(package.file)[1]
    path = folder / package.file
    if not path.is_file():
        raise TrainingError(f"fetching {package.registry}:{package.name} gave no {path}")
    return path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sdist_name(file_name: str) -> tuple[str, str]:
    """(normalised project name, version) of 'name-1.2.3.tar.gz' or '.zip'."""
    stem = re.sub(r"\.(tar\.gz|tgz|tar\.bz2|zip)$", "", file_name)
    name, _, version = stem.rpartition("-")
    return _normalise(name), version


# -- reading a tarball as a stream --------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A regular file inside a package: its path below the tarball's top folder, its size, its
    first bytes, and a callable giving all its bytes (valid only while the member is current)."""

    path: str
    size: int
    head: bytes
    read: Callable[[], bytes]


def _inner_path(name: str) -> str | None:
    """The path below the top folder ('package/' for npm, 'name-version/' for an sdist), or None
    for a name that climbs out or is absolute (never used as a file name here, but not a real member)."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or name.startswith("/") or ".." in parts:
        return None
    return "/".join(parts[1:])


def members(tarball: Path) -> Iterator[Member]:
    """The regular files of a .tgz / .tar.gz / .zip, read one by one; links, devices and folders
    are passed over. A damaged archive raises its library's error (see `read_package`)."""
    if tarball.name.endswith(".zip"):
        with zipfile.ZipFile(tarball) as archive:
            for info in archive.infolist():
                path = _inner_path(info.filename)
                if info.is_dir() or path is None or (info.external_attr >> 16) & 0o170000 == 0o120000:
                    continue
                with archive.open(info) as handle:
                    head = handle.read(HEAD_BYTES)
                yield Member(path, info.file_size, head, lambda info=info: archive.read(info))
        return
    with tarfile.open(tarball, "r|*") as archive:
        for info in archive:
            path = _inner_path(info.name)
            if not info.isfile() or path is None:
                continue
            handle = archive.extractfile(info)
            head = handle.read(HEAD_BYTES)
            yield Member(path, info.size, head, lambda handle=handle, head=head: head + handle.read())


LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING", "license", "License.md")


def _licence_from_metadata(registry: str, data: bytes) -> str:
    """package.json's ``license`` (npm), or PKG-INFO's License-Expression, else License, else its
    licence classifiers (PyPI); "" when it names none."""
    if registry == "npm":
        try:
            licence = json.loads(data).get("license", "")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            return ""
        if isinstance(licence, dict):
            licence = licence.get("type", "")
        return str(licence).strip()
    info = email.parser.BytesParser().parse(io.BytesIO(data), headersonly=True)
    for field in ("License-Expression", "License"):
        licence = (info.get(field) or "").strip()
        # "UNKNOWN" and "See LICENSE" name nothing; a whole licence text pasted in is not a name.
        names_one = not re.match(r"unknown$|see\b", licence, re.IGNORECASE) and "\n" not in licence
        if licence and names_one and len(licence) <= 60:
            return licence
    classifiers = [c.split("::")[-1].strip() for c in info.get_all("Classifier") or [] if c.startswith("License ::")]
    return "; ".join(classifiers)


def _licence_file_title(data: bytes) -> str:
    """The first non-empty line of a LICENSE file ("MIT License", "GNU GENERAL PUBLIC LICENSE ...")."""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip().strip("#= ").strip():
            return line.strip().strip("#= ").strip()[:60]
    return ""


@dataclass
class Kept:
    path: str
    data: bytes
    text: str
    reason: str


@dataclass
class PackageContents:
    licence: str  # the package's own metadata, else "LICENSE: <its first line>", else "unknown"
    kept: list[Kept]
    dropped: Counter


def read_package(registry: str, tarball: Path) -> PackageContents:
    """One pass over the tarball: its licence and its shell files worth keeping (see the module
    docstring), counting the rest. A damaged tarball raises TrainingError naming it."""
    metadata_name = "package.json" if registry == "npm" else "PKG-INFO"
    licence, licence_file = "", ""
    kept, dropped = [], Counter()
    try:
        for member in members(tarball):
            if member.path == metadata_name:
                licence = _licence_from_metadata(registry, member.read())
                continue
            if member.path in LICENCE_FILES and not licence_file:
                licence_file = _licence_file_title(member.read())
                continue
            if SKIPPED_DIR_NAMES.intersection(PurePosixPath(member.path).parts[:-1]):
                continue
            if PurePosixPath(member.path).name in TOOL_WRITTEN_NAMES:
                dropped["generated"] += 1
                continue
            verdict = judge(member.path, member.head, member.size, member.read)
            if verdict.ignored:
                continue
            if not verdict.kept:
                dropped[verdict.reason] += 1
            elif member.size > MAX_USER_SCRIPT_BYTES:
                dropped["too large"] += 1
            else:
                kept.append(Kept(member.path, verdict.text.encode("utf-8"), verdict.text, verdict.reason))
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise TrainingError(f"{tarball.name} is not a readable tarball: {exc or type(exc).__name__}") from None
    if not licence and licence_file:
        licence = f"LICENSE: {licence_file}"
    return PackageContents(licence or "unknown", kept, dropped)


def debian_hashes(manifest: Path) -> set[str]:
    """The sha256 of every file of a Debian corpus manifest."""
    hashes = set()
    with open(manifest, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                hashes.add(json.loads(line)["sha256"])
    return hashes


def _write_package(
    out: Path,
    package: LockedPackage,
    kept: list[Kept],
    exclude: set[str],
    cap_bytes: int,
    cap_files: int,
    duplicates: NearDuplicates,
    dropped: Counter,
    manifest,
) -> None:
    """Write the package's files that pass the exclusion, the cap and the near-duplicate check."""
    package.files = package.bytes = 0
    # Over the cap, files are taken in the order of sha256(path): a sample of every folder.
    for shell_file in sorted(kept, key=lambda f: hashlib.sha256(f.path.encode("utf-8")).hexdigest()):
        digest = hashlib.sha256(shell_file.data).hexdigest()
        if digest in exclude:
            dropped["in the Debian corpus"] += 1
            continue
        if package.bytes + len(shell_file.data) > cap_bytes or package.files >= cap_files:
            dropped["over the package cap"] += 1
            continue
        copy = duplicates.check(digest, shell_file.text)
        if copy is not None:
            dropped[copy[0]] += 1
            continue
        relative = f"files/{digest[:2]}/{digest}.sh"
        (out / relative).parent.mkdir(exist_ok=True)
        (out / relative).write_bytes(shell_file.data)
        record = {
            "sha256": digest,
            "file": relative,
            "package": package.name,
            "source": package.name,
            "origin": package.registry,
            "version": package.version,
            "path": shell_file.path,
            "licence": package.licence,
            "bytes": len(shell_file.data),
            "reason": shell_file.reason,
            "split": "holdout",
        }
        manifest.write(json.dumps(record, ensure_ascii=False) + "\n")
        package.files += 1
        package.bytes += len(shell_file.data)


def build(
    out: Path,
    workdir: Path,
    packages: list[LockedPackage],
    *,
    verify: bool,
    exclude: set[str] = frozenset(),
    cap_bytes: int = PACKAGE_CAP_BYTES,
    cap_files: int = PACKAGE_CAP_FILES,
    fetcher: Callable[[LockedPackage, Path], Path] = fetch,
) -> dict:
    """Fetch, read and write every package, in the lock's order (registry, name), so that a rebuild
    from the lock keeps the same one of two near-duplicates (the first to bring a file keeps it).
    With `verify`, each tarball must have the locked sha256. A package that cannot be fetched or
    read is reported under "failed" and left out of the lock written; the others go on. Returns
    the summary printed by main."""
    out = Path(out)
    files_dir = out / "files"
    if files_dir.exists():
        for old in sorted(files_dir.glob("*/*.sh")):
            old.unlink()
    files_dir.mkdir(parents=True, exist_ok=True)
    duplicates = NearDuplicates()
    dropped: Counter = Counter()
    per_package, built, failed = [], [], {}
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as manifest:
        for package in sorted(packages, key=lock_order):
            label = f"{package.registry}:{package.name}"
            try:
                tarball = fetcher(package, workdir)
                digest = sha256_file(tarball)
                if verify and digest != package.sha256:
                    raise TrainingError(f"{tarball.name} has sha256 {digest}, the lock says {package.sha256}: refused")
                contents = read_package(package.registry, tarball)
            except (TrainingError, OSError) as exc:
                failed[label] = str(exc)
                continue
            package.sha256, package.licence = digest, contents.licence
            _write_package(
                out, package, contents.kept, exclude, cap_bytes, cap_files, duplicates, contents.dropped, manifest
            )
            dropped.update(contents.dropped)
            built.append(package)
            per_package.append(
                {
                    "package": label,
                    "version": package.version,
                    "licence": package.licence,
                    "files": package.files,
                    "bytes": package.bytes,
                    "dropped": dict(sorted(contents.dropped.items())),
                }
            )
    write_lock(out / LOCK_NAME, built)
    return {
        "files": sum(p.files for p in built),
        "bytes": sum(p.bytes for p in built),
        "projects": sum(1 for p in built if p.files),
        "dropped": dict(sorted(dropped.items())),
        "failed": failed,
        "packages": per_package,
    }


def export(out: Path, target: Path) -> int:
    """Copy the built set to target/<registry>-<name>/<path inside the tarball>: one folder per
    package, as `bashlsp bench context repo` takes projects (and `bashlsp eval` reads any folder).
    Returns how many files."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise TrainingError(f"{target} is not empty: export into a new folder")
    count = 0
    with open(Path(out) / "manifest.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            project = f"{record['origin']}-{record['package'].lstrip('@').replace('/', '-')}"
            relative = PurePosixPath(record["path"])
            if relative.is_absolute() or ".." in relative.parts:  # read_package never keeps such a path
                raise TrainingError(f"refusing to export {project}:{record['path']}")
            destination = target / project / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes((Path(out) / record["file"]).read_bytes())
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bashlsp.training.corpus.userstyle",
        description="Build the user-style held-out set (shell from npm and PyPI packages, none in Debian).",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write (files/, manifest.jsonl, the lock built)")
    p.add_argument("--workdir", type=Path, help="where tarballs are downloaded (default OUT/src)")
    p.add_argument(
        "--lock", type=Path, default=COMMITTED_LOCK, help="the packages to rebuild (default: the committed lock)"
    )
    p.add_argument(
        "--packages", nargs="+", help="npm:NAME[@VERSION] / pypi:NAME[==VERSION]: resolve and lock these instead"
    )
    p.add_argument(
        "--exclude-manifest", type=Path, help="a Debian corpus manifest.jsonl: its files' contents are left out"
    )
    p.add_argument("--cap-kb", type=int, default=PACKAGE_CAP_BYTES // 1024, help="KB kept per package at most")
    p.add_argument("--cap-files", type=int, default=PACKAGE_CAP_FILES, help="files kept per package at most")
    p.add_argument(
        "--export", type=Path, help="only copy the set built in OUT to this new folder, one subfolder per package"
    )
    args = p.parse_args(argv)
    try:
        if args.export is not None:
            count = export(args.out, args.export)
            print(f"{count} scripts copied to {args.export}")
            return 0
        if args.packages:
            packages, verify = [parse_package_arg(text) for text in args.packages], False
        else:
            packages, verify = read_lock(args.lock), True
        exclude = debian_hashes(args.exclude_manifest) if args.exclude_manifest else set()
        args.out.mkdir(parents=True, exist_ok=True)
        summary = build(
            args.out,
            args.workdir or args.out / "src",
            packages,
            verify=verify,
            exclude=exclude,
            cap_bytes=args.cap_kb * 1024,
            cap_files=args.cap_files,
        )
    except (BashlspError, OSError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    for label, error in summary["failed"].items():
        print(f"{p.prog}: error: {label}: {error}", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
