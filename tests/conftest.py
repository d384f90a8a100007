"""Shared fixtures (the helpers they use are in support.py). Tests live in one folder per layer
without __init__.py files, so every test file name must be unique across the folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
