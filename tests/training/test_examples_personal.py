"""The personal example index (training/personal_examples.py): the user's comment -> code blocks
after redaction, published into the checkpoint store, with planted secrets that must not reach it
(the secrets table of test_hardening_secrets.py), and the bound on a folder of 50,000 scripts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_hardening_secrets import SECRETS, leaks, plant, public_text

from bashlsp.model.examples import ExampleIndex, personal_index_path
from bashlsp.training.collect import Script, collect_scripts
from bashlsp.training.holdouts import prepare
from bashlsp.training.personal_examples import MAX_PAIRS, MAX_SCRIPTS, personal_examples, publish_personal_examples


def test_personal_index_holds_the_users_blocks_and_no_secret(tmp_path: Path):
    folder = plant(tmp_path / "scripts")
    prepared = prepare(collect_scripts([folder]), holdout_fraction=0.2, max_holdout_bytes=1 << 20)
    store = tmp_path / "store"
    count = publish_personal_examples(prepared.train + prepared.holdout, store)
    path = personal_index_path(store)
    index = ExampleIndex(path)
    assert index.entries == count >= 16 + 3 * len(SECRETS)
    assert index.meta["kind"] == "personal"
    found = index.search("mirror the alpha feed", 3)
    assert found and found[0].source == "personal" and "acme_log_info" in found[0].command
    rows = sqlite3.connect(path).execute("SELECT description || ' ' || command FROM examples").fetchall()
    seen = public_text() + "\n".join(s.text for s in prepared.train + prepared.holdout)
    assert any("REDACTED" in row for (row,) in rows)
    for (row,) in rows:
        assert leaks(row, seen) == [], row
    assert leaks(path.read_bytes().decode("latin-1"), seen) == []  # nor anywhere in the file's pages
    assert not list(path.parent.glob(".*.tmp"))  # published atomically: no temporary file left


def test_the_bound_on_a_huge_folder(tmp_path: Path):
    script = "#!/bin/bash\n" + "".join(f"# step {i} of the job\necho step {i}\n" for i in range(300))
    scripts = [Script(Path(f"/s/{n}.sh"), f"s/{n:05d}.sh", script, "x", "ext") for n in range(MAX_SCRIPTS + 10)]
    entries = personal_examples(scripts)
    assert len(entries) == MAX_PAIRS  # 200 pairs a script at most, MAX_PAIRS in all
    assert {e.page for e in entries} == {f"s/{n:05d}.sh" for n in range(MAX_PAIRS // 200)}
