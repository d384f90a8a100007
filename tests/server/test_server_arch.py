"""Checkpoints of the other architectures (issue 17) served by the real server over stdio: the
numpy backend runs dense only, so they are served with torch on the CPU, and say so."""

from __future__ import annotations

import re

import pytest
import torch
from support import RawServer, run_cli

from bashlsp.model.architectures import build_model
from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint, save_checkpoint
from bashlsp.model.config import GPTConfig
from bashlsp.model.tokenizer import BashTokenizer

CHAR = BashTokenizer.char()
MEMO = '#!/bin/sh\nfor f in *.log; do\n  gzip -9 --keep --verbose "$f"\ndone\necho finished\n'


def memorized(directory, arch: str):
    """A tiny model of `arch` that has memorised MEMO (char tokens; ~2-5 s on one thread)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = GPTConfig(vocab_size=CHAR.vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=64, arch=arch)
        model = build_model(config)
        ids = torch.tensor([CHAR.eof_id] + CHAR.encode(MEMO) + [CHAR.eof_id])
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(150):
            loss = model(ids[None, :-1], targets=ids[None, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return save_checkpoint(directory, model, CHAR, {"kind": "test", "metrics": {"train_loss": loss.item()}})


@pytest.mark.parametrize("arch", ["moe", "mamba"])
def test_the_server_serves_another_arch_with_torch_on_the_cpu(tmp_path, arch):
    checkpoint = memorized(tmp_path / arch, arch)
    server = RawServer(tmp_path / "server.log", ["--log-level", "info", "--device", "cpu"])
    try:
        server.initialize({"checkpoint": str(checkpoint), "completion": {"alternatives": 1}})
        server.wait_log("serving")
        log = server.log_path.read_text()  # the server's own log (stderr)
        assert f"is arch {arch}, which the numpy backend does not run: serving it with torch on the CPU" in log
        info = server.model_info()
        assert info["backend"] == "torch" and info["device"] == "cpu", info
        prefix = MEMO[: MEMO.index("gz") + 2]
        server.open("file:///tmp/arch.sh", prefix)
        answer = server.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": "file:///tmp/arch.sh"},
                "position": {"line": 2, "character": 4},
                "context": {"triggerKind": 2},
            },
        )
        items = answer["result"]["items"] if isinstance(answer["result"], dict) else answer["result"]
        assert items and items[0]["insertText"].startswith('ip -9 --keep --verbose "$f"'), answer
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
