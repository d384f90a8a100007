"""What the project context gives before training (training/holdouts.context_gain): the same
segments are scored with and without chunks of the user's other scripts ahead."""

from __future__ import annotations

import math
from pathlib import Path

from support import FIXTURE_SCRIPTS

from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.training.collect import Script
from bashlsp.training.holdouts import context_gain


def _script(name: str, text: str) -> Script:
    return Script(path=Path("/x") / name, name=name, text=text, digest=name, reason="test")


def test_chunks_of_similar_scripts_are_put_ahead_and_change_the_figure(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    scripts = [_script(p.name, p.read_text()) for p in FIXTURE_SCRIPTS]
    holdout = [_script("copy.sh", scripts[0].text + scripts[1].text)]  # its lines are in the others
    gain = context_gain(loaded, holdout, scripts)
    assert gain["segments"] >= 2 and gain["with_chunks"] >= 1
    assert math.isfinite(gain["plain_bpb"]) and math.isfinite(gain["context_bpb"])
    assert gain["context_bpb"] != gain["plain_bpb"]


def test_unrelated_scripts_give_no_chunks_and_the_same_figure(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    holdout = [_script(p.name, p.read_text()) for p in FIXTURE_SCRIPTS[:2]]
    unrelated = [_script("other.sh", "\n".join(f"zq{i} wv{i} kx{i}" for i in range(60)) + "\n")]
    gain = context_gain(loaded, holdout, unrelated)
    assert gain["with_chunks"] == 0 and gain["context_bpb"] == gain["plain_bpb"]
    assert context_gain(loaded, holdout, []) is None
