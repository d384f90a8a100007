"""Low-rank adapters (model/lora.py): they start as no change, train alone, and merge exactly."""

from __future__ import annotations

import pytest
import torch
from support import tiny_config

from bashlsp.model.errors import ConfigError
from bashlsp.model.gpt import GPT
from bashlsp.model.lora import TARGETS, LoRA, LoRAConfig


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(96))


def _ids() -> torch.Tensor:
    return torch.randint(0, 96, (2, 24), generator=torch.Generator().manual_seed(1))


def test_a_fresh_adapter_changes_nothing_and_freezes_the_model():
    model = _model()
    ids = _ids()
    before = model(ids)
    adapter = LoRA(model, LoRAConfig(rank=4))
    assert torch.equal(model(ids), before)  # B starts at zero
    assert not any(p.requires_grad for p in model.parameters())
    assert len(adapter.names) == len(TARGETS) * model.config.n_layer
    # rank x in + out x rank for each target: far fewer than the model's own
    assert sum(p.numel() for p in adapter.parameters()) < model.num_params() / 10


def test_merged_weights_give_the_adapted_outputs_and_the_same_names():
    model = _model()
    adapter = LoRA(model, LoRAConfig(rank=4, alpha=8.0))
    with torch.no_grad():
        for b in adapter.b:
            b.normal_(std=0.05)
    ids = _ids()
    adapted = model(ids)
    merged = adapter.merged(model)
    assert set(merged.state_dict()) == set(model.state_dict())
    assert torch.allclose(merged(ids), adapted, atol=1e-5)
    assert not torch.allclose(adapted, _model()(ids), atol=1e-3)  # the change is real
    adapter.detach()
    assert torch.allclose(model(ids), _model()(ids))  # the original weights were left alone


def test_training_moves_only_the_adapter(tmp_path):
    from bashlsp.model.tokenizer import BashTokenizer
    from bashlsp.training.loop import TrainConfig, Trainer

    texts = ['#!/bin/sh\nfor f in *.txt; do\n  wc -l "$f"\ndone\n' * 20, "echo hello world | tr a-z A-Z\n" * 30]
    tokenizer = BashTokenizer.train(texts, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(tiny_config(tokenizer.vocab_size))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = LoRA(model, LoRAConfig(rank=2))
    config = TrainConfig(steps=4, batch_size=2, seq_len=32, lr=1e-2, warmup_steps=1, progress=False)
    trainer = Trainer(model, tokenizer, texts, config, torch.device("cpu"), state_dir=tmp_path / "s", adapter=adapter)
    trainer.train()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    assert any(b.abs().sum() > 0 for b in adapter.b)
    # The resumable state carries the adapter: a fresh one resumes with the trained values.
    fresh = LoRA(model, LoRAConfig(rank=2))
    resumed = Trainer(model, tokenizer, texts, config, torch.device("cpu"), state_dir=tmp_path / "s", adapter=fresh)
    assert resumed.load_state() and resumed.step == 4
    assert all(torch.equal(a, b) for a, b in zip(fresh.b, adapter.b))


@pytest.mark.parametrize(
    "config", [LoRAConfig(rank=0), LoRAConfig(rank=4, alpha=0.0), LoRAConfig(rank=4, targets=("attn.nope",))]
)
def test_bad_adapter_settings_are_clear_errors(config):
    with pytest.raises(ConfigError, match="adapter"):
        LoRA(_model(), config)


def test_a_disabled_adapter_is_the_start_model():
    model = _model()
    ids = _ids()
    start = model(ids)
    adapter = LoRA(model, LoRAConfig(rank=4))
    with torch.no_grad():
        for b in adapter.b:
            b.normal_(std=0.05)
    with adapter.disabled():
        assert torch.equal(model(ids), start)
    assert not torch.allclose(model(ids), start, atol=1e-3)
