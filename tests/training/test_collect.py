"""Collecting the user's scripts: what is taken, what is skipped and why, and nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import folder_state

from bashlsp.model.errors import TrainingError
from bashlsp.training import collect as collect_module
from bashlsp.training.collect import (
    BINARY,
    BROKEN_LINK,
    DUPLICATE,
    EMPTY,
    LINK_LOOP,
    LINK_OUTSIDE,
    NOT_REGULAR,
    NOT_SHELL,
    NOT_UTF8,
    TOO_LARGE,
    TOOL_DIR,
    UNREADABLE,
    collect_scripts,
    holdout_split,
)

SCRIPT = '#!/bin/bash\nset -euo pipefail\nfor f in *.log; do\n    gzip "$f"\ndone\n'


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def names(collection) -> list[str]:
    return sorted(s.name for s in collection.scripts)


def test_extensions_and_shebangs(tmp_path):
    root = tmp_path / "scripts"
    write(root / "a.sh", "echo a\n")
    write(root / "b.bash", "echo b\n")
    write(root / "bin/run", "#!/bin/sh\necho run\n")
    write(root / "bin/tool", "#!/usr/bin/env bash\necho tool\n")
    write(root / "bin/py", "#!/usr/bin/env python3\nprint('x')\n")
    write(root / "fake.sh", "#!/usr/bin/python\nprint('not shell')\n")  # the shebang wins over the name
    write(root / "notes.txt", "echo this is prose\n")
    write(root / "README", "Some words about the scripts.\n")
    c = collect_scripts([root])
    assert names(c) == ["scripts/a.sh", "scripts/b.bash", "scripts/bin/run", "scripts/bin/tool"]
    reasons = {s.name: s.reason for s in c.scripts}
    assert reasons["scripts/bin/run"] == "shebang sh" and reasons["scripts/a.sh"] == "extension .sh"
    assert c.skipped[NOT_SHELL] == 4


def test_binaries_huge_empty_and_non_utf8_are_skipped(tmp_path):
    root = tmp_path / "s"
    write(root / "ok.sh", SCRIPT)
    write(root / "blob.sh", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    write(root / "huge.sh", "echo x\n" * 20000)  # 140 KB
    write(root / "empty.sh", "")
    write(root / "latin1.sh", "#!/bin/sh\necho caf\xe9\n".encode("latin-1"))
    c = collect_scripts([root], max_file_bytes=64 * 1024)
    assert names(c) == ["s/ok.sh"]
    assert c.skipped[BINARY] == 1 and c.skipped[TOO_LARGE] == 1 and c.skipped[EMPTY] == 1 and c.skipped[NOT_UTF8] == 1
    assert c.examples[TOO_LARGE] == ["s/huge.sh"]


def test_links_loops_outside_and_broken(tmp_path):
    root = tmp_path / "s"
    outside = write(tmp_path / "elsewhere" / "secret.sh", "echo outside\n")
    write(root / "real/x.sh", SCRIPT)
    (root / "real/up").symlink_to("..")  # a folder link that loops back to an ancestor
    (root / "loop1").symlink_to("loop2")  # links pointing at each other
    (root / "loop2").symlink_to("loop1")
    (root / "out.sh").symlink_to(outside)
    (root / "outdir").symlink_to(outside.parent)
    (root / "broken.sh").symlink_to(root / "missing.sh")
    (root / "alias.sh").symlink_to(root / "real/x.sh")  # inside: same content, taken once
    c = collect_scripts([root])
    assert [s.text for s in c.scripts] == [SCRIPT]
    assert c.skipped[LINK_LOOP] == 3
    assert c.skipped[LINK_OUTSIDE] == 2
    assert c.skipped[BROKEN_LINK] == 1
    assert c.skipped[DUPLICATE] == 1
    assert "echo outside" not in "".join(s.text for s in c.scripts)


def test_unreadable_files_are_counted_not_fatal(tmp_path, monkeypatch):
    # Tests run as root, for whom chmod 000 changes nothing: make one path refuse to open instead.
    root = tmp_path / "s"
    write(root / "ok.sh", SCRIPT)
    locked = write(root / "locked.sh", "echo locked\n")
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(collect_module.os, "open", refusing_open)
    c = collect_scripts([root])
    assert names(c) == ["s/ok.sh"]
    assert c.skipped[UNREADABLE] == 1 and c.examples[UNREADABLE] == ["s/locked.sh"]


def test_fifo_is_skipped_without_blocking(tmp_path):
    root = tmp_path / "s"
    write(root / "ok.sh", SCRIPT)
    os.mkfifo(root / "pipe.sh")  # opening it for reading would wait for a writer forever
    c = collect_scripts([root])
    assert names(c) == ["s/ok.sh"] and c.skipped[NOT_REGULAR] == 1


def test_duplicates_across_folders_and_tool_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "one.sh", SCRIPT)
    write(b / "copy.sh", SCRIPT)
    write(b / "other.sh", "echo other\n")
    write(b / ".git/hooks/pre-commit.sh", "echo hook\n")
    c = collect_scripts([a, b])
    assert names(c) == ["a/one.sh", "b/other.sh"]
    assert c.skipped[DUPLICATE] == 1 and c.skipped[TOOL_DIR] == 1


def test_store_inside_a_watched_folder_is_excluded(tmp_path):
    root = tmp_path / "s"
    write(root / "ok.sh", SCRIPT)
    write(root / "store/checkpoints/x/notes.sh", "echo store\n")
    assert names(collect_scripts([root], exclude=[root / "store"])) == ["s/ok.sh"]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(TrainingError, match="not a folder"):
        collect_scripts([tmp_path / "nope"])


def test_collection_leaves_the_folder_untouched(tmp_path):
    root = tmp_path / "s"
    write(root / "a.sh", SCRIPT)
    write(root / "b/c.sh", "echo c\n")
    (root / "link.sh").symlink_to(root / "a.sh")
    os.mkfifo(root / "fifo")
    before = folder_state(root)
    collect_scripts([root])
    assert folder_state(root) == before


def test_holdout_split_is_by_file_and_stable(tmp_path):
    root = tmp_path / "s"
    for i in range(30):
        write(root / f"s{i:02}.sh", f"echo {i}\n")
    scripts = collect_scripts([root]).scripts
    train, holdout = holdout_split(scripts, fraction=0.2)
    assert holdout and train and len(train) + len(holdout) == 30
    assert not {s.name for s in train} & {s.name for s in holdout}
    # Editing a file or adding others does not move files between the sides.
    write(root / "s00.sh", "echo edited\n")
    for i in range(30, 40):
        write(root / f"s{i:02}.sh", f"echo {i}\n")
    train2, holdout2 = holdout_split(collect_scripts([root]).scripts, fraction=0.2)
    assert {s.name for s in holdout} <= {s.name for s in holdout2}
    assert {s.name for s in train} <= {s.name for s in train2}


def test_holdout_needs_two_files(tmp_path):
    root = tmp_path / "s"
    write(root / "only.sh", SCRIPT)
    scripts = collect_scripts([root]).scripts
    assert holdout_split(scripts) == (scripts, [])
    write(root / "two.sh", "echo two\n")
    train, holdout = holdout_split(collect_scripts([root]).scripts)
    assert len(train) == 1 and len(holdout) == 1
