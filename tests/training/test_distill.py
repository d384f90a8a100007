"""Replay distillation (training/distill.py): the replayed rows are pulled towards the start
model's predictions, the other rows and evaluation are left alone."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from support import tiny_config

from bashlsp.model.errors import TrainingError
from bashlsp.model.gpt import GPT
from bashlsp.training.distill import ReplayDistillation


def _pair() -> tuple[GPT, GPT, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    teacher = GPT(tiny_config(96)).eval()
    student = copy.deepcopy(teacher).train()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ids = torch.randint(0, 96, (4, 16), generator=torch.Generator().manual_seed(1))
    return student, teacher, ids[:, :-1], ids[:, 1:]


def test_the_loss_adds_the_kl_of_the_replayed_rows_only():
    student, teacher, x, y = _pair()
    plain = student(x, targets=y)
    distill = ReplayDistillation(student, teacher, rows=2, weight=0.5)
    loss = student(x, targets=y)
    with torch.no_grad():
        p_teacher = F.log_softmax(teacher(x[-2:]), dim=-1)
        p_student = F.log_softmax(student(x[-2:]), dim=-1)
    kl = (p_teacher.exp() * (p_teacher - p_student)).sum(-1).mean()
    assert distill.last_kl == pytest.approx(kl.item(), rel=1e-4)
    assert loss.item() == pytest.approx(plain.item() + 0.5 * kl.item(), rel=1e-4)
    loss.backward()  # the pull reaches the student's weights
    assert student.wte.weight.grad is not None and teacher.wte.weight.grad is None


def test_evaluation_and_a_start_model_copy_are_left_alone():
    student, teacher, x, y = _pair()
    distill = ReplayDistillation(student, teacher, rows=2)
    student.eval()
    assert student(x, targets=y).item() == pytest.approx(
        F.cross_entropy(student(x).flatten(0, 1), y.reshape(-1)).item(), rel=1e-5
    )
    student.train()
    same = copy.deepcopy(teacher).train()
    unchanged = ReplayDistillation(same, teacher, rows=2)
    same(x, targets=y)
    assert unchanged.last_kl == pytest.approx(0.0, abs=1e-6)  # the start model is its own teacher
    assert distill.last_kl is None  # not in training mode
    distill.detach()
    assert student(x, targets=y).item() == pytest.approx(
        F.cross_entropy(student(x).flatten(0, 1), y.reshape(-1)).item(), rel=1e-5
    )


def test_without_replayed_rows_it_is_a_clear_error():
    student, teacher, _, _ = _pair()
    with pytest.raises(TrainingError, match="replay"):
        ReplayDistillation(student, teacher, rows=0)


def test_a_round_with_adapters_distils_from_the_adapters_switched_off(tmp_path, tiny_checkpoint):
    import json

    from support import write_personal_scripts

    from bashlsp.model.checkpoint import CheckpointStore
    from bashlsp.training.personal import HISTORY_FILE, PersonalOptions, PersonalTrainer

    replay = tmp_path / "replay"
    replay.mkdir()
    doc = '#!/bin/sh\n# replayed general bash\nfor f in *.log; do gzip -9 "$f"; done\n' * 8
    (replay / "replay.jsonl").write_text(json.dumps({"text": doc}) + "\n")
    options = PersonalOptions(
        dirs=[write_personal_scripts(tmp_path / "scripts")],
        store=tmp_path / "store",
        base=str(tiny_checkpoint),
        once=True,
        device="cpu",
        steps=4,
        lr=1e-2,
        batch_size=4,
        seq_len=64,
        warmup_steps=1,
        progress=False,
        holdout_fraction=0.2,
        eval_points=1,
        adapter_rank=2,
        replay=replay,
        replay_share=0.25,
        replay_distill=1.0,
        general_holdout=tmp_path / "no-general-holdout",
    )
    lines: list[str] = []
    assert PersonalTrainer(options, out=lines.append).run() == 0
    text = "\n".join(lines)
    assert "(1 of 4 rows general bash replayed), distilled from the start model (weight 1)" in text
    logged = json.loads((options.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["training"]["replay_distill"] == 1.0 and logged["training"]["adapter_rank"] == 2
    assert logged["published"] == CheckpointStore(options.store).current_id(), text
