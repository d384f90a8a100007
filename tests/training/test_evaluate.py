"""`bashlsp eval` and the measures behind it, against the tiny real checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import string
import subprocess

import pytest
import torch
from support import FIXTURE_SCRIPTS, FIXTURES, run_cli

from bashlsp.model.checkpoint import LoadedModel, load_checkpoint
from bashlsp.model.engine import MIN_TOKEN_PROB, token_table
from bashlsp.model.errors import BashlspError
from bashlsp.model.generation import has_code_line
from bashlsp.model.gpt import GPT
from bashlsp.training import collect
from bashlsp.training.evaluate import cli, completers, generation, metrics, tasks


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model is too small to gain from a second thread, and on a busy 2-core machine
    two threads waiting on each other make each forward pass many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def random_printable(length: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits + string.punctuation + " \n") for _ in range(length))


def with_block_size(loaded: LoadedModel, block_size: int) -> LoadedModel:
    """The same weights with a shorter block, so short texts exercise the sliding windows."""
    config = dataclasses.replace(loaded.config, block_size=block_size)
    model = GPT(config)
    model.load_state_dict(loaded.model.state_dict())
    model.eval()
    return dataclasses.replace(loaded, model=model, config=config)


@torch.inference_mode()
def hand_nll_bits(loaded: LoadedModel, text: str, context: int | None = None) -> float:
    """Sum of -log2 p(token | the `context` tokens before it), one forward pass per token."""
    ids = [loaded.tokenizer.eof_id] + loaded.tokenizer.encode(text)
    nats = 0.0
    for j in range(1, len(ids)):
        start = 0 if context is None else max(0, j - context)
        logits = loaded.model(torch.tensor([ids[start:j]]))[0, -1]
        nats -= torch.log_softmax(logits.double(), dim=-1)[ids[j]].item()
    return nats / math.log(2)


# -- bits per byte -------------------------------------------------------------------------------


def test_bits_per_byte_equals_hand_computed_nll(loaded):
    text = '#!/bin/bash\necho "hello $USER"\nls -la /tmp | wc -l\n'
    expected = hand_nll_bits(loaded, text) / len(text.encode("utf-8"))
    assert metrics.bits_per_byte(loaded, text) == pytest.approx(expected, rel=1e-5)


def test_bits_per_byte_counts_bytes_not_characters(loaded):
    text = "echo 'héllo wörld ✓'\n"
    assert len(text.encode("utf-8")) > len(text)
    expected = hand_nll_bits(loaded, text) / len(text.encode("utf-8"))
    assert metrics.bits_per_byte(loaded, text) == pytest.approx(expected, rel=1e-5)


def test_long_file_with_stride_one_gives_every_token_a_full_block(loaded):
    small = with_block_size(loaded, 8)
    text = FIXTURE_SCRIPTS[0].read_text()[:120]
    assert len(small.tokenizer.encode(text)) > 3 * 8
    expected = hand_nll_bits(small, text, context=8)
    assert metrics.total_nll_bits(small, text, stride=1) == pytest.approx(expected, rel=1e-5)


def test_long_file_default_stride_is_close_to_full_context(loaded):
    small = with_block_size(loaded, 32)
    text = FIXTURE_SCRIPTS[1].read_text()[:300]
    full = metrics.total_nll_bits(small, text, stride=1)
    halves = metrics.total_nll_bits(small, text)  # stride 16: every token sees >= 17 tokens
    assert halves == pytest.approx(full, rel=0.05)


@pytest.mark.parametrize(
    "num_ids,block,stride",
    [(2, 8, 4), (8, 8, 4), (9, 8, 4), (10, 8, 4), (50, 8, 3), (50, 8, 8), (50, 8, 1), (33, 16, 5)],
)
def test_score_windows_score_each_target_once_with_enough_context(num_ids, block, stride):
    scored = []
    for start, end, count in metrics.score_windows(num_ids, block, stride):
        assert 0 <= start < end <= num_ids - 1 and end - start <= block and 1 <= count <= end - start
        for target in range(end - count + 1, end + 1):
            scored.append(target)
            assert target - start >= min(target, block - stride + 1)  # context before the target
    assert scored == list(range(1, num_ids))


def test_bpb_is_lower_for_a_training_script_than_for_random_text(loaded):
    script = FIXTURE_SCRIPTS[2].read_text()
    noise = random_printable(len(script), seed=3)
    script_bpb, noise_bpb = metrics.bits_per_byte(loaded, script), metrics.bits_per_byte(loaded, noise)
    assert script_bpb < 3.0 < noise_bpb
    assert script_bpb < noise_bpb / 2


def test_evaluate_bpb_weights_files_by_bytes(loaded):
    texts = [p.read_text() for p in FIXTURE_SCRIPTS[:3]]
    result = metrics.evaluate_bpb(loaded, texts)
    sizes = [len(t.encode()) for t in texts]
    assert result["per_file"] == pytest.approx([metrics.bits_per_byte(loaded, t) for t in texts], rel=1e-6)
    assert result["bpb"] == pytest.approx(sum(b * s for b, s in zip(result["per_file"], sizes)) / sum(sizes))
    assert result["mean_file_bpb"] == pytest.approx(sum(result["per_file"]) / 3)
    assert result["bytes"] == sum(sizes)


def test_xz_bpb_is_sane():
    assert metrics.xz_bpb("echo hello world\n" * 2000) < 0.05
    noise = random_printable(20000, seed=1)
    # 95 symbols carry log2(95) = 6.57 bits; xz cannot beat that on uniform noise.
    assert 6.5 < metrics.xz_bpb(noise) < 8.0
    with pytest.raises(ValueError):
        metrics.xz_bpb("")


@pytest.mark.skipif(shutil.which("xz") is None, reason="xz is not installed")
def test_xz_bpb_matches_the_xz_command(tmp_path):
    path = FIXTURE_SCRIPTS[0]
    compressed = subprocess.run(["xz", "-9e", "-c", str(path)], capture_output=True, check=True).stdout
    assert metrics.xz_bpb(path.read_bytes()) == 8 * len(compressed) / path.stat().st_size


# -- string measures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a,b,distance",
    [
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("", "abc", 3),
        ("abc", "", 3),
        ("abc", "abc", 0),
        ("ab", "ba", 2),
        ("intention", "execution", 5),
        ("echo $x", 'echo "$x"', 2),
        ("", "", 0),
    ],
)
def test_levenshtein_known_pairs(a, b, distance):
    assert metrics.levenshtein(a, b) == distance
    assert metrics.levenshtein(b, a) == distance


def test_edit_similarity():
    assert metrics.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert metrics.edit_similarity("", "") == 1.0
    assert metrics.edit_similarity("abc", "xyz") == 0.0
    assert metrics.edit_similarity("", "abc") == 0.0
    assert metrics.edit_similarity("ls -la", "ls -la") == 1.0


def test_exact_match_compares_whitespace_tokens():
    assert metrics.exact_match("echo  hi", "  echo hi  ")
    assert metrics.exact_match("\tif [ -f x ]; then", "if [ -f x ];  then")
    assert not metrics.exact_match("echo hi;", "echo hi")
    assert metrics.exact_match("echo 'a b'", "echo 'a  b'")  # whitespace-token equality, even inside quotes
    assert not metrics.exact_match("", "fi")


# -- keystroke savings ---------------------------------------------------------------------------

TYPED = "ls -la\n\ncd /tmp\n    echo done\n"


def perfect_completer(prefix: str, following: str) -> str:
    return following.split("\n", 1)[0]


def test_perfect_completer_reaches_the_theoretical_maximum():
    # One keystroke accepts each non-empty line's text, one more types each newline.
    keystrokes, characters = tasks.simulate_typing(TYPED, perfect_completer)
    assert (keystrokes, characters) == (3 + 4, len(TYPED))
    assert tasks.keystroke_savings([TYPED], perfect_completer, max_chars=0)["ksr"] == pytest.approx(1 - 7 / len(TYPED))


def test_useless_and_wrong_completers_save_nothing():
    for completer in (lambda p, f: "", lambda p, f: "zzz", lambda p, f: f[:1], lambda p, f: f.split("\n")[0] + "x"):
        result = tasks.keystroke_savings([TYPED], completer, max_chars=0)
        assert result["ksr"] == 0.0 and result["keystrokes"] == result["characters"] == len(TYPED)


def test_partial_completer_is_counted_exactly():
    # Suggests the next two characters: every keystroke covers two characters, except the last odd one.
    text = "abcde"
    keystrokes, characters = tasks.simulate_typing(text, lambda p, f: f[:2])
    assert (keystrokes, characters) == (3, 5)


def test_typed_span_ends_at_a_line_end():
    text = "first line\nsecond line\nthird\n"
    assert tasks.typed_span(text, 3) == "first line\n"
    assert tasks.typed_span(text, 11) == "first line\n"
    assert tasks.typed_span(text, 12) == "first line\nsecond line\n"
    assert tasks.typed_span(text, 0) == text
    assert tasks.typed_span("no newline at all", 4) == "no newline at all"


@torch.inference_mode()
def naive_healed_line(loaded: LoadedModel, prefix: str, max_new_tokens: int) -> str:
    """Greedy rest-of-line with token healing, the slow obvious way: no cache, every step reads
    the whole sequence with GPT.forward, the allowed tokens found by scanning the vocabulary.
    The healing itself is the engine's (TokenTable.heal): what it backs off is tested in test_engine."""
    tok = loaded.tokenizer
    body, required = token_table(tok).heal(tok.encode(prefix))
    healed = len(required)
    ids, out = [tok.eof_id] + body, b""
    for _ in range(max_new_tokens):
        logits = loaded.model(torch.tensor([ids]))[0, -1]
        if required:
            allowed = [
                t for t, b in enumerate(tok.token_bytes) if b and (b.startswith(required) or required.startswith(b))
            ]
            token = allowed[int(logits[allowed].argmax())]
        else:
            token = int(logits.argmax())
        if not tok.token_bytes[token]:
            break
        out += tok.token_bytes[token]
        required = required[len(tok.token_bytes[token]) :] if required.startswith(tok.token_bytes[token]) else b""
        if b"\n" in out[healed:]:
            break
        ids.append(token)
    return out[healed:].split(b"\n")[0].decode("utf-8", errors="ignore")


def test_reference_completer_equals_naive_step_by_step_healing(loaded):
    """Eval's reference completer is the server's engine without the stop-at-a-guess rule: the
    model's greedy line, healed as the server heals it."""
    text = FIXTURE_SCRIPTS[3].read_text()
    completer = completers.make_completer(loaded, "reference", max_new_tokens=10)
    cuts = [0, 1, 11, 12, 14, 17, 25, 26, 40, 41, 57, 80, 81, 120, 200, 260]
    for cut in cuts:
        assert len(loaded.tokenizer.encode(text[:cut])) < 200  # no window: the same prompt as the naive way
        assert completer(text[:cut]) == naive_healed_line(loaded, text[:cut], 10), repr(text[:cut][-20:])


def test_completer_with_reused_cache_matches_a_fresh_one(loaded):
    text = FIXTURE_SCRIPTS[5].read_text()
    shared = completers.make_completer(loaded, "reference", max_new_tokens=12)
    # (within the model's window: past it the engine keeps the window's start from request to
    # request, as in an editor, so a jump back from the end of a long file reads less than a fresh one)
    cuts = [0, 5, 12, 13, 30, 31, 32, 60, 44, 90, 250]
    for cut in cuts:
        assert len(loaded.tokenizer.encode(text[:cut])) < loaded.config.block_size // 2
        fresh = completers.make_completer(loaded, "reference", max_new_tokens=12)(text[:cut])
        assert shared(text[:cut]) == fresh
        assert "\n" not in fresh
    # One more character: only the re-spelled last word is new, the rest comes from the cache.
    shared(text[:200])
    before = shared.prefilled_tokens
    assert shared(text[:201]) == completers.make_completer(loaded, "reference", max_new_tokens=12)(text[:201])
    assert shared.prefilled_tokens - before <= 3


def test_completer_past_the_block_keeps_working(loaded):
    small = with_block_size(loaded, 32)
    text = FIXTURE_SCRIPTS[1].read_text()
    completer = completers.make_completer(small, "reference", max_new_tokens=8)
    for cut in range(100, len(text), 37):
        suggestion = completer(text[:cut])
        assert suggestion == completers.make_completer(small, "reference", max_new_tokens=8)(text[:cut])


def test_keystroke_savings_through_the_engine_counts_its_work(loaded):
    text = FIXTURE_SCRIPTS[3].read_text()
    span = tasks.typed_span(text, 80)
    expected = tasks.simulate_typing(span, completers.make_completer(loaded, "reference", max_new_tokens=16))
    completer = completers.make_completer(loaded, "reference", max_new_tokens=16)
    result = tasks.keystroke_savings([text], completer, max_chars=80)
    assert result["characters"] == len(span)
    assert result["keystrokes"] == expected[0]
    assert 0.0 <= result["ksr"] < 1.0
    # a request per keystroke, each pre-filling only the newly typed text (plus the re-spelled word)
    assert completer.decode_steps >= result["keystrokes"]
    assert completer.prefilled_tokens < 3 * result["keystrokes"] + 80


def test_server_engine_completer_gives_a_rest_of_line(loaded):
    complete = completers.make_completer(loaded, "server", max_new_tokens=8)
    assert complete.engine.min_token_prob == MIN_TOKEN_PROB
    assert completers.make_completer(loaded, "server", min_token_prob=0.5).engine.min_token_prob == 0.5
    text = FIXTURE_SCRIPTS[0].read_text()
    for cut in (0, 12, 40):
        suggestion = complete(text[:cut], text[cut:])
        assert isinstance(suggestion, str) and "\n" not in suggestion
    with pytest.raises(BashlspError):
        completers.make_completer(loaded, "nonsense")


# -- next-line completion ------------------------------------------------------------------------


def test_sampled_lines_skip_blank_lines_and_the_first_line():
    text = "#!/bin/bash\n\nls\n   \necho a\necho b\n"
    assert tasks.sample_line_positions(text, 10, "s") == [(13, "ls"), (20, "echo a"), (27, "echo b")]
    two = tasks.sample_line_positions(text, 2, "s")
    assert len(two) == 2 and two == tasks.sample_line_positions(text, 2, "s") and two == sorted(two)
    assert all(text[offset:].startswith(line) for offset, line in two)


def test_next_line_metrics_with_a_perfect_and_a_real_completer(loaded):
    texts = [p.read_text() for p in FIXTURE_SCRIPTS[:2]]
    perfect = tasks.next_line_metrics(
        texts,
        lambda prefix: next(t for t in texts if t.startswith(prefix))[len(prefix) :].split("\n")[0],
        3,
    )
    assert (perfect["exact_match"], perfect["edit_similarity"], perfect["lines"]) == (1.0, 1.0, 6)
    real = tasks.next_line_metrics(texts, completers.make_completer(loaded, "reference", max_new_tokens=16), 3)
    assert real["lines"] == 6
    assert 0.0 <= real["exact_match"] <= 1.0 and 0.0 <= real["edit_similarity"] <= 1.0
    assert len(real["examples"]) == 5 and all("\n" not in e["prediction"] for e in real["examples"])


# -- comment-to-script generation ----------------------------------------------------------------


def syntax_ok(script: str) -> bool:
    return generation.shell_tools().check_syntax(script).ok is True


def test_bash_syntax_check_on_known_snippets():
    """Eval checks generations with the server's `bash -O extglob -n` (extglob patterns parse)."""
    good = ["echo hi\n", "if true; then echo x; fi\n", 'for f in *; do\n  echo "$f"\ndone\n', "f() { local a=$1; }\n"]
    good.append("shopt -s extglob\nrm -- !(*.keep)\n")
    bad = ["if true; then\n", "echo $(\n", "for f in; do done\n", "case x in\n", "fi\n"]
    assert all(syntax_ok(s) for s in good)
    assert not any(syntax_ok(s) for s in bad)


def test_bash_syntax_check_never_runs_the_code(tmp_path):
    marker = tmp_path / "ran"
    assert syntax_ok(f"touch '{marker}'\n")
    assert not marker.exists()


def test_eval_needs_bash_for_generations(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BashlspError, match="bash -n"):
        generation.shell_tools()


def test_comment_descriptions_come_from_comments_followed_by_code():
    script = (
        "#!/bin/bash\n# Back up the home folder\ntar czf home.tgz ~\n\n# a note before a blank line\n\n"
        "# shellcheck disable=SC2086\nrm $x\n# Copy the files\n# to the backup disk\ncp a b\n"
        "    # indented: restart the service\n    systemctl restart x\n# ----\nexit 0\n"
    )
    assert generation.comment_descriptions(script) == [
        "Back up the home folder",
        "Copy the files to the backup disk",
        "indented: restart the service",
    ]
    assert generation.comment_descriptions(FIXTURE_SCRIPTS[2].read_text()) == [
        "Count lines of every file given on the command line."
    ]


def test_read_generation_pairs_prefers_the_holdout(tmp_path):
    pairs = tmp_path / "tldr_pairs.jsonl"
    rows = [
        {"description": "List files", "command": "ls", "page": "ls", "split": "train"},
        {"description": "Show disk usage", "command": "du -sh", "page": "du", "split": "holdout"},
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert generation.read_generation_pairs(pairs)[0] == ["Show disk usage"]
    pairs.write_text(json.dumps({"description": "List files", "command": "ls"}) + "\n")
    assert generation.read_generation_pairs(pairs)[0] == ["List files"]
    pairs.write_text("not json\n")
    with pytest.raises(BashlspError, match="not JSON"):
        generation.read_generation_pairs(pairs)


def test_generation_pass_rate_real_run(loaded):
    result = generation.generation_pass_rate(
        loaded, ["Back up a directory", "Count lines of files", "Print the date"], seed=1, max_new_tokens=24
    )
    assert result["total"] == 3 and 0 <= result["passed"] <= 3
    assert result["pass_rate"] == result["passed"] / 3
    again = generation.generation_pass_rate(
        loaded, ["Back up a directory", "Count lines of files", "Print the date"], seed=1, max_new_tokens=24
    )
    assert again["examples"] == result["examples"]  # seeded: the same samples


# -- files and the command -----------------------------------------------------------------------


def test_eval_reads_the_scripts_as_the_trainer_collects_them(tmp_path):
    """training/collect.py's walk: shell by extension or shebang, tool folders and binaries,
    non-UTF-8, empty files and duplicates (a link to a file already taken) skipped; names relative."""
    (tmp_path / "a.sh").write_text("echo a\n")
    (tmp_path / "tool").write_text("#!/bin/bash\necho tool\n")
    (tmp_path / "x.py").write_text("#!/usr/bin/env python3\nprint(1)\n")
    (tmp_path / "blob.sh").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "latin.sh").write_bytes(b"#!/bin/sh\necho caf\xe9\n")
    (tmp_path / "empty.sh").write_text("")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hook.sh").write_text("echo hook\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bash").write_text("echo b\n")
    (tmp_path / "link.sh").symlink_to(tmp_path / "a.sh")
    found = tasks.load_scripts(tmp_path)
    assert [str(p) for p in found.paths] == ["a.sh", "sub/b.bash", "tool"]
    assert found.texts[0] == "echo a\n"
    assert found.skipped[collect.BINARY] == 1 and found.skipped[collect.NOT_UTF8] == 1
    assert found.skipped[collect.EMPTY] == 1 and found.skipped[collect.NOT_SHELL] == 1
    assert found.skipped[collect.TOOL_DIR] == 1 and found.skipped[collect.DUPLICATE] == 1


def test_eval_command_prints_json_with_all_figures(tiny_checkpoint):
    result = run_cli(
        "eval",
        str(FIXTURES / "scripts"),
        "--checkpoint",
        str(tiny_checkpoint),
        "--json",
        "--device",
        "cpu",
        "--lines-per-file",
        "2",
        "--ksr-chars",
        "40",
        "--generations",
        "3",
        "--threads",
        "1",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"]["evaluated"] == len(FIXTURE_SCRIPTS)
    assert 0 < report["bpb"]["bpb"] < 8 and 0 < report["xz_bpb"]["bpb"] < 12
    assert len(report["per_file"]) == len(FIXTURE_SCRIPTS)
    assert set(report["next_line"]) >= {"exact_match", "edit_similarity", "lines"}
    assert report["next_line"]["lines"] == 2 * len(FIXTURE_SCRIPTS)
    assert set(report["ksr"]) >= {"ksr", "keystrokes", "characters"}
    assert report["generation"]["total"] == 3 and report["generation"]["pass_rate"] is not None
    assert set(report["timings"]) >= {"bpb_s", "xz_s", "next_line_s", "ksr_s", "generation_s", "total_s"}
    table = cli.format_report(report)
    for heading in ("bits per byte", "xz -9e", "exact match", "edit similarity", "KSR", "pass bash -n"):
        assert heading in table


def test_eval_command_reports_a_missing_folder(tiny_checkpoint, tmp_path):
    result = run_cli("eval", str(tmp_path / "nowhere"), "--checkpoint", str(tiny_checkpoint))
    assert result.returncode == 1
    assert "is not a folder" in result.stderr


def test_server_generation_goes_through_the_engine_with_retries(loaded):
    """The server-side generation figure: every description is tried greedily, then with the
    server's sampled retries; a script is offered only if it has code and passes bash -n."""
    result = generation.server_generation_pass_rate(
        loaded, ["Print the date", "List the files in the current directory"], seed=1
    )
    assert result["total"] == 2 and 0 <= result["offered"] <= 2
    assert result["greedy_passed"] <= result["offered"]
    assert result["pass_rate"] == result["offered"] / 2
    # at most the greedy script and the sampled ones per description are checked
    assert result["offered"] <= result["scripts_checked"] <= 2 * (1 + result["samples"])
    for example in result["examples"]:
        if example["script"] is not None:
            assert has_code_line(example["script"])
            assert syntax_ok(generation.generation_prompt(example["description"]) + example["script"])
