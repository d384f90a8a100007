"""Bad checkpoints and killed publishers against a running server that follows the store.

None is ever served: the server keeps answering with the model it had (bashlsp.modelInfo), says
why over window/logMessage, and `bashlsp models rollback` makes the previous checkpoint current
again. The tests wait for the server's log messages, never for time to pass.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from support import RawServer, run_cli

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint

TEXT = '#!/bin/bash\nNAME=world\nfor f in *.log; do\n  echo "$f"\ndone\necho "$NA'
URI = "file:///tmp/bashlsp-ckpt/doc.sh"


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_checkpoint) -> CheckpointStore:
    store = CheckpointStore(tmp_path_factory.mktemp("ckpt-store") / "store")
    loaded = load_checkpoint(tiny_checkpoint)
    store.publish(loaded.model, loaded.tokenizer, {"metrics": {"generation": 1}})
    return store


@pytest.fixture(scope="module")
def server(store: CheckpointStore, tmp_path_factory):
    server = RawServer(tmp_path_factory.mktemp("ckpt-server") / "server.log")
    server.initialize({"store": str(store.root), "completion": {"alternatives": 1}})
    server.wait_log(f"serving {store.current_id()}")
    server.open(URI, TEXT)
    yield server
    assert server.close() == 0, server.log_tail()


def assert_serving(server: RawServer, checkpoint_id: str) -> None:
    info = server.model_info()
    assert info["loaded"] and info["id"] == checkpoint_id, info
    answer = server.request(
        "textDocument/completion", {"textDocument": {"uri": URI}, "position": {"line": 5, "character": 9}}
    )
    assert "NAME" in [i["label"] for i in answer["result"]["items"]]


# -- ways to break a checkpoint (each gets a copy of a good one) -----------------------------------------


def truncated(ckpt: Path) -> None:
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])


def with_value(value: float):
    def corrupt(ckpt: Path) -> None:
        tensors = load_file(ckpt / "model.safetensors")
        tensors["blocks.1.attn.proj.weight" if "blocks.1.attn.proj.weight" in tensors else sorted(tensors)[-1]][
            0, 0
        ] = value
        save_file(tensors, ckpt / "model.safetensors")

    return corrupt


def wrong_shapes(ckpt: Path) -> None:
    tensors = load_file(ckpt / "model.safetensors")
    tensors["norm.weight"] = torch.ones(tensors["norm.weight"].shape[0] + 1)
    save_file(tensors, ckpt / "model.safetensors")


def wrong_vocab(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["vocab_size"] += 7
    (ckpt / "config.json").write_text(json.dumps(config))


def pickle_as_weights(ckpt: Path) -> None:
    marker = ckpt.parent.parent / "pwned-by-pickle"
    (ckpt / "model.safetensors").write_bytes(b"\x80\x04cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR.")


def torch_save_as_weights(ckpt: Path) -> None:
    torch.save({"x": torch.ones(2)}, ckpt / "model.safetensors")


def missing_tokenizer(ckpt: Path) -> None:
    (ckpt / "tokenizer.json").unlink()


def garbage_config(ckpt: Path) -> None:
    (ckpt / "config.json").write_bytes(b"\xff\xfe not json")


def missing_directory(ckpt: Path) -> None:
    shutil.rmtree(ckpt)  # the pointer names a checkpoint that is not there


BREAKERS = {
    "truncated": truncated,
    "nan": with_value(float("nan")),
    "inf": with_value(float("-inf")),
    "wrong_shapes": wrong_shapes,
    "wrong_vocab": wrong_vocab,
    "pickle": pickle_as_weights,
    "torch_save": torch_save_as_weights,
    "missing_tokenizer": missing_tokenizer,
    "garbage_config": garbage_config,
    "missing_directory": missing_directory,
}


def test_bad_checkpoints_are_never_served_and_rollback_restores(server: RawServer, store: CheckpointStore):
    good = store.current_id()
    assert_serving(server, good)
    for number, (name, corrupt) in enumerate(BREAKERS.items()):
        bad_id = f"bad-{name}"
        shutil.copytree(store.path_of(good), store.path_of(bad_id))
        corrupt(store.path_of(bad_id))
        logs = len(server.logs)
        if name == "missing_directory":
            store._write_pointer(bad_id, [good] + store.read_pointer()["history"])
        else:
            store.use(bad_id, validate=False)
        message = server.wait_log(f"checkpoint {bad_id} was not loaded", start=logs)
        assert f"still serving {good}" in message, message
        server.wait_shown(bad_id)  # shown to the user, not only logged
        assert_serving(server, good)
        # Back to the previous checkpoint: once with the real command, then in-process (same code).
        if number == 0:
            result = run_cli("models", "--store", str(store.root), "rollback")
            assert result.returncode == 0 and good in result.stdout, result.stderr
        else:
            assert store.rollback() == good
        assert store.current_id() == good
        assert_serving(server, good)
    assert not (store.root.parent / "pwned-by-pickle").exists()
    errors = [m for t, m in server.logs if t == 1]
    assert len([m for m in errors if "was not loaded" in m]) == len(BREAKERS)


def test_rollback_brings_back_the_previous_model(server: RawServer, store: CheckpointStore):
    first = store.current_id()
    loaded = load_checkpoint(store.path_of(first))
    logs = len(server.logs)
    second = store.publish(loaded.model, loaded.tokenizer, {"metrics": {"generation": 2}})
    server.wait_log(f"now serving {second}", start=logs)
    assert_serving(server, second)
    logs = len(server.logs)
    result = run_cli("models", "--store", str(store.root), "rollback")
    assert result.returncode == 0, result.stderr
    server.wait_log(f"now serving {first}", start=logs)
    assert_serving(server, first)


# -- a publisher killed at random points ----------------------------------------------------------------

# Reads kill points from stdin; for each, forks a child that publishes a checkpoint and kills
# itself (SIGKILL) at that Python call of the publish (0: publish fully and report the calls).
PUBLISHER = textwrap.dedent(
    """
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
    loaded = load_checkpoint(sys.argv[1], check_forward=False)
    store = CheckpointStore(sys.argv[2])
    print("ready", flush=True)
    for line in sys.stdin:
        kill_at = int(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            calls = 0
            def profile(frame, event, arg):
                global calls
                calls += 1
                if calls == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            sys.setprofile(profile)
            checkpoint_id = store.publish(loaded.model, loaded.tokenizer, {"metrics": {"killed_at": kill_at}})
            sys.setprofile(None)
            os.write(write_end, f"{calls} {checkpoint_id}".encode())
            os._exit(0)
        os.close(write_end)
        report = os.read(read_end, 200).decode()
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print(f"{'killed' if killed else 'done'} {report}", flush=True)
    """
)


def test_publisher_killed_at_twenty_random_points(server: RawServer, store: CheckpointStore):
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(store.path_of(store.current_id())), str(store.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert publisher.stdout.readline().strip() == "ready"

        def publish(kill_at: int) -> list[str]:
            publisher.stdin.write(f"{kill_at}\n")
            publisher.stdin.flush()
            return publisher.stdout.readline().split()

        # One full publish: how many calls it takes (and a new model the server swaps to).
        logs = len(server.logs)
        outcome, calls, serving = publish(0)
        assert outcome == "done"
        server.wait_log(f"now serving {serving}", start=logs)
        rng = random.Random(20)
        # 20 random points, and the very last call (publish has returned: the new one is current).
        points = sorted(rng.sample(range(1, int(calls)), 20)) + [int(calls)]
        completed = 0
        for kill_at in points:
            before = store.current_id()
            logs = len(server.logs)
            outcome = publish(kill_at)
            assert outcome[0] == "killed", (kill_at, outcome)
            after = store.current_id()  # the pointer is whole and names a whole checkpoint
            load_checkpoint(store.path_of(after))
            for info in store.list():  # every published checkpoint is whole (the bad-* ones are the test's)
                if not info.id.startswith("bad-"):
                    load_checkpoint(info.path, check_forward=False)
            if after != before:  # killed after the pointer was replaced: the new one is complete
                completed += 1
                server.wait_log(f"now serving {after}", start=logs)
                serving = after
            assert_serving(server, serving)
        errors = [m for t, m in server.logs if t == 1 and "was not loaded" in m and "bad-" not in m]
        assert errors == []
        store.clean_staging()
        assert completed >= 1
        print(f"\nkilled at {len(points)} points of {calls} calls: {completed} after the pointer was replaced")
    finally:
        publisher.stdin.close()
        publisher.wait(30)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_bfloat16_weights_load_on_torch_and_get_a_clear_error_on_numpy(tmp_path, tiny_checkpoint, backend):
    """numpy has no bfloat16: the CPU serving path names the problem instead of failing obscurely."""
    from bashlsp.model.errors import CheckpointError

    checkpoint = tmp_path / "bf16"
    shutil.copytree(tiny_checkpoint, checkpoint)
    weights = load_file(str(checkpoint / "model.safetensors"))
    save_file({name: t.to(torch.bfloat16) for name, t in weights.items()}, str(checkpoint / "model.safetensors"))
    if backend == "torch":
        assert load_checkpoint(checkpoint).model.wte.weight.dtype == torch.float32
    else:
        with pytest.raises(CheckpointError, match="float16 or float32"):
            load_checkpoint(checkpoint, backend="numpy")
