import math

import pytest
import torch
from support import fixture_texts, tiny_config

from bashlsp.model.errors import TrainingError
from bashlsp.model.gpt import GPT
from bashlsp.model.tokenizer import BashTokenizer
from bashlsp.training.loop import TokenWindows, TrainConfig, Trainer, lr_at


@pytest.fixture(scope="module")
def tokenizer():
    return BashTokenizer.train(fixture_texts() * 3, vocab_size=384)


def test_lr_schedule_warms_up_then_decays_to_floor():
    config = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(1e-4)
    assert lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(55, config) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(100, config) == pytest.approx(1e-4)
    values = [lr_at(s, config) for s in range(10, 101)]
    assert values == sorted(values, reverse=True)


def test_windows_hold_plain_and_fim_examples(tokenizer):
    data = TokenWindows(fixture_texts(), tokenizer, seq_len=64, fim_rate=1.0, seed=0)
    stream = data.stream.tolist()
    # Every document became an SPM example: <prefix><suffix> SUFFIX <middle> PREFIX MIDDLE <eof>
    assert stream.count(tokenizer.fim_prefix_id) >= len(fixture_texts()) - 1
    assert stream.count(tokenizer.fim_middle_id) == stream.count(tokenizer.fim_prefix_id)
    x, y = data[0]
    assert x.shape == y.shape == (64,)
    assert torch.equal(x[1:], y[:-1])
    plain = TokenWindows(fixture_texts(), tokenizer, seq_len=64, fim_rate=0.0, seed=0)
    assert tokenizer.fim_prefix_id not in plain.stream.tolist()
    assert plain.stream.tolist().count(tokenizer.eof_id) >= len(fixture_texts()) - 1


def test_fim_draw_changes_with_epoch_and_is_reproducible(tokenizer):
    a = TokenWindows(fixture_texts(), tokenizer, seq_len=64, fim_rate=0.5, seed=3)
    b = TokenWindows(fixture_texts(), tokenizer, seq_len=64, fim_rate=0.5, seed=3)
    assert torch.equal(a.stream, b.stream)
    a.set_epoch(1)
    assert not torch.equal(a.stream, b.stream)


def test_too_little_data_is_a_clear_error(tokenizer):
    with pytest.raises(TrainingError, match="fewer than one sequence"):
        TokenWindows(["echo hi\n"], tokenizer, seq_len=64, fim_rate=0.0, seed=0)


def _trainer(tokenizer, tmp_path, steps):
    torch.manual_seed(0)
    model = GPT(tiny_config(tokenizer.vocab_size))
    config = TrainConfig(
        steps=steps, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=2, save_every=3, log_every=1, progress=False
    )
    return Trainer(model, tokenizer, fixture_texts(), config, torch.device("cpu"), state_dir=tmp_path)


def test_training_lowers_loss_and_records_history(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, steps=30)
    result = trainer.train()
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert result.steps_done == 30 and len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert (tmp_path / "state" / "trainer.json").is_file()


def test_resume_continues_exactly(tokenizer, tmp_path):
    straight = _trainer(tokenizer, tmp_path / "a", steps=8)
    straight.train()
    first = _trainer(tokenizer, tmp_path / "b", steps=8)
    first.train(should_stop=lambda: first.step >= 5)  # interrupted at 5; state saved
    resumed = _trainer(tokenizer, tmp_path / "b", steps=8)
    assert resumed.load_state() and resumed.step == 5
    resumed.train()
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name, atol=1e-5, rtol=1e-4)


def test_non_finite_loss_is_skipped_and_counted(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, steps=4)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    original = trainer.model.forward
    trainer.ddp_model = lambda x, targets: original(x, targets=targets) * float("nan")
    result = trainer.train()
    assert result.skipped_nonfinite == 4
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_stop_flag_stops_at_a_step_boundary(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, steps=50)
    result = trainer.train(should_stop=lambda: trainer.step >= 3)
    assert result.stopped_early and result.steps_done == 3
    assert math.isfinite(result.final_loss)
