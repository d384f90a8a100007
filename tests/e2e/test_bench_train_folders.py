"""bashlsp bench train --folders (issue 16): the five style folders come from the corpus's
held-out packages only, never hold a general-holdout script, and the table says each target."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bashlsp.bench.train import FOLDER_STYLES, build_style_folders, round_figures, style_table
from bashlsp.model.errors import BashlspError
from bashlsp.training.holdouts import GENERAL_HOLDOUT_DIR
from bashlsp.training.personal import HISTORY_FILE


def _corpus(root: Path, general_text: str) -> Path:
    records = []

    def add(package: str, path: str, text: str, split: str = "holdout") -> None:
        digest = hashlib.sha256(text.encode()).hexdigest()
        file = f"files/{digest[:2]}/{digest}.sh"
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text(text)
        records.append(
            {
                "sha256": digest,
                "file": file,
                "package": package,
                "source": package,
                "origin": "deb",
                "version": "1",
                "path": path,
                "licence": "GPL-2+",
                "bytes": len(text.encode()),
                "split": split,
            }
        )

    for style, packages in FOLDER_STYLES.items():
        for package in sorted(packages):
            for n in range(3):
                add(package, f"/usr/lib/{package}/s{n}.sh", f"#!/bin/sh\n# {style} {package} {n}\necho {n}\n")
    add("surfraw", "/usr/lib/surfraw/copy", general_text)  # a general-holdout script: never in a folder
    add("bash", "/usr/bin/trained", "#!/bin/sh\necho trained\n", split="train")
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_five_folders_from_held_out_packages_only(tmp_path):
    general = GENERAL_HOLDOUT_DIR / "general.jsonl"
    if not general.is_file():
        pytest.skip("this build ships no general holdout")
    general_text = json.loads(general.read_text().splitlines()[0])["text"]
    folders = build_style_folders(_corpus(tmp_path / "corpus", general_text), tmp_path / "out")
    assert list(folders) == list(FOLDER_STYLES)
    everything = [p for folder in folders.values() for p in folder.rglob("*") if p.is_file()]
    texts = {p.read_text() for p in everything}
    assert general_text not in texts and "#!/bin/sh\necho trained\n" not in texts
    assert len(list(folders["many small scripts"].rglob("*.sh"))) == 3
    mixed = {p.relative_to(folders["mixed bag"]).parts[0] for p in folders["mixed bag"].rglob("*.sh")}
    assert len(mixed) == len(FOLDER_STYLES["mixed bag"])  # a little of every package


def test_cpu_seconds_of_a_running_process_are_read():
    import os

    from bashlsp.bench.train import process_cpu_seconds

    spent = process_cpu_seconds(os.getpid())
    if spent is None:
        pytest.skip("no /proc here")
    assert 0 < spent < 10_000
    assert process_cpu_seconds(2**22 + 12345) is None  # no such process


def test_a_corpus_without_the_styles_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.jsonl").write_text("")
    with pytest.raises(BashlspError, match="none of the held-out packages"):
        build_style_folders(tmp_path, tmp_path / "out")


def test_the_table_has_a_row_a_folder_and_counts_the_targets(tmp_path):
    history = {
        "published": "x",
        "gate": {
            "user_bpb_before": 2.0,
            "user_bpb_after": 1.7,
            "general_bpb_before": 1.5,
            "general_bpb_after": 1.52,
            "step": 60,
        },
        # Published at step 60 of a round of 80: the table says the round's length, not the step's.
        "training": {"steps": 60, "planned_steps": 80, "tokens_per_second": 2500.0},
        "summary": "bashlsp-train: published",
        "personalisation": {"examples": 12, "context": {"plain_bpb": 2.0, "context_bpb": 1.9}},
    }
    (tmp_path / HISTORY_FILE).write_text(json.dumps(history) + "\n")
    row = round_figures(tmp_path)
    row.update(
        style="test suite",
        scripts=100,
        kb=500.0,
        first_checkpoint_s=70.0,
        first_checkpoint_cpu_s=40.0,
        round_s=95.0,
        cpu_s=180.0,
        load_start=1.0,
        load_end=2.0,
        user_change=-0.15,
        general_change=0.0133,
        user_bytes_before=2.1,
        user_bytes_after=2.0,
        user_bytes_change=-0.1 / 2.1,
    )
    refused = dict(
        row,
        style="init scripts",
        published=False,
        user_change=-0.05,
        general_change=0.03,
        first_checkpoint_s=None,
        user_bytes_after=None,
        user_bytes_change=None,
    )
    table = style_table([row, refused], 150.0)
    lines = table.splitlines()
    assert len(lines) == 2 + 2 + 1
    assert "| test suite | 100 | 500 | yes | 2.000 -> 1.700 (-15.0%) | 2.100 -> 2.000 (-4.8%) |" in lines[2]
    assert "| 60 of 80 |" in lines[2] and "| 2.100 -> n/a (n/a) |" in lines[3]
    assert "| 70 (40) | 95 | 180 | 60 of 80 | 2,500 (150) | 2.000 -> 1.900 (-5.0%) |" in lines[2]
    assert lines[-1].startswith("published in 1 of 2; your holdout -10% or better in 1 of 2")
    assert "general holdout within +2% in 1 of 2; first checkpoint within 90 s in 1 of 2" in lines[-1]
