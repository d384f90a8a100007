"""Issue 16: your holdout's figure weighs each held-out script the same (one long data table must
not make up most of it), the round's one line says so, and a start checkpoint's figure measured
the other way is not reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from support import tiny_round_options

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
from bashlsp.training import personal
from bashlsp.training.holdouts import holdout_bpb
from bashlsp.training.personal import HISTORY_FILE, PersonalOptions, PersonalTrainer

SHORT = '#!/bin/sh\nset -e\nfor f in "$@"; do\n  echo "$f"\ndone\n'
TABLE = "#!/bin/sh\ncat > table.ok <<EOF\n" + "".join(f"{i:04X}..{i + 7:04X}\t{i % 3}\n" for i in range(0, 4000, 8))


def test_files_equal_is_the_mean_of_each_files_own_figure(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    short, table = holdout_bpb(loaded, [SHORT]), holdout_bpb(loaded, [TABLE])
    assert abs(short - table) > 0.05  # the two files score differently
    assert abs(holdout_bpb(loaded, [SHORT, TABLE], files_equal=True) - (short + table) / 2) < 1e-6
    by_bytes = holdout_bpb(loaded, [SHORT, TABLE])
    assert abs(by_bytes - table) < abs(by_bytes - short)  # by bytes, the long table dominates
    assert holdout_bpb(loaded, [], files_equal=True) is None


def _options(tmp_path: Path, base: Path, **overrides) -> PersonalOptions:
    values = dict(steps=4, holdout_fraction=0.3, eval_points=1, max_general_loss=0.99)
    values.update(overrides)
    return tiny_round_options(tmp_path, base, **values)


def _scripted_user(monkeypatch, figures: list[float]) -> list[bool]:
    """holdout_bpb answers your holdout from `figures`, the general one with 1.0; returns the
    files_equal asked for your holdout."""
    asked: list[bool] = []

    def fake(loaded, texts, files_equal=False):
        if not texts:
            return None
        if any("# acme task" in text for text in texts):  # the scripts write_personal_scripts writes
            asked.append(files_equal)
            return figures.pop(0)
        return 1.0

    monkeypatch.setattr(personal, "holdout_bpb", fake)
    return asked


def _last_round(store: Path) -> dict:
    return json.loads((store / HISTORY_FILE).read_text().splitlines()[-1])


def test_the_round_weighs_files_equally_and_says_so(tmp_path, tiny_checkpoint, monkeypatch):
    asked = _scripted_user(monkeypatch, [2.0, 1.8])
    lines: list[str] = []
    assert PersonalTrainer(_options(tmp_path, tiny_checkpoint), out=lines.append).run() == 0
    assert asked == [True, True]  # before and at the one point
    logged = _last_round(tmp_path / "store")
    files = logged["gate"]["user_holdout_files"]
    assert files > 1 and logged["gate"]["user_holdout_files_equal"] is True
    assert f"your scripts 2.000 -> 1.800 bpb (-10.0%, each of {files} held-out scripts weighed equally)" in lines[-1]


def test_by_bytes_on_request(tmp_path, tiny_checkpoint, monkeypatch):
    asked = _scripted_user(monkeypatch, [2.0, 1.8])
    lines: list[str] = []
    opts = _options(tmp_path, tiny_checkpoint, holdout_files_equal=False)
    assert PersonalTrainer(opts, out=lines.append).run() == 0
    assert asked == [False, False]
    assert "held-out scripts, weighed by bytes)" in lines[-1]


def test_a_figure_measured_the_other_way_is_measured_again(tmp_path, tiny_checkpoint, monkeypatch):
    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    # A first round by bytes publishes; its gate carries your holdout's figure (1.8).
    _scripted_user(monkeypatch, [2.0, 1.8])
    first = _options(tmp_path, base, holdout_files_equal=False)
    assert PersonalTrainer(first, out=lambda _: None).run() == 0
    published = CheckpointStore(tmp_path / "store").current_path()
    # From that checkpoint with files weighed equally, the same holdout is measured again.
    asked = _scripted_user(monkeypatch, [1.9, 1.7])
    again = _options(tmp_path, published, holdout_files_equal=True)
    assert PersonalTrainer(again, out=lambda _: None).run() == 0
    assert asked == [True, True]
    assert _last_round(tmp_path / "store")["gate"]["user_bpb_before"] == 1.9
    # The same way again: the carried figure is reused, only the point is measured.
    asked = _scripted_user(monkeypatch, [1.6])
    latest = CheckpointStore(tmp_path / "store").current_path()
    assert PersonalTrainer(_options(tmp_path, latest), out=lambda _: None).run() == 0
    assert asked == [True] and _last_round(tmp_path / "store")["gate"]["user_bpb_before"] == 1.7
