"""Pre-training under torchrun: two CPU processes (gloo, DistributedDataParallel) on a tiny corpus
train together and rank 0 writes a loadable checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from support import FIXTURES

from bashlsp.model.checkpoint import load_checkpoint


def test_two_gloo_processes_give_a_checkpoint(tmp_path, tiny_checkpoint):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "-m",
        "bashlsp.training.pretrain",
        str(FIXTURES / "scripts"),
        "--out",
        str(run),
        "--init",
        str(tiny_checkpoint),
        "--device",
        "cpu",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--warmup",
        "1",
        "--save-every",
        "2",
        "--eval-every",
        "0",
        "--max-eval-docs",
        "2",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # two processes on a small machine: one thread each
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    final = run / "final"
    loaded = load_checkpoint(final)  # validated: files, shapes, finite weights, a forward pass
    meta = json.loads((final / "meta.json").read_text())
    assert meta["training"]["world_size"] == 2
    assert meta["training"]["steps"] == 4
    # Each optimizer step consumed one micro-batch on each of the two ranks.
    assert meta["training"]["tokens_seen"] == 4 * 2 * 2 * 32
    assert loaded.config.n_layer == 2
    # Rank 0 alone wrote: one final checkpoint, one state, no per-rank copies.
    assert {p.name for p in run.iterdir()} <= {"final", "state", "tokenizer.json", "history.json"}
    assert (run / "state" / "trainer.json").is_file()


def test_export_writes_a_shippable_float16_checkpoint(tmp_path, tiny_checkpoint):
    """--export/--export-id: float16 weights, the id, no local paths, totals over the runs, and the
    general-holdout figure when the folder holds one (as model/weights does)."""
    from bashlsp.training import pretrain

    export = tmp_path / "weights"
    (export / "holdout").mkdir(parents=True)
    (export / "holdout" / "general.jsonl").write_text(
        json.dumps({"text": (FIXTURES / "scripts" / sorted(os.listdir(FIXTURES / "scripts"))[0]).read_text()}) + "\n"
    )
    (export / "README.md").write_text("card\n")
    code = pretrain.main(
        [
            str(FIXTURES / "scripts"),
            "--out",
            str(tmp_path / "run"),
            "--init",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--seq-len",
            "32",
            "--warmup",
            "1",
            "--eval-every",
            "0",
            "--max-eval-docs",
            "2",
            "--threads",
            "1",
            "--no-progress",
            "--export",
            str(export),
            "--export-id",
            "test-base-7",
        ]
    )
    assert code == 0
    loaded = load_checkpoint(export)
    meta = loaded.meta
    init_meta = load_checkpoint(tiny_checkpoint).meta
    assert meta["id"] == "test-base-7" and loaded.id == "test-base-7"
    assert meta["num_params"] == loaded.model.num_params() and meta["created"]  # kept when the gate is added
    assert "corpus" not in meta["data"] and "path" not in meta["data"]["init"]
    assert meta["training"]["steps_before"] == (init_meta.get("training", {}).get("total_steps") or 0)
    assert meta["training"]["tokens_seen_total"] >= meta["training"]["tokens_seen"] == 2 * 2 * 32
    gate = meta["gate"]
    assert gate["general_bpb_after"] == gate["general_reference_bpb"] > 0 and len(gate["general_holdout_digest"]) == 16
    assert (export / "README.md").read_text() == "card\n"  # the card and the holdout stay
    from safetensors import safe_open

    with safe_open(str(export / "model.safetensors"), framework="pt") as f:
        assert all(f.get_tensor(name).dtype == torch.float16 for name in f.keys())
