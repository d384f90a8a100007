"""Shared by the editor tests (test_editors_*.py): a tiny model that knows the fixture scripts
by heart, so a real editor asking for a completion or a generated script gets a known answer."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import make_tiny_checkpoint

# The tiny model (2 layers x 64) after 300 steps: train loss ~0.15, it reproduces the fixture
# scripts. After the conftest default of 60 steps (loss ~2.1) every generated script fails
# `bash -n`, so the code action would insert nothing.
MEMORIZED_STEPS = 300


def memorized_checkpoint(tmp_path_factory) -> Path:
    """Trained once per test session, shared by the editor test modules."""
    directory = tmp_path_factory.getbasetemp() / "editors-memorized-checkpoint"
    if not (directory / "meta.json").exists():
        threads = torch.get_num_threads()
        # Measured on the 2-core CI box while other work ran: 20 steps took 13.3 s with
        # torch's 2 threads and 1.1 s with one; a model this small gains nothing from threads.
        torch.set_num_threads(1)
        try:
            make_tiny_checkpoint(directory, steps=MEMORIZED_STEPS)
        finally:
            torch.set_num_threads(threads)
    return directory
