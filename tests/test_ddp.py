"""Pre-training under torchrun: two CPU processes (gloo, DistributedDataParallel) on a tiny corpus
train together and rank 0 writes a loadable checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bashlsp.model.checkpoint import load_checkpoint
from conftest import FIXTURES


def test_two_gloo_processes_give_a_checkpoint(tmp_path, tiny_checkpoint):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        "-m", "bashlsp.training.pretrain", str(FIXTURES / "scripts"), "--out", str(run),
        "--init", str(tiny_checkpoint), "--device", "cpu", "--steps", "4", "--batch-size", "2", "--seq-len", "32",
        "--warmup", "1", "--save-every", "2", "--eval-every", "0", "--max-eval-docs", "2", "--no-progress",
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
