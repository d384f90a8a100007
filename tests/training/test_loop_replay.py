"""Replay in the shared training loop (issue 16): a share of every micro-batch comes from the
replay texts, the rest from the training texts, and a resumed run replays the same windows."""

import pytest
import torch
from support import fixture_texts, tiny_config

from bashlsp.model.errors import TrainingError
from bashlsp.model.gpt import GPT
from bashlsp.model.tokenizer import BashTokenizer
from bashlsp.training.loop import TrainConfig, Trainer

REPLAY = ["printf '%s\\n' \"zebra quokka $((i * 7))\"\n" * 20, 'for q in quokka zebra; do echo "$q"; done\n' * 20]


@pytest.fixture(scope="module")
def tokenizer():
    return BashTokenizer.train(fixture_texts() * 3 + REPLAY, vocab_size=384)


def _trainer(tokenizer, tmp_path, steps=6, share=0.25):
    torch.manual_seed(0)
    config = TrainConfig(
        steps=steps, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=1, fim_rate=0.0, progress=False, replay_share=share
    )
    model = GPT(tiny_config(tokenizer.vocab_size))
    return Trainer(
        model, tokenizer, fixture_texts(), config, torch.device("cpu"), state_dir=tmp_path, replay_texts=REPLAY
    )


def _windows(data) -> set[tuple]:
    return {tuple(data[i][0].tolist()) for i in range(len(data))}


def test_every_batch_mixes_replay_rows(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path)
    assert trainer.config.replay_rows() == 1
    user, replay = _windows(trainer.data), _windows(trainer.replay)
    batches = trainer._batches()
    for _ in range(5):
        x, _y = next(batches)
        rows = [tuple(row.tolist()) for row in x]
        assert len(rows) == 4
        assert all(row in user for row in rows[:3]) and rows[3] in replay


def test_no_share_keeps_the_plain_stream(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, share=0.0)
    assert trainer.replay is None and trainer.config.replay_rows() == 0
    user = _windows(trainer.data)
    x, _y = next(trainer._batches())
    assert all(tuple(row.tolist()) in user for row in x)


def test_resume_with_replay_continues_exactly(tokenizer, tmp_path):
    straight = _trainer(tokenizer, tmp_path / "a", steps=6)
    straight.train()
    first = _trainer(tokenizer, tmp_path / "b", steps=6)
    first.train(should_stop=lambda: first.step >= 3)
    resumed = _trainer(tokenizer, tmp_path / "b", steps=6)
    assert resumed.load_state() and resumed.step == 3
    resumed.train()
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name, atol=1e-5, rtol=1e-4)


def test_share_without_texts_or_out_of_range_is_a_clear_error(tokenizer):
    model = GPT(tiny_config(tokenizer.vocab_size))
    config = TrainConfig(steps=2, batch_size=4, seq_len=32, progress=False, replay_share=0.5)
    with pytest.raises(TrainingError, match="no replay texts"):
        Trainer(model, tokenizer, fixture_texts(), config, torch.device("cpu"))
    with pytest.raises(TrainingError, match="replay_share"):
        TrainConfig(replay_share=1.0).validate()
