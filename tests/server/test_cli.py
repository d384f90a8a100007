import subprocess

from support import run_cli

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("bashlsp ")


def test_console_scripts_exist():
    for command in ("bashlsp", "bashlsp-train"):
        result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


def test_generate_prints_text_from_a_real_checkpoint(tiny_checkpoint):
    result = run_cli(
        "generate",
        "#!/bin/bash",
        "--checkpoint",
        str(tiny_checkpoint),
        "--max-tokens",
        "20",
        "--seed",
        "1",
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/bin/bash")
    assert len(result.stdout.strip()) > len("#!/bin/bash")


def test_generate_several_samples_greedy(tiny_checkpoint):
    result = run_cli(
        "generate",
        "for f in",
        "--checkpoint",
        str(tiny_checkpoint),
        "--max-tokens",
        "8",
        "--num-samples",
        "2",
        "--temperature",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--- sample") == 2


def test_generate_with_bad_checkpoint_fails_clearly(tmp_path):
    result = run_cli("generate", "echo", "--checkpoint", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "no checkpoint directory or store id" in result.stderr


def test_generate_rejects_bad_options(tiny_checkpoint):
    result = run_cli("generate", "echo", "--checkpoint", str(tiny_checkpoint), "--top-p", "0")
    assert result.returncode == 1 and "--top-p" in result.stderr
    result = run_cli("generate", "echo", "--checkpoint", str(tiny_checkpoint), "--device", "tpu")
    assert result.returncode == 1 and "unknown device 'tpu'" in result.stderr


def test_models_list_use_rollback(tiny_checkpoint, tmp_path):
    store = CheckpointStore(tmp_path / "store")
    loaded = load_checkpoint(tiny_checkpoint)
    first = store.publish(loaded.model, loaded.tokenizer)
    second = store.publish(loaded.model, loaded.tokenizer)
    env = {"BASHLSP_STORE": str(store.root)}
    listing = run_cli("models", "list", env=env)
    assert listing.returncode == 0
    assert f"* {second}" in listing.stdout and f"  {first}" in listing.stdout
    assert run_cli("models", "rollback", env=env).returncode == 0
    assert store.current_id() == first
    assert run_cli("models", "--store", str(store.root), "use", second).returncode == 0
    assert store.current_id() == second
    assert run_cli("models", "rollback", "--store", str(store.root)).returncode == 0
    assert store.current_id() == first
    assert run_cli("models", "use", second, "--store", str(store.root)).returncode == 0
    assert store.current_id() == second
    bad = run_cli("models", "use", "no-such-id", env=env)
    assert bad.returncode == 1 and "no checkpoint 'no-such-id'" in bad.stderr


def test_rollback_on_empty_store_fails(tmp_path):
    result = run_cli("models", "rollback", env={"BASHLSP_STORE": str(tmp_path)})
    assert result.returncode == 1 and "nothing to roll back to" in result.stderr


def test_usage_errors_exit_2():
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("models").returncode == 2
    assert run_cli().returncode == 2
