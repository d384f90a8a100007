"""bench train --compare's own parts that run in seconds: the corpus slice, the table, the
dispatch from `bashlsp bench train`. (The comparison itself trains five models: its figures and
command are in docs/benchmarks.md.)"""

from __future__ import annotations

import json

from support import fixture_texts, run_cli

from bashlsp.bench.compare import ROWS, slice_corpus, table
from bashlsp.training.pretrain import load_documents


def test_slice_takes_every_kth_train_script_and_pretraining_reads_it(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "files").mkdir(parents=True)
    records = []
    for i, text in enumerate(fixture_texts() * 4):
        name = f"files/{i}.sh"
        (corpus / name).write_text(text)
        split = "holdout" if i % 5 == 0 else "train"
        records.append(
            {
                "sha256": str(i),
                "file": name,
                "package": f"p{i}",
                "path": f"/{i}",
                "bytes": len(text.encode()),
                "split": split,
            }
        )
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    train_bytes = sum(r["bytes"] for r in records if r["split"] == "train")
    summary = slice_corpus(corpus, tmp_path / "slice", megabytes=train_bytes / 3 / 1e6)
    assert summary["every"] == 3
    train, holdout, _ = load_documents(tmp_path / "slice")
    expected = [(corpus / r["file"]).read_text() for r in records if r["split"] == "train"][::3]
    assert train == expected and len(holdout) == 1  # the corpus's holdout stays out; one stand-in for the loader


def test_table_has_a_row_per_run():
    row = {
        "row": "dense-char",
        "params": 3_280_384,
        "train_tokens_per_cpu_s": 2500.0,
        "tokens": 200_000,
        "holdout_bpb": 2.5,
        "next_line_em": 0.05,
        "decode_tokens_per_s": 900.0,
        "typing_p95_s": 0.048,
        "serving": "numpy on cpu",
    }
    lines = table([row, dict(row, row="mamba", decode_tokens_per_s=None)]).splitlines()
    assert lines[2] == "| dense-char | 3.28M | 2,500 | 0.20M | 2.500 | 5.0% | 900 | 48 | numpy on cpu |"
    assert lines[3].startswith("| mamba |") and "| - |" in lines[3]
    assert set(ROWS) == {"dense", "moe", "mamba", "hybrid", "dense-char"}


def test_bench_train_dispatches_compare():
    result = run_cli("bench", "train", "--compare", "--help")
    assert result.returncode == 0 and "--seconds" in result.stdout and "--holdout" in result.stdout
