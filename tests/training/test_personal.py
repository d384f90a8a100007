"""Personal fine-tuning end to end on a tiny model: publish, the quality gate, the store lock,
dry runs, Ctrl-C and resuming after a kill. The user's folder is checked byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import folder_state, write_personal_scripts

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
from bashlsp.model.errors import StoreLockedError
from bashlsp.training import cli
from bashlsp.training.gate import decide
from bashlsp.training.lock import StoreLock
from bashlsp.training.personal import HISTORY_FILE, STATE_DIR_NAME, PersonalOptions, PersonalTrainer
from bashlsp.training.report import write_report

GITHUB_TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
FAST = dict(
    steps=10, lr=3e-3, batch_size=4, seq_len=64, warmup_steps=2, progress=False, holdout_fraction=0.2, replay_share=0.0
)


@pytest.fixture
def user_dir(tmp_path) -> Path:
    folder = write_personal_scripts(tmp_path / "scripts")
    (folder / "deploy.sh").write_text(f"#!/bin/bash\nexport GITHUB_TOKEN={GITHUB_TOKEN}\ngit push origin main\n")
    (folder / "notes.txt").write_text("not a script\n")
    return folder


def options(user_dir: Path, tmp_path: Path, base: Path, **overrides) -> PersonalOptions:
    values = dict(
        FAST,
        dirs=[user_dir],
        store=tmp_path / "store",
        base=str(base),
        once=True,
        general_holdout=tmp_path / "no-general-holdout",
        device="cpu",
    )
    values.update(overrides)
    return PersonalOptions(**values)


def run_trainer(opts: PersonalOptions) -> tuple[PersonalTrainer, list[str]]:
    lines: list[str] = []
    trainer = PersonalTrainer(opts, out=lines.append)
    assert trainer.run() == 0
    return trainer, lines


def test_first_round_publishes_with_gate_figures(user_dir, tmp_path, tiny_checkpoint):
    before = folder_state(user_dir)
    trainer, lines = run_trainer(options(user_dir, tmp_path, tiny_checkpoint))
    store = CheckpointStore(tmp_path / "store")
    assert store.current_id() is not None, "\n".join(lines)
    meta = json.loads((store.current_path() / "meta.json").read_text())
    gate = meta["gate"]
    assert gate["publish"] is True
    assert gate["user_bpb_after"] < gate["user_bpb_before"]
    assert meta["metrics"]["user_holdout_bpb"] == gate["user_bpb_after"]
    assert any("forgetting check is skipped" in note for note in gate["notes"])
    assert meta["data"]["redactions"] == 1 and meta["data"]["skipped"] == {"not a shell script": 1}
    assert meta["base"]["path"] == str(tiny_checkpoint)
    # The decision and both figures are printed.
    text = "\n".join(lines)
    assert "quality gate: PUBLISH" in text and "your holdout:" in text and "general holdout:" in text
    # The published model loads and is a different model from the base.
    loaded = load_checkpoint(store.current_path())
    # Each better step of the round is published at once: the first has no parent, later ones the one before.
    published = [c.id for c in store.list()]
    assert loaded.meta["parent"] in [None, *published] and loaded.meta["summary"].startswith("bashlsp-train: published")
    history = [json.loads(line) for line in (store.root / HISTORY_FILE).read_text().splitlines()]
    assert history[-1]["published"] == store.current_id() and history[-1]["history"]
    assert not any((store.root / STATE_DIR_NAME).iterdir())  # the round is decided: no state kept
    assert folder_state(user_dir) == before


def test_secrets_never_reach_the_model(user_dir, tmp_path, tiny_checkpoint, monkeypatch):
    from bashlsp.training import loop

    seen: list[str] = []
    real_init = loop.TokenWindows.__init__

    def recording_init(self, texts, *args, **kwargs):
        seen.extend(texts)
        real_init(self, texts, *args, **kwargs)

    monkeypatch.setattr(loop.TokenWindows, "__init__", recording_init)
    run_trainer(options(user_dir, tmp_path, tiny_checkpoint, holdout_fraction=0.0001))
    assert seen and not any(GITHUB_TOKEN in text for text in seen)
    assert any("export GITHUB_TOKEN=REDACTED" in text for text in seen)


def test_a_deliberately_worse_model_is_not_published(user_dir, tmp_path, tiny_checkpoint):
    # A destructive learning rate wrecks the weights: the holdout gets worse, so nothing is published.
    _, lines = run_trainer(options(user_dir, tmp_path, tiny_checkpoint, lr=0.9, warmup_steps=1))
    store = CheckpointStore(tmp_path / "store")
    assert store.current_id() is None and store.list() == []
    assert "quality gate: REJECT: no step improved your holdout" in "\n".join(lines)
    logged = json.loads((store.root / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["published"] is None and logged["gate"]["publish"] is False


def test_forgetting_general_bash_blocks_publication(user_dir, tmp_path, tiny_checkpoint):
    # The tiny base knows the fixture scripts well; hard training on one narrow style makes it
    # forget them, though the user's own holdout improves.
    general = tmp_path / "general"
    general.mkdir()
    for path in sorted((Path(__file__).parents[1] / "fixtures" / "scripts").glob("*.sh")):
        (general / path.name).write_text(path.read_text())
    _, lines = run_trainer(options(user_dir, tmp_path, tiny_checkpoint, general_holdout=general))
    text = "\n".join(lines)
    assert "REJECT: forgets general bash" in text, text
    assert CheckpointStore(tmp_path / "store").current_id() is None


def test_gate_rules():
    assert decide(2.0, 1.9).publish
    assert not decide(2.0, 2.0).publish
    assert not decide(2.0, 2.1).publish
    assert not decide(None, None).publish
    assert decide(2.0, 1.9, 1.50, 1.529).publish  # 1.9 % worse: within 2 %
    worse = decide(2.0, 1.9, 1.50, 1.54)  # 2.7 % worse
    assert not worse.publish and "forgets general bash" in worse.reason
    assert not decide(2.0, 1.9, 1.5, float("nan")).publish
    assert "forgetting check was skipped" in decide(2.0, 1.9).notes[0]


def test_dry_run_shows_what_and_where_never_the_secret(user_dir, tmp_path, tiny_checkpoint, capsys):
    before = folder_state(user_dir)
    store = tmp_path / "store"
    code = cli.main([str(user_dir), "--dry-run", "--store", str(store), "--base", str(tiny_checkpoint)])
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run" in out and "scripts/deploy.sh:2:" in out and "github token" in out
    assert GITHUB_TOKEN not in out
    assert "not a shell script: 1 (e.g. scripts/notes.txt)" in out
    assert "train    scripts/acme_" in out and "holdout  scripts/" in out
    assert not store.exists()
    assert folder_state(user_dir) == before


def test_second_trainer_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    with StoreLock(tmp_path):
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            StoreLock(tmp_path).acquire()
    # A lock file left by a trainer that died: its pid is gone, its flock went with it.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "trainer.lock").write_text(json.dumps({"pid": dead.pid, "host": "h", "started": "then"}))
    lock = StoreLock(tmp_path).acquire()
    try:
        assert lock.took_over["pid"] == dead.pid
        assert f"trainer pid {dead.pid}" in lock.stale_note()
        assert json.loads((tmp_path / "trainer.lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_training_refuses_while_another_trainer_holds_the_store(user_dir, tmp_path, tiny_checkpoint, capsys):
    with StoreLock(tmp_path / "store"):
        code = cli.main([str(user_dir), "--once", "--store", str(tmp_path / "store"), "--base", str(tiny_checkpoint)])
    assert code == 1
    assert f"another trainer (pid {os.getpid()}" in capsys.readouterr().err


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bashlsp.training.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


def _read_until(process: subprocess.Popen, marker: str) -> list[str]:
    lines = []
    for line in process.stdout:  # blocks on the child's output: no sleeping
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never appeared:\n{''.join(lines)}")


def _train_args(user_dir: Path, tmp_path: Path, base: Path, steps: int) -> list[str]:
    return [
        str(user_dir),
        "--once",
        "--store",
        str(tmp_path / "store"),
        "--base",
        str(base),
        "--no-progress",
        "--steps",
        str(steps),
        "--lr",
        "3e-3",
        "--batch-size",
        "4",
        "--seq-len",
        "64",
        "--save-every",
        "2",
        "--replay-share",
        "0",
        "--holdout",
        "0.2",
        "--general-holdout",
        str(tmp_path / "none"),
        "--device",
        "cpu",
    ]


def test_resume_after_a_kill(user_dir, tmp_path, tiny_checkpoint):
    args = _train_args(user_dir, tmp_path, tiny_checkpoint, steps=16) + ["--eval-points", "1"]
    first = _start(args)
    try:
        _read_until(first, "step 7/16")  # states were saved at steps 2, 4, 6
    finally:
        first.kill()
        first.wait()
    store = CheckpointStore(tmp_path / "store")
    assert store.current_id() is None
    again = _start(args)
    output = again.communicate(timeout=240)[0]
    assert again.returncode == 0, output
    resumed_at = [line for line in output.splitlines() if line.startswith("resumed from step")]
    assert resumed_at and int(resumed_at[0].split()[3]) >= 6, output
    assert "step 1/16" not in output  # it did not start over
    assert "step 16/16" in output and store.current_id() is not None, output


def test_ctrl_c_stops_at_a_step_boundary_and_keeps_the_last_good_checkpoint(user_dir, tmp_path, tiny_checkpoint):
    # A good checkpoint first, then a second run interrupted in the middle.
    run_trainer(options(user_dir, tmp_path, tiny_checkpoint))
    store = CheckpointStore(tmp_path / "store")
    good = store.current_id()
    assert good is not None
    kept = [c.id for c in store.list()]
    before = folder_state(user_dir)
    process = _start(_train_args(user_dir, tmp_path, tiny_checkpoint, steps=500))
    _read_until(process, "step 3/500")
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    assert "stopping at the next step boundary" in output
    assert "nothing published, the current checkpoint stays" in output
    assert store.current_id() == good and [c.id for c in store.list()] == kept
    assert folder_state(user_dir) == before


def test_report_png_or_a_clear_note(tmp_path):
    history = [{"step": i, "loss": 3.0 - 0.1 * i} for i in range(1, 21)]
    message = write_report(tmp_path / "r.png", history, decide(2.0, 1.8, 1.5, 1.51))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in message and not (tmp_path / "r.png").exists()
    else:
        assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")


def test_pretrain_is_dispatched(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--pretrain", "CORPUS", "--help"])
    assert exit_info.value.code == 0
    assert "bashlsp-train --pretrain" in capsys.readouterr().out


def test_needs_a_folder(capsys):
    assert cli.main([]) == 1
    assert "at least one folder" in capsys.readouterr().err


def test_bench_train_measures_the_real_loop(tiny_checkpoint):
    from support import fixture_texts, run_cli

    from bashlsp.bench.train import matmul_gflops, training_throughput
    from bashlsp.model.checkpoint import load_checkpoint

    figures = training_throughput(tiny_checkpoint, fixture_texts(), steps=5, batch_size=2, seq_len=32)
    assert figures["tokens_per_second"] > 0 and figures["timed_steps"] == 3
    assert figures["flops_per_token"] == load_checkpoint(tiny_checkpoint).model.flops_per_token(32)
    rate = matmul_gflops(torch.float32, n=64, min_seconds=0.01)
    assert rate["wall"] > 0 and rate["cpu"] > 0
    assert figures["tokens_per_cpu_second"] > 0
    assert run_cli("bench", "train", "--help").returncode == 0


def test_general_figure_carried_in_the_base_meta_is_reused(user_dir, tmp_path, tiny_checkpoint):
    import shutil

    from bashlsp.training.holdouts import GENERAL_HOLDOUT_DIR, general_gate_meta

    if not GENERAL_HOLDOUT_DIR.is_dir():
        pytest.skip("this build ships no general holdout")
    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    meta = json.loads((base / "meta.json").read_text())
    meta.update(general_gate_meta(load_checkpoint(base)))
    meta["gate"]["general_bpb_after"] = 7.5  # a figure the round could not measure itself
    (base / "meta.json").write_text(json.dumps(meta))
    run_trainer(options(user_dir, tmp_path, base, general_holdout=None, max_general_loss=0.99))
    logged = json.loads((tmp_path / "store" / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["gate"]["general_bpb_start"] == 7.5
    assert logged["gate"]["general_holdout_docs"] > 0
