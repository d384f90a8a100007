"""Watch mode: edits are noticed once they settle, reads are not edits, and an edit in the user's
folder leads to a newly published checkpoint while the folder stays byte for byte as the user left it."""

from __future__ import annotations

import json
import threading

from support import folder_state, personal_script, write_personal_scripts

from bashlsp.model.checkpoint import CheckpointStore
from bashlsp.training.personal import PersonalOptions, PersonalTrainer
from bashlsp.training.watch import FolderWatcher


def test_an_edit_is_reported_after_it_settles(tmp_path):
    (tmp_path / "a.sh").write_text("echo a\n")
    with FolderWatcher([tmp_path], debounce_s=0.2) as watcher:
        threading.Thread(target=lambda: (tmp_path / "a.sh").write_text("echo b\n")).start()
        changed = watcher.wait_for_changes(timeout=30)
    assert str(tmp_path / "a.sh") in changed


def test_reading_files_is_not_a_change(tmp_path):
    (tmp_path / "a.sh").write_text("echo a\n")
    with FolderWatcher([tmp_path], debounce_s=0.1) as watcher:
        (tmp_path / "a.sh").read_bytes()  # inotify reports open and close-without-write
        assert watcher.wait_for_changes(timeout=0.5) == set()


def test_scratch_files_and_ignored_folders_do_not_count(tmp_path):
    ignored = tmp_path / "store"
    ignored.mkdir()
    with FolderWatcher([tmp_path], debounce_s=0.1, ignore=[ignored]) as watcher:
        (tmp_path / ".a.sh.swp").write_text("x")
        (ignored / "current").write_text("{}")
        assert watcher.wait_for_changes(timeout=0.5) == set()


def test_stop_wakes_a_waiting_watcher(tmp_path):
    watcher = FolderWatcher([tmp_path], debounce_s=0.1).start()
    threading.Timer(0.2, watcher.stop).start()
    assert watcher.wait_for_changes() == set()  # returns at once on stop, no timeout needed
    assert watcher.stopped


def test_edit_in_watched_folder_publishes_a_new_checkpoint(tmp_path, tiny_checkpoint):
    user_dir = write_personal_scripts(tmp_path / "scripts")
    store = CheckpointStore(tmp_path / "store")
    opts = PersonalOptions(
        dirs=[user_dir],
        store=store.root,
        base=str(tiny_checkpoint),
        device="cpu",
        steps=10,
        lr=3e-3,
        batch_size=4,
        seq_len=64,
        warmup_steps=2,
        progress=False,
        holdout_fraction=0.2,
        debounce_s=0.2,
        general_holdout=tmp_path / "none",
    )
    lines: list[str] = []
    published = threading.Semaphore(0)
    watching = threading.Event()

    def out(line: str) -> None:
        lines.append(line)
        if line.startswith("published checkpoint"):
            published.release()
        if line.startswith("watching "):
            watching.set()

    trainer = PersonalTrainer(opts, out=out)
    errors: list[BaseException] = []

    def run():
        try:
            trainer.run()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
            watching.set()
            published.release()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert published.acquire(timeout=240), "\n".join(lines)
        assert watching.wait(timeout=120) and not errors, "\n".join(lines)
        # The first round may publish several steps: its last one, now that it watches, is the newest.
        first = store.current_id()
        while published.acquire(blocking=False):
            pass
        # The user edits one script and adds another.
        edited = sorted(user_dir.glob("*.sh"))[0]
        edited.write_text(edited.read_text() + 'acme_log_info "one more line"\n')
        (user_dir / "acme_new_99.sh").write_text(personal_script(99))
        snapshot = folder_state(user_dir)
        assert published.acquire(timeout=240), "\n".join(lines)
    finally:
        trainer.request_stop()
        thread.join(timeout=120)
    assert not errors, errors
    second = store.current_id()
    assert second != first
    meta = json.loads((store.path_of(second) / "meta.json").read_text())
    assert meta["base"]["id"] == first  # trained on from the newest checkpoint
    # A round publishes each better evaluation point: the parent is the first round's or one of this round's.
    assert (
        meta["parent"] == first
        or json.loads((store.path_of(meta["parent"]) / "meta.json").read_text())["base"]["id"] == first
    )
    assert meta["training"]["round"] == 2 and meta["gate"]["publish"] is True
    assert any(line.startswith("training on ") and "changed scripts and a replay" in line for line in lines)
    assert folder_state(user_dir) == snapshot  # the trainer wrote nothing there
