"""bashlsp-train --pretrain --arch (issue 17): each architecture trains, resumes, exports float16
weights and loads through the one loader; its settings are checked."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from support import pretrain_args

from bashlsp.model.architectures import build_model
from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.config import GPTConfig
from bashlsp.training import pretrain
from bashlsp.training.loop import checkpoint_blocks


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second thread only adds synchronisation (support.make_tiny_checkpoint)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def char_pretrain_args(out, *extra):
    # the character tokenizer: no BPE to train, so a run is a few seconds
    return pretrain_args(out, "--tokenizer", "char", "--max-eval-docs", "2", *extra)


@pytest.mark.parametrize(
    "arch, settings",
    [("moe", ["--n-experts", "3", "--top-k", "1"]), ("mamba", ["--d-state", "8"]), ("hybrid", ["--attn-every", "2"])],
)
def test_each_arch_trains_resumes_exports_and_loads(tmp_path, capsys, arch, settings):
    out, export = tmp_path / "run", tmp_path / "export"
    assert pretrain.main(char_pretrain_args(out, "--arch", arch, *settings)) == 0
    assert f"model nano, {arch}" in capsys.readouterr().out
    assert (
        pretrain.main(char_pretrain_args(out, "--arch", arch, *settings, "--steps", "3", "--export", str(export))) == 0
    )
    assert "resumed at step 2" in capsys.readouterr().out
    for path in (out / "final", export):
        loaded = load_checkpoint(path, backend="numpy")  # served with torch: numpy runs dense only
        assert loaded.config.arch == arch and loaded.backend == "torch"
        assert json.loads((path / "meta.json").read_text())["arch"] == arch
    config = json.loads((export / "config.json").read_text())["model"]
    assert config["arch"] == arch
    if arch == "moe":
        assert (config["n_experts"], config["top_k"]) == (3, 1)
    # a resumed run of another architecture is refused (the saved state is of this one)
    assert pretrain.main(char_pretrain_args(out, "--arch", "dense", "--steps", "4")) == 1
    assert "different model config" in capsys.readouterr().err


def test_a_setting_of_another_arch_is_a_clear_error(tmp_path, capsys):
    assert pretrain.main(char_pretrain_args(tmp_path / "run", "--arch", "mamba", "--n-experts", "4")) == 1
    assert "n_experts do not apply to arch mamba" in capsys.readouterr().err
    assert pretrain.main(char_pretrain_args(tmp_path / "run2", "--arch", "moe", "--top-k", "9")) == 1
    assert "top_k=9 must be between 1 and n_experts=4" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["moe", "mamba", "hybrid"])
def test_grad_checkpointing_and_unused_experts(arch):
    """--grad-checkpointing gives the same loss and gradients (the MoE balancing loss included),
    and every parameter gets one (an expert no token chose: zeros, as DDP expects)."""
    torch.manual_seed(0)
    settings = {"n_experts": 8, "top_k": 1} if arch == "moe" else {}
    model = build_model(GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=2, n_embd=32, arch=arch, **settings))
    checkpointed = copy.deepcopy(model)
    checkpoint_blocks(checkpointed)
    idx = torch.randint(0, 97, (1, 4))  # 3 tokens for 8 experts: most get none
    losses = []
    for m in (model, checkpointed):
        loss = m(idx[:, :-1], targets=idx[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    for (name, p), q in zip(model.named_parameters(), checkpointed.parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad)
