"""python -m bashlsp.training.export: a run's checkpoint or saved state shipped as float16 with its
prompt formats, loadable by the one loader."""

import json
import shutil

from support import fixture_texts

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.examples import uses_examples
from bashlsp.training import export
from bashlsp.training.loop import TrainConfig, Trainer


def run_checkpoint(tiny_checkpoint, folder):
    """The tiny checkpoint as a pre-training run's final/ looks: with its data and training record."""
    shutil.copytree(tiny_checkpoint, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(data={"corpus": "/somewhere/local", "train_docs": 3}, training={"steps": 2, "tokens_seen": 64})
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def test_a_checkpoint_is_shipped_with_its_prompt_formats(tiny_checkpoint, tmp_path):
    out = tmp_path / "weights"
    final = run_checkpoint(tiny_checkpoint, tmp_path / "final")
    code = export.main([str(final), "--out", str(out), "--id", "default-test-1", "--prompt-formats", "fim", "examples"])
    assert code == 0
    loaded = load_checkpoint(out)
    assert loaded.id == "default-test-1"
    assert uses_examples(loaded.meta) and loaded.meta["prompt_formats"] == ["fim", "examples"]
    assert "tldr-pages" in loaded.meta["credits"]
    assert "corpus" not in loaded.meta["data"]  # no local paths leave the machine


def test_a_checkpoint_without_a_training_record_is_refused(tiny_checkpoint, tmp_path, capsys):
    code = export.main([str(tiny_checkpoint), "--out", str(tmp_path / "w"), "--id", "x"])
    assert code == 2 and "no training record" in capsys.readouterr().err


def test_a_runs_saved_state_is_shipped(tiny_checkpoint, tmp_path):
    base = load_checkpoint(tiny_checkpoint)
    run = tmp_path / "run"
    config = TrainConfig(
        steps=2, batch_size=2, seq_len=32, warmup_steps=1, save_every=1, eval_every=100, progress=False
    )
    trainer = Trainer(base.model.train(), base.tokenizer, fixture_texts(), config, base.device, state_dir=run)
    trainer.train()
    out = tmp_path / "weights"
    code = export.main([str(run), "--state", "--parent", str(tiny_checkpoint), "--out", str(out), "--id", "x-2"])
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["training"]["steps"] == 2 and meta["training"]["planned_steps"] == 2
    assert meta["prompt_formats"] == ["fim"] and not uses_examples(meta)
    load_checkpoint(out)


def test_a_run_without_state_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    code = export.main(
        [str(tmp_path), "--state", "--parent", str(tiny_checkpoint), "--out", str(tmp_path / "w"), "--id", "x"]
    )
    assert code == 2 and "has no saved state" in capsys.readouterr().err
