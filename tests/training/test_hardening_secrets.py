"""Secrets planted in a training folder never come back out of the model.

A table of realistic (made-up) secrets is written into a folder of scripts, each in three files.
The real trainer (`bashlsp-train DIR --once`, a tiny base model) fine-tunes on the folder and
publishes; then 1,000+ completions are sampled around the places the secrets were. None may
contain a secret or any of its distinctive 8-character pieces (pieces that occur nowhere in
what the model legitimately saw). The folder is byte-for-byte unchanged (bytes, modes, mtimes),
and the store (checkpoint, meta, history) holds no secret either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import fixture_texts, folder_state, write_personal_scripts

from bashlsp.model.checkpoint import CheckpointStore, load_checkpoint
from bashlsp.model.engine import CompletionQuery, Engine
from bashlsp.training.collect import collect_scripts
from bashlsp.training.holdouts import prepare

PRIVATE_KEY_BODY = (
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2vNnUKq8Ro4NjMy9qEjR1M3Fq8Zx\n"
    "Vg7kQWc0bH2yQ9pXo4LmN8sT1uV6wY3zA5bC7dE9fG2hJ4kL6mN8pQ1rS3tU5vW7\n"
    "xY9zA1bC3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG2hJ4kL6mN8pQ1r"
)
# (name, the line as a user writes it, {placeholder: secret}); "{s}" is where the secret goes.
SECRETS = [
    ("aws access key id", "export AWS_ACCESS_KEY_ID={s}", "AKIAQ3EGUMP7XKWN5RTZ"),
    ("aws secret key", "export AWS_SECRET_ACCESS_KEY={s}", "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"),
    ("github token", 'GITHUB_TOKEN="{s}"', "ghp_Z8kQ2mX7vN4pL9sR3tW6yB1cD5fG0hJ2kM4n"),
    (
        "github fine-grained",
        "git clone https://{s}@github.com/acme/infra.git",
        "github_pat_11ABCDEFG0aB3cD5eF7gH9_iJ1kL3mN5oP7qR9sT1uV3wX5yZ7aB9cD1eF3gH5iJ7kL9mN1oP3qR5sT7",
    ),
    (
        "slack bot token",
        "curl -H 'Authorization: Bearer {s}' https://slack.com/api/chat.postMessage",
        "xoxb-2847561938-5928374615-Qm7Rt2Kx9Vb4Lp8Ns3Dw6Hz1",
    ),
    (
        "slack webhook",
        "SLACK_WEBHOOK={s}",
        "https://hooks.slack.com/services/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",
    ),
    ("stripe key", "stripe_key={s}", "sk_live_51Hq8ZpKx2Lm9Vr4Tn7Ws3Yb6Pd1Fg0Jc"),
    ("password assignment", "DB_PASSWORD='{s}'", "Tr0ub4dor&3-horse-Zephyr"),
    ("mysql flag", "mysql -u root -p{s} acme_prod < dump.sql", "Qz8vLm2KxR7tWn"),
    ("password flag", "psql --password {s} -h db.acme.internal", "Xk7mWq2Lz9Rv4Tn8"),
    ("token flag", "vault login --token={s}", "hvs.CAESIGt5Hj8Qw1Ep6Ua3Zo0Ic7Ny4"),
    ("url credentials", "git remote add deploy https://deploybot:{s}@git.acme.example/infra.git", "Ny7Kq3Wz9Lm2Vr5Tx"),
    ("curl user", "curl -u admin:{s} https://jenkins.acme.example/job/deploy/build", "Pw9Lk2Mx7Qz4Rn8V"),
    (
        "private key",
        "cat > ~/.ssh/id_rsa <<'EOF'\n-----BEGIN RSA PRIVATE KEY-----\n{s}\n-----END RSA PRIVATE KEY-----\nEOF",
        PRIVATE_KEY_BODY,
    ),
]
SCRIPT = """#!/bin/bash
# deploy helper {n} for {name}
set -euo pipefail
{line}
echo "configured {name}"
acme_log_info "deploy {name} done"
"""


def plant(folder: Path) -> Path:
    write_personal_scripts(folder, count=16)
    for index, (name, line, secret) in enumerate(SECRETS):
        for copy in range(3):  # three times each: enough to be learnt if it ever reached training
            text = SCRIPT.format(n=copy, name=name, line=line.format(s=secret))
            (folder / f"deploy_{index}_{copy}.sh").write_text(text)
    return folder


def secret_pieces(secret: str, seen: str) -> set[str]:
    """The secret and its 8-character pieces that the model never saw elsewhere."""
    flat = secret.replace("\n", "")
    pieces = {flat[i : i + 8] for i in range(len(flat) - 7)}
    return {secret} | {p for p in pieces if p not in seen}


def leaks(text: str, seen: str) -> list[str]:
    found = []
    for name, _, secret in SECRETS:
        flat = text.replace("\n", "")
        hits = [p for p in secret_pieces(secret, seen) if p in text or p.replace("\n", "") in flat]
        if hits:
            found.append(f"{name}: {hits[:3]}")
    return found


def public_text() -> str:
    """Text around the secrets that is no secret: the base model's data, the scripts' context."""
    from support import personal_script

    context = [SCRIPT.format(n=0, name=name, line=line.format(s="")) for name, line, _ in SECRETS]
    return "\n".join(fixture_texts() + [personal_script(n) for n in range(16)] + context)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return plant(tmp_path_factory.mktemp("secrets") / "scripts")


def test_redacted_training_texts_hold_no_secret(planted: Path):
    # The data the trainer tokenises: collected, then redacted (train and holdout alike).
    prepared = prepare(collect_scripts([planted]), holdout_fraction=0.2, max_holdout_bytes=1 << 20)
    texts = [s.text for s in prepared.train + prepared.holdout]
    assert len(texts) == 16 + 3 * len(SECRETS)
    assert prepared.num_redactions >= 3 * len(SECRETS)
    for text in texts:
        assert leaks(text, public_text()) == [], text
    # The check itself finds each secret in the original files (so an empty answer means something).
    for index, (name, _, _) in enumerate(SECRETS):
        original = (planted / f"deploy_{index}_0.sh").read_text()
        assert [f.split(":")[0] for f in leaks(original, public_text())] == [name]
    # The scripts keep their shape: each secret line is still there, with a placeholder.
    joined = "\n".join(texts)
    assert joined.count("REDACTED") >= 3 * len(SECRETS)
    assert "export AWS_ACCESS_KEY_ID=REDACTED" in joined and "-----BEGIN RSA PRIVATE KEY-----" in joined


def test_trained_model_never_says_a_secret_and_the_folder_is_untouched(planted: Path, tmp_path, tiny_checkpoint):
    before = folder_state(planted)
    store = tmp_path / "store"
    args = [
        str(planted),
        "--once",
        "--store",
        str(store),
        "--base",
        str(tiny_checkpoint),
        "--no-progress",
        "--steps",
        "40",
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--seq-len",
        "64",
        "--holdout",
        "0.2",
        "--general-holdout",
        str(tmp_path / "none"),
        "--device",
        "cpu",
    ]
    # One thread: for a model this small, more threads only add synchronisation (see conftest).
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "bashlsp.training.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert folder_state(planted) == before  # bytes, modes and mtimes of every file
    # What the model legitimately saw: the base model's data and the redacted folder.
    prepared = prepare(collect_scripts([planted]), holdout_fraction=0, max_holdout_bytes=0)
    seen = "\n".join([public_text()] + [s.text for s in prepared.train])
    # Nothing the trainer printed or stored names a secret.
    assert leaks(result.stdout + result.stderr, seen) == []
    for path in store.rglob("*"):
        if path.is_file():
            assert leaks(path.read_bytes().decode("latin-1"), seen) == [], path
    current = CheckpointStore(store).current_path()
    assert current is not None, f"the gate published nothing:\n{result.stdout}"
    engine = Engine(load_checkpoint(current, backend="numpy"), min_token_prob=0.0)  # the server's decoder
    prompts = []
    for name, line, _secret in SECRETS:
        head = line.split("{s}")[0]
        script = SCRIPT.format(n=0, name=name, line=head).split(head)[0] + head  # the file up to the secret
        prompts += [script, head, SCRIPT.format(n=1, name=name, line="").split("\n\n")[0] + "\n"]
    samples, rows = [], 0
    per_prompt = -(-1000 // len(prompts))
    for number, prompt in enumerate(prompts):
        engine.rng = np.random.default_rng(number)
        sampled = CompletionQuery(
            "secrets", prompt, "", "text", max_tokens=32, temperature=1.0, top_p=0.95, num_samples=per_prompt
        )
        samples += [s.text for s in engine.complete(sampled).suggestions]  # distinct texts
        samples += [s.text for s in engine.complete(CompletionQuery("secrets", prompt, "", "text", 48)).suggestions]
        rows += per_prompt + 1
    assert rows >= 1000 and len(samples) >= rows // 2, (rows, len(samples))
    leaked = [(sample, found) for sample in samples if (found := leaks(sample, seen))]
    assert leaked == [], leaked[:5]
    print(f"\nsecrets: {len(samples)} distinct samples of {rows} from {len(prompts)} prompts, none leaks any secret")
