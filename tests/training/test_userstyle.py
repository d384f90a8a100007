"""Tests of the user-style held-out set builder (training/corpus/userstyle.py).

No network: npm-style .tgz and sdist .tar.gz / .zip tarballs are built here, and the fetcher
that would run `npm pack` / `pip download` is replaced by one that copies them into the work
folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from bashlsp.model.errors import TrainingError
from bashlsp.training.corpus import userstyle
from bashlsp.training.corpus.userstyle import LockedPackage


def script(name: str, steps: int = 3) -> str:
    """A small bash script whose words differ by `name`, so two names are never near-duplicates."""
    body = "".join(f'    step_{name}_{i} "$1" --level {i} || return {i}\n' for i in range(steps))
    return (
        f"#!/usr/bin/env bash\n# {name}: run the {name} steps for a user project\nset -euo pipefail\n"
        f"run_{name}() {{\n{body}}}\n"
        f'for target_{name} in "$@"; do\n    run_{name} "$target_{name}"\ndone\n'
    )


INSTALLER = script("installer")
HELPER = script("helper")
PROMPT = script("prompt")


def npm_tgz(path: Path, files: dict[str, str | bytes], licence: str = "MIT", links: bool = True) -> Path:
    """An npm pack tarball: everything under package/, a package.json, plus a symlink and a
    device node (which the builder must pass over) when `links`."""
    files = {"package.json": json.dumps({"name": path.stem, "license": licence}), **files}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            data = data.encode("utf-8") if isinstance(data, str) else data
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
        if links:
            link = tarfile.TarInfo("package/bin/link.sh")
            link.type, link.linkname = tarfile.SYMTYPE, "../install.sh"
            archive.addfile(link)
            device = tarfile.TarInfo("package/dev.sh")
            device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
            archive.addfile(device)
    return path


PKG_INFO = "Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nLicense-Expression: {licence}\n\n"


def sdist(path: Path, files: dict[str, str], licence: str = "BSD-3-Clause") -> Path:
    """A PyPI sdist, .tar.gz or .zip by the name, everything under NAME-1.0/ with a PKG-INFO."""
    top = path.name.removesuffix(".tar.gz").removesuffix(".zip")
    files = {"PKG-INFO": PKG_INFO.format(name=top, licence=licence), **files}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in files.items():
                archive.writestr(f"{top}/{name}", text)
            link = zipfile.ZipInfo(f"{top}/link.sh")
            link.external_attr = 0o120777 << 16
            archive.writestr(link, "install.sh")
        return path
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def copying_fetcher(tarballs: dict[str, Path], calls: list[str] | None = None):
    """A fetcher that copies prepared tarballs into the work folder as `userstyle.fetch` leaves them."""

    def fetch(package: LockedPackage, workdir: Path) -> Path:
        if calls is not None:
            calls.append(package.name)
        source = tarballs[package.name]
        folder = workdir / package.registry
        folder.mkdir(parents=True, exist_ok=True)
        package.version = package.version or "1.0"
        package.file = package.file or source.name
        target = folder / package.file
        if not target.exists():
            shutil.copyfile(source, target)
        return target

    return fetch


def read_manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tarballs(tmp_path: Path) -> dict[str, Path]:
    made = tmp_path / "made"
    made.mkdir()
    return {
        "tool": npm_tgz(
            made / "tool-1.0.tgz",
            {
                "install.sh": INSTALLER,
                "bin/tool": HELPER,  # no extension, a shebang: shell
                "index.js": "module.exports = () => 1;\n",
                "README.md": "# tool\n\n```sh\nnpm i tool\n```\n",
                "node_modules/dep/run.sh": script("vendored"),
                "broken.sh": "#!/bin/bash\nif then fi (\n",
                "android/gradlew": script("gradle"),  # Gradle writes it, not the project
                "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            },
        ),
        "kit": sdist(made / "kit-1.0.tar.gz", {"scripts/prompt.sh": PROMPT, "kit/__init__.py": "x = 1\n"}),
        "zipkit": sdist(made / "zipkit-1.0.zip", {"activate.sh": script("activate"), "setup.py": "pass\n"}),
    }


def test_build_keeps_only_shell_and_writes_the_debian_shape(tmp_path, tarballs):
    out = tmp_path / "out"
    packages = [LockedPackage("npm", "tool", ""), LockedPackage("pypi", "kit", ""), LockedPackage("pypi", "zipkit", "")]
    summary = userstyle.build(out, tmp_path / "src", packages, verify=False, fetcher=copying_fetcher(tarballs))
    records = read_manifest(out)
    assert sorted((r["package"], r["path"]) for r in records) == [
        ("kit", "scripts/prompt.sh"),
        ("tool", "bin/tool"),
        ("tool", "install.sh"),
        ("zipkit", "activate.sh"),
    ]
    assert summary["files"] == 4 and summary["projects"] == 3 and summary["failed"] == {}
    assert summary["dropped"] == {"bash -n failed": 1, "generated": 1}
    by_path = {r["path"]: r for r in records}
    tool = by_path["install.sh"]
    digest = hashlib.sha256(INSTALLER.encode()).hexdigest()
    assert tool == {
        "sha256": digest,
        "file": f"files/{digest[:2]}/{digest}.sh",
        "package": "tool",
        "source": "tool",
        "origin": "npm",
        "version": "1.0",
        "path": "install.sh",
        "licence": "MIT",
        "bytes": len(INSTALLER.encode()),
        "reason": "shebang bash",
        "split": "holdout",
    }
    assert (out / tool["file"]).read_text(encoding="utf-8") == INSTALLER
    assert by_path["scripts/prompt.sh"]["licence"] == "BSD-3-Clause"
    assert by_path["activate.sh"]["origin"] == "pypi"
    assert sorted(p.name for p in (out / "files").glob("*/*.sh")) == sorted(f"{r['sha256']}.sh" for r in records)


def test_exclude_manifest_drops_debian_copies(tmp_path, tarballs):
    debian_manifest = tmp_path / "debian.jsonl"
    debian_manifest.write_text(json.dumps({"sha256": hashlib.sha256(HELPER.encode()).hexdigest()}) + "\n")
    out = tmp_path / "out"
    summary = userstyle.build(
        out,
        tmp_path / "src",
        [LockedPackage("npm", "tool", "")],
        verify=False,
        exclude=userstyle.debian_hashes(debian_manifest),
        fetcher=copying_fetcher(tarballs),
    )
    assert [r["path"] for r in read_manifest(out)] == ["install.sh"]
    assert summary["dropped"]["in the Debian corpus"] == 1


def test_near_duplicates_across_packages_keep_the_first_in_lock_order(tmp_path):
    made = tmp_path / "made"
    made.mkdir()
    original = script("installer", steps=30)
    tweaked = original.replace("set -euo pipefail", "set -eu")
    tarballs = {
        "first": npm_tgz(made / "first-1.0.tgz", {"install.sh": original}, links=False),
        "second": npm_tgz(made / "second-1.0.tgz", {"setup.sh": tweaked, "other.sh": PROMPT}, links=False),
    }
    out = tmp_path / "out"
    # Given in either order, packages are read in the lock's order, so a rebuild keeps the same copy.
    packages = [LockedPackage("npm", "second", ""), LockedPackage("npm", "first", "")]
    summary = userstyle.build(out, tmp_path / "src", packages, verify=False, fetcher=copying_fetcher(tarballs))
    assert sorted((r["package"], r["path"]) for r in read_manifest(out)) == [
        ("first", "install.sh"),
        ("second", "other.sh"),
    ]
    assert summary["files"] == 2 and sum(summary["dropped"].values()) == 1


def test_per_package_cap(tmp_path):
    made = tmp_path / "made"
    made.mkdir()
    files = {f"lib/part{i}.sh": script(f"part{i}", steps=20) for i in range(6)}
    size = len(files["lib/part0.sh"].encode())
    tarballs = {"framework": npm_tgz(made / "framework-1.0.tgz", files, links=False)}
    out = tmp_path / "out"
    summary = userstyle.build(
        out,
        tmp_path / "src",
        [LockedPackage("npm", "framework", "")],
        verify=False,
        cap_bytes=size * 5 // 2,  # room for two
        fetcher=copying_fetcher(tarballs),
    )
    assert summary["files"] == 2 and summary["bytes"] <= size * 5 // 2
    assert summary["dropped"] == {"over the package cap": 4}
    by_files = userstyle.build(
        tmp_path / "by-files",
        tmp_path / "src",
        [LockedPackage("npm", "framework", "")],
        verify=False,
        cap_files=3,
        fetcher=copying_fetcher(tarballs),
    )
    assert by_files["files"] == 3 and by_files["dropped"] == {"over the package cap": 3}


def test_licence_from_the_licence_file_when_the_metadata_names_none(tmp_path):
    made = tmp_path / "made"
    made.mkdir()
    mit = "\nThe MIT License (MIT)\n\nCopyright (c) 2020 someone\n"
    tarballs = {
        "bare": npm_tgz(made / "bare-1.0.tgz", {"LICENSE": mit, "run.sh": INSTALLER}, licence="", links=False),
        "seelicence": sdist(made / "seelicence-1.0.tar.gz", {"LICENSE": mit, "a.sh": HELPER}, licence="See LICENSE."),
    }
    packages = [LockedPackage("npm", "bare", ""), LockedPackage("pypi", "seelicence", "")]
    summary = userstyle.build(tmp_path / "out", tmp_path / "src", packages, verify=False,
                              fetcher=copying_fetcher(tarballs))  # fmt: skip
    assert [p["licence"] for p in summary["packages"]] == ["LICENSE: The MIT License (MIT)"] * 2


def test_lock_is_written_and_a_rebuild_from_it_is_identical(tmp_path, tarballs):
    out = tmp_path / "out"
    calls: list[str] = []
    packages = [LockedPackage("npm", "tool", ""), LockedPackage("pypi", "zipkit", "")]
    userstyle.build(out, tmp_path / "src", packages, verify=False, fetcher=copying_fetcher(tarballs, calls))
    lock = userstyle.read_lock(out / userstyle.LOCK_NAME)
    assert [(p.registry, p.name, p.version, p.licence, p.files, p.file) for p in lock] == [
        ("npm", "tool", "1.0", "MIT", 2, "tool-1.0.tgz"),
        ("pypi", "zipkit", "1.0", "BSD-3-Clause", 1, "zipkit-1.0.zip"),
    ]
    assert lock[0].sha256 == hashlib.sha256(tarballs["tool"].read_bytes()).hexdigest()
    first = (out / "manifest.jsonl").read_text()

    # A rebuild from the lock with the real fetcher takes the locked files from the work folder
    # (no npm or pip is run) and writes the same set.
    again = tmp_path / "again"
    summary = userstyle.build(again, tmp_path / "src", userstyle.read_lock(out / userstyle.LOCK_NAME), verify=True)
    assert summary["failed"] == {}
    assert (again / "manifest.jsonl").read_text() == first
    assert (again / userstyle.LOCK_NAME).read_text() == (out / userstyle.LOCK_NAME).read_text()


def test_a_tarball_that_differs_from_the_lock_is_refused(tmp_path, tarballs):
    out = tmp_path / "out"
    userstyle.build(out, tmp_path / "src", [LockedPackage("npm", "tool", "")], verify=False,
                    fetcher=copying_fetcher(tarballs))  # fmt: skip
    lock = userstyle.read_lock(out / userstyle.LOCK_NAME)
    npm_tgz(tmp_path / "src" / "npm" / "tool-1.0.tgz", {"install.sh": PROMPT})  # changed upstream
    summary = userstyle.build(tmp_path / "again", tmp_path / "src", lock, verify=True)
    assert summary["files"] == 0 and "refused" in summary["failed"]["npm:tool"]


def test_a_corrupt_tarball_is_reported_and_the_rest_goes_on(tmp_path, tarballs, capsys):
    truncated = tmp_path / "made" / "bad-1.0.tgz"
    truncated.write_bytes(tarballs["tool"].read_bytes()[:300])
    not_a_zip = tmp_path / "made" / "badzip-1.0.zip"
    not_a_zip.write_bytes(b"PK\x03\x04 this is not a zip archive")
    tarballs = {**tarballs, "bad": truncated, "badzip": not_a_zip}
    out = tmp_path / "out"
    packages = [LockedPackage("npm", "bad", ""), LockedPackage("pypi", "badzip", ""), LockedPackage("pypi", "kit", "")]
    summary = userstyle.build(out, tmp_path / "src", packages, verify=False, fetcher=copying_fetcher(tarballs))
    assert set(summary["failed"]) == {"npm:bad", "pypi:badzip"}
    assert "bad-1.0.tgz is not a readable tarball" in summary["failed"]["npm:bad"]
    assert "badzip-1.0.zip is not a readable tarball" in summary["failed"]["pypi:badzip"]
    assert [r["package"] for r in read_manifest(out)] == ["kit"]
    assert [p.name for p in userstyle.read_lock(out / userstyle.LOCK_NAME)] == ["kit"]


def test_main_exits_1_naming_the_failed_package(tmp_path, tarballs, capsys):
    lock = tmp_path / "one.lock"
    userstyle.write_lock(lock, [LockedPackage("npm", "tool", "1.0", "MIT", 2, 10, "0" * 64, "tool-1.0.tgz")])
    (tmp_path / "src" / "npm").mkdir(parents=True)
    shutil.copyfile(tarballs["tool"], tmp_path / "src" / "npm" / "tool-1.0.tgz")
    code = userstyle.main(["--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "src"), "--lock", str(lock)])
    assert code == 1
    assert "npm:tool: tool-1.0.tgz has sha256" in capsys.readouterr().err


def test_export_gives_one_folder_per_package(tmp_path, tarballs):
    out = tmp_path / "out"
    packages = [LockedPackage("npm", "tool", ""), LockedPackage("pypi", "kit", "")]
    userstyle.build(out, tmp_path / "src", packages, verify=False, fetcher=copying_fetcher(tarballs))
    target = tmp_path / "export"
    assert userstyle.main(["--out", str(out), "--export", str(target)]) == 0
    exported = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert exported == ["npm-tool/bin/tool", "npm-tool/install.sh", "pypi-kit/scripts/prompt.sh"]
    assert (target / "npm-tool" / "install.sh").read_text(encoding="utf-8") == INSTALLER
    with pytest.raises(TrainingError, match="not empty"):
        userstyle.export(out, target)


def test_lock_and_package_arguments_parse():
    assert userstyle.parse_package_arg("npm:@scope/tool@2.1.0") == LockedPackage("npm", "@scope/tool", "2.1.0")
    assert userstyle.parse_package_arg("npm:n") == LockedPackage("npm", "n", "")
    assert userstyle.parse_package_arg("pypi:autoenv==2.0") == LockedPackage("pypi", "autoenv", "2.0")
    with pytest.raises(TrainingError):
        userstyle.parse_package_arg("cargo:ripgrep")


def test_committed_lock_is_readable():
    packages = userstyle.read_lock(userstyle.COMMITTED_LOCK)
    assert len(packages) >= 10
    assert all(p.version and p.licence and len(p.sha256) == 64 and p.file for p in packages)
