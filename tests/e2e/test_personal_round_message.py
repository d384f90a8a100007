"""Issue 16: a running server's editor is told in one line what a personal round gave, when the
round's checkpoint is hot-swapped in. A real round (low-rank adapters, merged when published)
writes into the store a real server follows over stdio."""

from __future__ import annotations

import json

from support import RawServer, write_personal_scripts

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
from bashlsp.training.personal import HISTORY_FILE, PersonalOptions, PersonalTrainer


def test_the_editor_is_shown_the_rounds_one_line_report(tmp_path, tiny_checkpoint):
    store = CheckpointStore(tmp_path / "store")
    loaded = load_checkpoint(tiny_checkpoint)
    store.publish(loaded.model, loaded.tokenizer, {"metrics": {"generation": 1}})
    server = RawServer(tmp_path / "server.log")
    try:
        server.initialize({"store": str(store.root), "completion": {"alternatives": 1}})
        server.wait_log(f"serving {store.current_id()}")
        options = PersonalOptions(
            dirs=[write_personal_scripts(tmp_path / "scripts")],
            store=store.root,
            once=True,
            device="cpu",
            steps=6,
            lr=1e-2,
            batch_size=4,
            seq_len=64,
            warmup_steps=1,
            progress=False,
            holdout_fraction=0.2,
            replay_share=0.0,
            eval_points=1,
            adapter_rank=4,
            general_holdout=tmp_path / "no-general-holdout",
        )
        lines: list[str] = []
        assert PersonalTrainer(options, out=lines.append).run() == 0
        logged = json.loads((store.root / HISTORY_FILE).read_text().splitlines()[-1])
        assert logged["published"] == store.current_id(), "\n".join(lines)
        assert logged["training"]["adapter_rank"] == 4
        headline = logged["summary"]
        assert headline.startswith("bashlsp-train: published the model of step 6 of 6")
        assert "your scripts" in headline and "general bash not measured" in headline
        shown = server.wait_shown(headline)
        assert shown.startswith(f"bashlsp: now serving {store.current_id()}")
        # The merged checkpoint is a plain one, served as any other.
        assert server.model_info()["id"] == store.current_id()
    finally:
        assert server.close() == 0, server.log_tail()
