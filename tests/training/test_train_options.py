"""The training switches of issue 17: --tokenizer char, --grad-checkpointing, --compile, --amp,
--stage, through the real loop and `bashlsp-train --pretrain`."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from support import fixture_texts, pretrain_args, tiny_config

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.device import amp_dtype, cpu_has_fast_bf16
from bashlsp.model.gpt import GPT
from bashlsp.model.tokenizer import BashTokenizer
from bashlsp.training import pretrain
from bashlsp.training.loop import TrainConfig, Trainer, checkpoint_blocks, compile_unavailable

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    return BashTokenizer.char()


def tiny_trainer(tokenizer, **options) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=2, batch_size=2, seq_len=32, warmup_steps=1, progress=False, **options)
    return Trainer(GPT(tiny_config(tokenizer.vocab_size)), tokenizer, fixture_texts(), config, CPU)


def loss_and_grads(model: GPT, x, y):
    model.zero_grad(set_to_none=True)
    loss = model(x, targets=y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_grad_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    model = GPT(tiny_config(300))
    x, y = torch.randint(0, 300, (2, 48)), torch.randint(0, 300, (2, 48))
    plain_loss, plain_grads = loss_and_grads(model, x, y)
    names = list(model.state_dict())
    checkpoint_blocks(model)
    assert list(model.state_dict()) == names  # the checkpoint layout does not change
    loss, grads = loss_and_grads(model, x, y)
    assert torch.equal(loss, plain_loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=1e-6, msg=name)
    with torch.inference_mode():  # evaluation runs the blocks plainly
        torch.testing.assert_close(model(x), GPT.forward(model, x))


def test_grad_checkpointing_through_the_trainer_trains(tokenizer):
    result = tiny_trainer(tokenizer, grad_checkpointing=True).train()
    assert result.steps_done == 2 and result.final_loss == result.final_loss  # finite, not NaN


def test_grad_checkpointing_needs_blocks():
    with pytest.raises(Exception, match="needs a model with a .blocks list"):
        checkpoint_blocks(torch.nn.Linear(2, 2))


def test_compile_without_a_compiler_warns_once_and_trains_eager(tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, c++ or clang++ here
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in compile_unavailable(CPU)
    with pytest.warns(RuntimeWarning, match="--compile: no C\\+\\+ compiler.*training without it") as caught:
        trainer = tiny_trainer(tokenizer, compile=True)
    assert len(caught) == 1 and trainer.compiled_model is None
    assert trainer.train().steps_done == 2


@pytest.mark.skipif(cpu_has_fast_bf16(), reason="this CPU runs bf16 fast: autocast is used")
def test_amp_on_a_cpu_without_fast_bf16_says_so_and_stays_fp32(tokenizer):
    dtype, message = amp_dtype(CPU, "on")
    assert dtype is None and "AVX512-BF16 or AMX" in message and "training in fp32" in message
    with pytest.warns(RuntimeWarning, match="training in fp32"):
        trainer = tiny_trainer(tokenizer, amp="on")
    assert trainer.scaler is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto and off stay silent
        assert amp_dtype(CPU, "auto") == (None, None) and amp_dtype(CPU, "off") == (None, None)
    dtype, message = amp_dtype(CPU, "force")
    assert dtype == torch.bfloat16 and "slower than fp32" in message
    with pytest.warns(RuntimeWarning, match="--amp force"):
        assert tiny_trainer(tokenizer, amp="force").train().steps_done == 2  # bf16 autocast, if slowly


def test_unknown_amp_mode_is_a_clear_error(tokenizer):
    with pytest.raises(Exception, match="amp must be one of auto, on, off, force"):
        tiny_trainer(tokenizer, amp="fast")


def test_char_pretraining_trains_resumes_exports_and_loads(tmp_path, capsys):
    out, export = tmp_path / "run", tmp_path / "export"
    assert pretrain.main(pretrain_args(out, "--tokenizer", "char", "--grad-checkpointing")) == 0
    assert pretrain.main(pretrain_args(out, "--steps", "3", "--export", str(export))) == 0
    assert "resumed at step 2" in capsys.readouterr().out
    for path in (out / "final", export):
        loaded = load_checkpoint(path, backend="numpy")
        assert loaded.tokenizer.kind == "char" and loaded.config.vocab_size == 261
        assert json.loads((path / "config.json").read_text())["model"]["vocab_size"] == 261
    meta = json.loads((export / "meta.json").read_text())["training"]
    assert meta["tokenizer"] == "char" and meta["grad_checkpointing"] is False and meta["total_steps"] == 3
    # The run directory's tokenizer is a char one: asking for BPE there is refused.
    assert pretrain.main(pretrain_args(out, "--tokenizer", "bpe")) == 1
    assert "is a char tokenizer, not bpe" in capsys.readouterr().err


def test_stages_language_then_code_from_it(tmp_path, capsys):
    language = tmp_path / "language"
    assert pretrain.main(pretrain_args(language, "--tokenizer", "char", "--stage", "language")) == 0
    meta = json.loads((language / "final" / "meta.json").read_text())["training"]
    assert meta["stage"] == "language" and meta["fim_rate"] == 0.0
    assert pretrain.main(pretrain_args(tmp_path / "code-alone", "--stage", "code")) == 1
    assert "give it with --init" in capsys.readouterr().err
    code = tmp_path / "code"
    assert pretrain.main(pretrain_args(code, "--stage", "code", "--init", str(language / "final"))) == 0
    meta = json.loads((code / "final" / "meta.json").read_text())
    assert meta["training"]["stage"] == "code" and meta["training"]["fim_rate"] == 0.5
    assert meta["training"]["tokenizer"] == "char" and meta["training"]["total_steps"] == 4
