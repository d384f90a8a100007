import json
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bashlsp.model.checkpoint import (
    CheckpointStore,
    load_checkpoint,
    resolve_checkpoint,
)
from bashlsp.model.errors import CheckpointError, StoreError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def copy_of(tiny_checkpoint, tmp_path):
    def make(name="ckpt") -> Path:
        return Path(shutil.copytree(tiny_checkpoint, tmp_path / name))

    return make


def test_load_valid_checkpoint(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.config.vocab_size == loaded.tokenizer.vocab_size
    assert loaded.meta["data"]["files"] > 0
    assert not loaded.model.training


def test_refuses_truncated_weights(copy_of):
    ckpt = copy_of()
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors .* truncated or corrupt"):
        load_checkpoint(ckpt)


def test_refuses_nan_weights(copy_of):
    ckpt = copy_of()
    tensors = load_file(ckpt / "model.safetensors")
    tensors["blocks.0.mlp.down.weight"][0, 0] = float("nan")
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="blocks.0.mlp.down.weight contains NaN or infinite"):
        load_checkpoint(ckpt)


def test_refuses_inf_weights(copy_of):
    ckpt = copy_of()
    tensors = load_file(ckpt / "model.safetensors")
    tensors["wte.weight"][3, 1] = float("inf")
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="wte.weight contains NaN or infinite"):
        load_checkpoint(ckpt)


def test_refuses_wrong_shapes(copy_of):
    ckpt = copy_of()
    tensors = load_file(ckpt / "model.safetensors")
    tensors["norm.weight"] = torch.ones(3)
    save_file(tensors, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"norm.weight has shape \(3,\)"):
        load_checkpoint(ckpt)


def test_refuses_vocab_mismatch(copy_of):
    ckpt = copy_of()
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["vocab_size"] += 1
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vocab mismatch: tokenizer has 384 tokens, model config has 385"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json", "meta.json"])
def test_refuses_missing_file(copy_of, name):
    ckpt = copy_of()
    (ckpt / name).unlink()
    with pytest.raises(CheckpointError, match=f"missing {name}"):
        load_checkpoint(ckpt)


def test_refuses_pickle_in_place_of_weights(copy_of):
    ckpt = copy_of()
    marker = ckpt / "pwned"
    # A pickle that would create a file if anything ever unpickled it.
    payload = b"\x80\x04cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR."
    (ckpt / "model.safetensors").write_bytes(payload)
    with pytest.raises(CheckpointError, match="looks like a Python pickle, which bashlsp never loads"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_refuses_torch_save_zip(copy_of):
    ckpt = copy_of()
    torch.save({"x": torch.ones(1)}, ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="zip archive"):
        load_checkpoint(ckpt)


def test_refuses_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_refuses_corrupt_config(copy_of):
    ckpt = copy_of()
    (ckpt / "config.json").write_text('{"format": 1, "model": {"vocab_size": 384}}')
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text("not json")
    with pytest.raises(CheckpointError, match="not JSON"):
        load_checkpoint(ckpt)


def test_store_publish_list_use_rollback(tiny_checkpoint, tmp_path):
    loaded = load_checkpoint(tiny_checkpoint)
    store = CheckpointStore(tmp_path / "store")
    assert store.current_id() is None
    first = store.publish(loaded.model, loaded.tokenizer, {"metrics": {"bpb": 2.0}})
    second = store.publish(loaded.model, loaded.tokenizer, {"metrics": {"bpb": 1.5}})
    assert store.current_id() == second
    assert [i.id for i in store.list()] == sorted([first, second])
    assert load_checkpoint(store.current_path()).meta["parent"] == first
    assert store.rollback() == first
    assert store.current_id() == first
    store.use(second)
    assert store.current_id() == second
    with pytest.raises(StoreError, match="no checkpoint 'nope'"):
        store.use("nope")
    assert resolve_checkpoint(None, store) == store.path_of(second)
    assert resolve_checkpoint(first, store) == store.path_of(first)


def test_rollback_with_nothing_before_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="nothing to roll back to"):
        CheckpointStore(tmp_path).rollback()


def test_publish_failure_leaves_current_untouched(tiny_checkpoint, tmp_path, monkeypatch):
    loaded = load_checkpoint(tiny_checkpoint)
    store = CheckpointStore(tmp_path / "store")
    good = store.publish(loaded.model, loaded.tokenizer)
    import bashlsp.model.checkpoint as ck

    def die(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "rename", die)
    with pytest.raises(OSError):
        store.publish(loaded.model, loaded.tokenizer)
    assert store.current_id() == good
    assert list(store.staging_dir.iterdir()) == []


WRITER = textwrap.dedent(
    """
    import sys
    from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
    loaded = load_checkpoint(sys.argv[1])
    store = CheckpointStore(sys.argv[2])
    print("ready", flush=True)
    while True:
        store.publish(loaded.model, loaded.tokenizer, {"note": "x" * 100000})
    """
)


def test_reader_never_sees_partial_checkpoint_when_writer_is_killed(tiny_checkpoint, tmp_path):
    store = CheckpointStore(tmp_path / "store")
    rng = random.Random(7)
    for _ in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tiny_checkpoint), str(store.root)], stdout=subprocess.PIPE
        )
        assert writer.stdout.readline().strip() == b"ready"
        # Let it publish for a random moment, then kill it without warning.
        try:
            writer.wait(timeout=rng.uniform(0.05, 0.6))
        except subprocess.TimeoutExpired:
            writer.send_signal(signal.SIGKILL)
        writer.wait()
        current = store.current_path()
        if current is not None:
            load_checkpoint(current)  # complete and valid, whatever the moment of death
        for info in store.list():
            load_checkpoint(info.path, check_forward=False)


def test_no_pickle_loading_in_code_base():
    offenders = []
    for folder in ("model", "server", "training"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\btorch\.load\(|\bimport pickle\b|\bpickle\.loads?\(|\bcloudpickle\b|\bjoblib\b", line):
                    if "weights_only=True" not in line:
                        offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
