"""Issue 16: a personal round publishes its best step that passes the gate (not its last), stops
when your holdout stops improving, replays general bash in every batch, and ends with one line
that says what happened. The holdout figures are scripted where the rule, not the model, is tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import tiny_round_options

from bashlsp.model.checkpoint import CheckpointStore
from bashlsp.training import holdouts, personal
from bashlsp.training.gate import decide
from bashlsp.training.personal import HISTORY_FILE, PersonalOptions, PersonalTrainer, eval_steps

FIXTURES = Path(__file__).parents[1] / "fixtures" / "scripts"


def _folder_of_fixtures(path: Path) -> Path:
    path.mkdir()
    for script in sorted(FIXTURES.glob("*.sh")):
        (path / script.name).write_text(script.read_text())
    return path


def _options(tmp_path: Path, base: Path, **overrides) -> PersonalOptions:
    values = dict(general_holdout=_folder_of_fixtures(tmp_path / "general"), eval_points=5)
    values.update(overrides)
    return tiny_round_options(tmp_path, base, **values)


def _scripted(monkeypatch, general_texts_dir: Path, user: list[float], general: list[float]) -> list[str]:
    """holdout_bpb answers from the lists (the first figure of each is the 'before' one)."""
    general_texts = {p.read_text() for p in general_texts_dir.glob("*.sh")}
    asked: list[str] = []

    def fake(loaded, texts, files_equal=False):
        if not texts:
            return None
        which = "general" if set(texts) <= general_texts else "user"
        asked.append(which)
        return (general if which == "general" else user).pop(0)

    monkeypatch.setattr(personal, "holdout_bpb", fake)
    return asked


def _run(opts) -> tuple[list[str], PersonalTrainer]:
    lines: list[str] = []
    trainer = PersonalTrainer(opts, out=lines.append)
    assert trainer.run() == 0
    return lines, trainer


def test_eval_steps_double_up_to_the_last():
    assert eval_steps(80, 5) == [5, 10, 20, 40, 80]
    assert eval_steps(3, 4) == [1, 2, 3]
    assert eval_steps(10, 1) == [10]


def test_the_best_passing_step_is_published_not_the_last(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint)
    # before, then steps 1, 2, 4, 8: 4 is the best that passes; 1 forgets; 8 is worse for you.
    asked = _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9, 1.8, 1.7, 1.75], [1.0, 1.05, 1.01, 1.015])
    lines, _ = _run(opts)
    text = "\n".join(lines)
    store = CheckpointStore(opts.store)
    assert len(store.list()) == 2, text  # steps 2 and 4
    meta = json.loads((store.current_path() / "meta.json").read_text())
    assert meta["gate"]["step"] == 4 and meta["gate"]["user_bpb_after"] == 1.7
    assert meta["gate"]["general_bpb_after"] == 1.015
    assert "step 1/8: your holdout 1.9000 bpb, general holdout 1.0500 bpb: not published (forgets general bash" in text
    # The general holdout is not scored at a step that is no better for you.
    assert asked.count("general") == 4
    headline = lines[-1]
    assert headline == meta["summary"]
    assert headline.startswith("bashlsp-train: published the model of step 4 of 8")
    assert (
        "your scripts 2.000 -> 1.700 bpb (-15.0%, 1 held-out script)" in headline
        and "general bash 1.000 -> 1.015 bpb (+1.5%" in headline
    )
    logged = json.loads((opts.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["published"] == store.current_id() and logged["summary"] == headline


def test_the_round_stops_when_your_holdout_stops_improving(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint, steps=40)  # points at steps 2, 5, 10, 20, 40
    # Steps 5 and 10 gain nothing over step 2: two points in a row (the default patience).
    _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9, 1.95, 1.92], [1.0, 1.005])
    lines, trainer = _run(opts)
    text = "\n".join(lines)
    assert "your holdout stopped improving: the round ends at step 10 of 40" in text
    logged = json.loads((opts.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["training"]["steps"] == 2 and logged["gate"]["step"] == 2  # published at step 2, the best
    assert logged["training"]["planned_steps"] == 40
    assert not any(line.startswith("step 11/") for line in lines)


def test_one_dip_does_not_end_the_round(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint, steps=40)  # points at steps 2, 5, 10, 20, 40
    # Step 5 dips; step 10 gains again, so the round goes on; 20 and 40 gain nothing: it ends at 40.
    _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9, 1.95, 1.8, 1.85, 1.81], [1.0, 1.005, 1.006])
    lines, _ = _run(opts)
    text = "\n".join(lines)
    assert "the round ends" not in text
    logged = json.loads((opts.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["gate"]["step"] == 10 and logged["gate"]["user_bpb_after"] == 1.8
    assert logged["training"]["steps"] == 10  # the published step's trainer state


def test_patience_one_stops_at_the_first_dip(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint, steps=40, patience=1)
    _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9, 1.95], [1.0, 1.005])
    lines, _ = _run(opts)
    assert "your holdout stopped improving: the round ends at step 5 of 40" in "\n".join(lines)


def test_patience_zero_runs_every_step(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint, steps=40, patience=0)
    _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9, 1.95, 1.96, 1.97, 1.98], [1.0, 1.005])
    lines, _ = _run(opts)
    assert "the round ends" not in "\n".join(lines)
    assert any(line.startswith("step 40/40: your holdout 1.9800") for line in lines)


def test_the_round_stops_when_it_forgets_more_and_more(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint, steps=40)  # points at steps 2, 5, 10, 20, 40
    # Step 2 passes; step 5 is better for you but forgets beyond the 2% allowed, more than step 2.
    _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9, 1.8], [1.0, 1.01, 1.03])
    lines, _ = _run(opts)
    text = "\n".join(lines)
    assert "the model forgets more general bash: the round ends at step 5 of 40" in text
    assert not any(line.startswith("step 6/") for line in lines)
    logged = json.loads((opts.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["gate"]["step"] == 2 and logged["published"] is not None


def test_nothing_better_says_so_in_one_line(tmp_path, tiny_checkpoint, monkeypatch):
    opts = _options(tmp_path, tiny_checkpoint)
    _scripted(monkeypatch, opts.general_holdout, [2.0, 2.1, 2.2, 2.3], [1.0])
    lines, _ = _run(opts)
    assert CheckpointStore(opts.store).current_id() is None
    assert lines[-1].startswith("bashlsp-train: nothing published, no step improved your holdout")
    assert (
        "your scripts 2.000 -> 2.100 bpb (+5.0%, 1 held-out script)" in lines[-1]
        and "the current model stays" in lines[-1]
    )


def test_replay_is_mixed_in_and_is_not_the_general_holdout(tmp_path, tiny_checkpoint, monkeypatch):
    from bashlsp.training import loop

    replay = tmp_path / "replay"
    replay.mkdir()
    docs = [
        '#!/bin/sh\n# replayed general bash\nfor f in *.log; do gzip -9 "$f"; done\n' * 8,
        "#!/bin/bash\nset -eu\nwhile read -r line; do printf '%s\\n' \"$line\"; done < input.txt\n" * 8,
    ]
    (replay / "replay.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    seen: list[list[str]] = []
    real_init = loop.TokenWindows.__init__

    def recording_init(self, texts, *args, **kwargs):
        seen.append(list(texts))
        real_init(self, texts, *args, **kwargs)

    monkeypatch.setattr(loop.TokenWindows, "__init__", recording_init)
    opts = _options(tmp_path, tiny_checkpoint, replay=replay, replay_share=0.25, eval_points=1)
    lines, _ = _run(opts)
    assert seen[-1] == docs, "the replay texts feed their own windows"
    general = {p.read_text() for p in opts.general_holdout.glob("*.sh")}
    assert not general & {t for texts in seen for t in texts}
    assert "(1 of 4 rows general bash replayed)" in "\n".join(lines)
    logged = json.loads((opts.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["data"]["replay_docs"] == 2


def test_the_shipped_replay_sample_is_apart_from_the_general_holdout():
    replay = personal.REPLAY_DIR / "replay.jsonl"
    if not replay.is_file():
        pytest.skip("this build ships no replay sample")
    records = [json.loads(line) for line in replay.read_text().splitlines()]
    holdout = [json.loads(line) for line in (holdouts.GENERAL_HOLDOUT_DIR / "general.jsonl").read_text().splitlines()]
    assert sum(len(r["text"].encode()) for r in records) <= 3_000_000
    assert all(r["licence"] and r["package"] and r["path"] for r in records)
    assert not {r["text"] for r in records} & {h["text"] for h in holdout}
    assert not {r["package"] for r in records} & {h["package"] for h in holdout}


def test_headline_of_a_refusal_names_the_reason_and_both_figures():
    decision = decide(2.0, 1.8, 1.0, 1.05)
    line = decision.headline("step 4 of 8", 30.0)
    assert line.startswith("bashlsp-train: nothing published, forgets general bash")
    assert (
        "your scripts 2.000 -> 1.800 bpb (-10.0%)" in line
        and "general bash 1.000 -> 1.050 bpb (+5.0%, allowed +2%)" in line
    )


def test_the_folders_size_sets_the_rounds_length(tmp_path, tiny_checkpoint, monkeypatch):
    import math

    from bashlsp.training import cli

    # Two passes over your tokens (4 rows of 64 a step, none replayed), capped at max_steps.
    opts = _options(tmp_path, tiny_checkpoint, steps=None, eval_points=1)
    _scripted(monkeypatch, opts.general_holdout, [2.0, 1.9], [1.0, 1.0])
    _run(opts)
    logged = json.loads((opts.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["training"]["planned_steps"] == math.ceil(2 * logged["data"]["tokens"] / (4 * 64))
    (tmp_path / "capped").mkdir()
    capped = _options(tmp_path / "capped", tiny_checkpoint, steps=None, eval_points=1, max_steps=3)
    _scripted(monkeypatch, capped.general_holdout, [2.0, 1.9], [1.0, 1.0])
    _run(capped)
    logged = json.loads((capped.store / HISTORY_FILE).read_text().splitlines()[-1])
    assert logged["training"]["planned_steps"] == 3
    # --epochs given: that many passes, no cap.
    given = cli.options_from_args(cli.build_parser().parse_args(["scripts", "--epochs", "3"]))
    assert given.epochs == 3 and given.max_steps is None
    default = cli.options_from_args(cli.build_parser().parse_args(["scripts"]))
    assert default.epochs == PersonalOptions(dirs=[]).epochs and default.max_steps == PersonalOptions(dirs=[]).max_steps
