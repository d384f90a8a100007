"""Checkpoints of the other architectures (issue 17) served by the real server over stdio: the
numpy backend runs dense only, so they are served with torch on the CPU, and say so."""

from __future__ import annotations

import re

import pytest
from support import MEMO_TYPED, RawServer, inline_items, memorized_char_checkpoint, run_cli

from bashlsp.model.architectures import build_model
from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
from bashlsp.model.config import GPTConfig
from bashlsp.model.tokenizer import BashTokenizer

CHAR = BashTokenizer.char()


@pytest.mark.parametrize("arch", ["moe", "mamba"])
def test_the_server_serves_another_arch_with_torch_on_the_cpu(tmp_path, arch):
    checkpoint = memorized_char_checkpoint(tmp_path / arch, arch, steps=150)
    server = RawServer(tmp_path / "server.log", ["--log-level", "info", "--device", "cpu"])
    try:
        server.initialize({"checkpoint": str(checkpoint), "completion": {"alternatives": 1}})
        server.wait_log("serving")
        log = server.log_path.read_text()  # the server's own log (stderr)
        assert f"is arch {arch}, which the numpy backend does not run: serving it with torch on the CPU" in log
        info = server.model_info()
        assert info["backend"] == "torch" and info["device"] == "cpu", info
        server.open("file:///tmp/arch.sh", MEMO_TYPED)
        items = inline_items(server, "file:///tmp/arch.sh", 2, 4)
        assert items and items[0]["insertText"].startswith('ip -9 --keep --verbose "$f"'), items
    finally:
        assert server.close() == 0, server.log_tail()


def test_models_list_says_the_arch_and_the_backend(tmp_path):
    store = CheckpointStore(tmp_path / "store")
    tokenizer = CHAR
    for arch in ("dense", "hybrid"):
        config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32, arch=arch)
        store.publish(build_model(config), tokenizer)
    listing = run_cli("models", "list", env={"BASHLSP_STORE": str(store.root), "CUDA_VISIBLE_DEVICES": ""})
    assert listing.returncode == 0, listing.stderr
    lines = sorted(re.findall(r"\w+, served on \w+ \(\w+\)", listing.stdout))
    assert lines == ["dense, served on numpy (cpu)", "hybrid, served on torch (cpu)"], listing.stdout
    assert load_checkpoint(store.current_path(), backend="numpy").backend == "torch"
