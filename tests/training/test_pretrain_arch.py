"""bashlsp-train --pretrain --arch (issue 17): each architecture trains, resumes, exports float16
weights and loads through the one loader; its settings are checked."""

from __future__ import annotations

import json

import pytest
from support import FIXTURES

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.training import pretrain


def pretrain_args(out, *extra):
    # the character tokenizer: no BPE to train, so a run is a few seconds
    return [str(FIXTURES / "scripts"), "--out", str(out), "--steps", "2", "--batch-size", "2", "--seq-len", "32"] + [
        "--warmup",
        "1",
        "--save-every",
        "1",
        "--no-progress",
        "--threads",
        "1",
        "--tokenizer",
        "char",
        "--max-eval-docs",
        "2",
        *extra,
    ]


@pytest.mark.parametrize(
    "arch, settings",
    [("moe", ["--n-experts", "3", "--top-k", "1"]), ("mamba", ["--d-state", "8"]), ("hybrid", ["--attn-every", "2"])],
)
def test_each_arch_trains_resumes_exports_and_loads(tmp_path, capsys, arch, settings):
    out, export = tmp_path / "run", tmp_path / "export"
    assert pretrain.main(pretrain_args(out, "--arch", arch, *settings)) == 0
    assert f"model nano, {arch}" in capsys.readouterr().out
    assert pretrain.main(pretrain_args(out, "--arch", arch, *settings, "--steps", "3", "--export", str(export))) == 0
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
    assert pretrain.main(pretrain_args(out, "--arch", "dense", "--steps", "4")) == 1
    assert "different model config" in capsys.readouterr().err


def test_a_setting_of_another_arch_is_a_clear_error(tmp_path, capsys):
    assert pretrain.main(pretrain_args(tmp_path / "run", "--arch", "mamba", "--n-experts", "4")) == 1
    assert "n_experts do not apply to arch mamba" in capsys.readouterr().err
    assert pretrain.main(pretrain_args(tmp_path / "run2", "--arch", "moe", "--top-k", "9")) == 1
    assert "top_k=9 must be between 1 and n_experts=4" in capsys.readouterr().err
