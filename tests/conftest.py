"""Shared fixtures: a tiny real checkpoint trained for a few steps on fixture scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bashlsp.model.checkpoint import save_checkpoint
from bashlsp.model.gpt import GPT, GPTConfig
from bashlsp.model.tokenizer import BashTokenizer

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_SCRIPTS = sorted((FIXTURES / "scripts").glob("*.sh"))


def fixture_texts() -> list[str]:
    return [p.read_text() for p in FIXTURE_SCRIPTS]


def tiny_config(vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=64)


def make_tiny_checkpoint(directory: Path, steps: int = 60, seed: int = 0) -> Path:
    """Train a real (tiny) tokenizer and model on the fixture scripts and save a checkpoint."""
    torch.manual_seed(seed)
    # One thread: for a model this small, two threads only add synchronisation (measured
    # ~10x slower under load on the 2-core CI machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_tiny(directory, steps)
    finally:
        torch.set_num_threads(threads)


def _train_tiny(directory: Path, steps: int) -> Path:
    texts = fixture_texts()
    tokenizer = BashTokenizer.train(texts * 4, vocab_size=384)
    model = GPT(tiny_config(tokenizer.vocab_size))
    ids = []
    for text in texts:
        ids += tokenizer.encode(text) + [tokenizer.eof_id]
    data = torch.tensor(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = 64
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (8,))
        x = torch.stack([data[s : s + seq] for s in starts])
        y = torch.stack([data[s + 1 : s + seq + 1] for s in starts])
        loss = model(x, targets=y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(
        directory, model, tokenizer, {"data": {"files": len(texts)}, "metrics": {"train_loss": loss.item()}}
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def run_cli(
    *args: str, env: dict | None = None, input: str | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    """Run `python -m bashlsp.server.cli ARGS` (the `bashlsp` command) in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "bashlsp.server.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
    )
