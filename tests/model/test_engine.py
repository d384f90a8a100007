"""The inference engine (bashlsp.model.engine) and the forward passes behind it: cache reuse,
token healing, stop rules, cancel, swap, the three implementations of forward.Forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import FIXTURE_SCRIPTS, make_tiny_checkpoint

from bashlsp.bench.engine import decode_tokens_per_second
from bashlsp.model.checkpoint import load_checkpoint
from bashlsp.model.engine import CompletionQuery, Engine, StopRules, TokenTable, block_delta
from bashlsp.model.engine.decode import Row, utf8_text
from bashlsp.model.engine.stops import repeats_itself
from bashlsp.model.errors import Cancelled
from bashlsp.model.fast_gpt import FastForward
from bashlsp.model.gpt import GPT, GPTConfig
from bashlsp.model.numpy_gpt import NumpyGPT

SCRIPT = FIXTURE_SCRIPTS[0].read_text()


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    """What the server runs on a CPU: the numpy backend."""
    return load_checkpoint(tiny_checkpoint, backend="numpy")


@pytest.fixture(scope="module")
def loaded_torch(tiny_checkpoint):
    """What the server runs on a GPU (here on the CPU): the torch backend."""
    return load_checkpoint(tiny_checkpoint)


def make_engine(loaded, **options) -> Engine:
    """The tiny test model is rarely 20% sure of a token, so tests of other mechanics switch the
    stop-at-a-guess rule off (test_greedy_suggestions_end_before_a_guess covers it)."""
    return Engine(loaded, **{"min_token_prob": 0.0, **options})


@pytest.fixture()
def engine(loaded):
    return make_engine(loaded)


def query(prefix: str, suffix: str = "", mode: str = "line", uri: str = "file:///a.sh", **kw) -> CompletionQuery:
    return CompletionQuery(uri=uri, prefix=prefix, suffix=suffix, mode=mode, **kw)


def suggest(engine: Engine, q: CompletionQuery, **kw):
    return engine.complete(q, **kw).suggestions


def as_tuples(suggestions):
    return [(s.text, round(s.score, 4), s.tokens) for s in suggestions]


def assert_same(got, expected):
    """The same suggestions in the same order, scores equal to float32 noise (a cached and a cold
    pre-fill add up in different chunks; rounding both to 4 places can fall either side of a digit)."""
    assert [(s.text, s.tokens) for s in got] == [(s.text, s.tokens) for s in expected]
    assert [s.score for s in got] == pytest.approx([s.score for s in expected], abs=1e-4)


# -- the fast forward path -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["torch fast path", "numpy", "torch"])
@pytest.mark.parametrize("weights", ["checkpoint", "random", "float16 values"])  # the bundled model ships in float16
def test_serving_forward_matches_model_forward(loaded_torch, weights, path):
    """Every forward.Forward (the two serving ones and GPT.step) gives GPT.forward's logits and
    keys/values: cold prefill, prefill after cached positions, decode, and several streams
    sharing a prefix."""
    if weights == "checkpoint":
        model = GPT(loaded_torch.config, init_weights=False).eval()
        model.load_state_dict(loaded_torch.model.state_dict())  # FastForward re-lays out the model it serves
    else:
        torch.manual_seed(3)
        model = GPT(GPTConfig(vocab_size=300, block_size=128, n_layer=3, n_head=4, n_embd=64)).eval()
        if weights == "float16 values":
            with torch.no_grad():
                for parameter in model.parameters():  # the weights only: model.half() would round the RoPE tables too
                    parameter.copy_(parameter.half().float())
    reference = GPT(model.config, init_weights=False).eval()
    reference.load_state_dict(model.state_dict())
    if path == "numpy":
        serving = NumpyGPT(model.config, {name: t.numpy() for name, t in model.state_dict().items()})
        # and back: the same tensors under the checkpoint's names and layouts
        state = serving.state_dict()
        assert list(state) == list(model.state_dict())
        assert all(np.array_equal(state[name], t.numpy()) for name, t in model.state_dict().items())
    elif path == "torch":
        serving = model
    else:
        serving = FastForward(model)
    new_cache = serving.new_cache
    for method in ("step", "new_cache", "num_params", "set_num_threads", "inference_mode"):  # forward.Forward
        assert callable(getattr(serving, method)), method
    assert serving.config == model.config and serving.num_params() == model.num_params()
    ids = torch.randint(0, model.config.vocab_size, (1, 90))
    with torch.inference_mode():
        slow_cache, fast_cache = reference.new_cache(1, 128), new_cache(1, 128)
        for a, b in [(0, 40), (40, 70), (70, 71), (71, 72)]:  # cold prefill, prefill after cache, decode
            expected = reference(ids[:, a:b], cache=slow_cache, last_only=True)[:, -1].numpy()
            got = serving.step(ids[:, a:b].tolist(), fast_cache)
            assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
            assert fast_cache.length == slow_cache.length == b
        np.testing.assert_allclose(
            np.asarray(fast_cache.k[:, :, :, :72]), slow_cache.k[:, :, :, :72].numpy(), atol=1e-5, rtol=1e-5
        )
        # several streams sharing one prefix
        slow_rows = slow_cache.expand(3)
        fast_rows = new_cache(3, 128)
        fast_rows.k[:, :, :, :72], fast_rows.v[:, :, :, :72] = fast_cache.k[:, :1, :, :72], fast_cache.v[:, :1, :, :72]
        fast_rows.length = 72
        step = torch.randint(0, model.config.vocab_size, (3, 1))
        expected = reference(step, cache=slow_rows, last_only=True)[:, -1].numpy()
        np.testing.assert_allclose(serving.step(step.numpy(), fast_rows), expected, atol=1e-4, rtol=1e-4)
        # every position's logits (prompt-lookup verification)
        expected = reference(ids[:, 72:76], cache=slow_cache)
        got = serving.step(ids[:, 72:76].numpy(), fast_cache, all_positions=True)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)


def test_both_backends_suggest_the_same(loaded, loaded_torch):
    """The engine gives the same suggestions served by numpy (CPU) and by torch (GPU path)."""
    numpy_engine, torch_engine = make_engine(loaded), make_engine(loaded_torch)
    cursor = SCRIPT.index("mkdir")
    queries = [
        query(SCRIPT[: cursor + 2], mode="line", max_tokens=12),
        query(SCRIPT[: cursor + 2], SCRIPT[cursor + 20 :], mode="inline", max_tokens=24),
        query(SCRIPT[:cursor], mode="line", max_tokens=12, num_samples=3),
        query("# list the files\n", mode="generate", max_tokens=32),
    ]
    offered = 0
    for q in queries:
        got, expected = suggest(numpy_engine, q), suggest(torch_engine, q)
        assert [s.text for s in got] == [s.text for s in expected]
        assert [s.score for s in got] == pytest.approx([s.score for s in expected], abs=1e-3)
        offered += len(got)
    assert offered >= len(queries)  # not a comparison of empty lists


def test_numpy_backend_never_imports_torch(tiny_checkpoint):
    """The server on a CPU runs without torch: importing and serving never loads it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import bashlsp.server.app, bashlsp.server.language_server\n"
        "from bashlsp.model.checkpoint import load_checkpoint\n"
        "from bashlsp.model.device import serving_device\n"
        "from bashlsp.model.engine import CompletionQuery, Engine\n"
        "backend, device = serving_device('cpu')\n"
        f"engine = Engine(load_checkpoint({str(tiny_checkpoint)!r}, device=device, backend=backend))\n"
        "engine.warm_up()\n"
        "engine.complete(CompletionQuery('u', '#!/bin/sh\\nec', '', 'line', num_samples=2, temperature=0.5))\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- KV cache reuse across keystrokes ------------------------------------------------------------


@pytest.mark.parametrize("with_suffix,speculate", [(False, False), (True, False), (True, True)])
def test_cache_reuse_gives_the_same_suggestions_as_a_cold_run(loaded, with_suffix, speculate):
    warm = make_engine(loaded, speculate=speculate)
    cursor = SCRIPT.index("mkdir")
    for typed in range(0, 6):
        prefix = SCRIPT[: cursor + typed]
        suffix = SCRIPT[cursor + 12 :] if with_suffix else ""
        q = query(prefix, suffix, mode="inline", max_tokens=12)
        got = warm.complete(q)
        stats = got.stats
        cold = suggest(make_engine(loaded), q)
        assert_same(got.suggestions, cold)
        if typed > 0:
            # only the tokens around the cursor are pre-filled again
            assert stats.reused >= stats.prompt - 6, stats
    # and the reuse is per document: another URI starts cold
    assert warm.complete(query(SCRIPT[:cursor], uri="file:///other.sh")).stats.reused == 0


def test_line_and_inline_requests_share_the_cache(engine):
    cursor = SCRIPT.index("mkdir")
    for typed in range(4):
        prefix, suffix = SCRIPT[: cursor + typed], SCRIPT[cursor + 20 :]
        engine.complete(query(prefix, suffix, mode="line", max_tokens=48))
        stats = engine.complete(query(prefix, suffix, mode="inline", max_tokens=48)).stats
        assert stats.prefilled <= 2, stats
        stats = engine.complete(query(prefix, suffix, mode="generate", max_tokens=64)).stats
        assert stats.prefilled <= 2, stats


def test_generate_starts_with_code_below_the_comment(engine):
    """Below a comment the first bytes must begin code: logits that all but force a blank line,
    another comment or <|eof|> still give code; later tokens and other modes are left alone."""
    tok = engine.tokenizer
    forced = [tok.encode("\n")[0], tok.encode("#")[0], tok.eof_id]
    logits = np.zeros((len(forced), tok.vocab_size), dtype=np.float32)
    for row, token in enumerate(forced):
        logits[row, token] = 100.0
    generate = query("# list files\n", mode="generate")
    picked, _ = engine.decoder.pick(logits, [Row(pending=b"", code_due=True) for _ in forced], generate)
    assert not set(picked.tolist()) & set(forced)
    assert tok.decode(picked.tolist())[:1] not in ("\n", "#")
    picked, _ = engine.decoder.pick(logits, [Row(pending=b"") for _ in forced], generate)
    assert picked.tolist() == forced
    # still healing a newline: the token after it may not start a blank line either
    newline_then_blank = [i for i, data in enumerate(engine.table.token_bytes) if data.startswith(b"\n\n")]
    if newline_then_blank:
        logits = np.zeros((1, tok.vocab_size), dtype=np.float32)
        logits[0, newline_then_blank[0]] = 100.0
        picked, _ = engine.decoder.pick(logits, [Row(pending=b"\n", code_due=True)], generate)
        assert not engine.table.token_bytes[picked.item()].startswith(b"\n\n")


def test_generate_indentation_then_code_not_a_comment(engine):
    """Below an indented comment the script may start with spaces, but not spaces and then a
    comment or a line break: the rule holds past indentation, and ends with the first code."""
    tok, table = engine.tokenizer, engine.table
    generate = query("  # list files\n", mode="generate")
    rules = StopRules.for_query(generate)
    indent = [i for i, data in enumerate(table.token_bytes) if data and not data.strip(b" \t") and b"\t" not in data]
    comment_after_indent = [
        i for i, data in enumerate(table.token_bytes) if data.lstrip(b" ")[:1] == b"#" and data[:1] == b" "
    ]
    row = Row(pending=b"", code_due=True)
    engine.decoder.take(row, indent[0], -0.1, rules, b"")
    assert row.code_due  # only indentation so far
    logits = np.zeros((1, tok.vocab_size), dtype=np.float32)
    for token in [*comment_after_indent, tok.encode("#")[0], tok.encode("\n")[0]]:
        logits[0, token] = 100.0
    picked, _ = engine.decoder.pick(logits, [row], generate)
    assert table.token_bytes[picked.item()].lstrip(b" \t")[:1] not in (b"#", b"\n", b"\r", b"")
    engine.decoder.take(row, tok.encode("ls")[0], -0.1, rules, b"")
    assert not row.code_due  # code has begun: comments may follow


def test_greedy_suggestions_end_before_a_guess(loaded):
    """A line suggestion stops before the first token under min_token_prob: what is left is a
    prefix of the full greedy line; with an impossible bar nothing is offered."""
    cursor = SCRIPT.index("mkdir") + 2
    q = query(SCRIPT[:cursor], mode="line", max_tokens=24)
    full = suggest(make_engine(loaded, min_token_prob=0.0), q)
    assert full and full[0].text
    shorter = [suggest(make_engine(loaded, min_token_prob=p), q) for p in (0.2, 0.5)]
    for got in shorter:
        assert not got or full[0].text.startswith(got[0].text)
    assert len(shorter[1][0].text if shorter[1] else "") <= len(shorter[0][0].text if shorter[0] else "")
    assert suggest(make_engine(loaded, min_token_prob=1.0), q) == []
    assert suggest(
        make_engine(loaded, min_token_prob=1.0), query(SCRIPT[:cursor], mode="generate", max_tokens=8)
    )  # not generate


def test_greedy_alternatives_branch_on_the_likeliest_next_tokens(loaded):
    prefix = SCRIPT[: SCRIPT.index("mkdir") + 2]  # healing "mk" first, then the branches
    engine = make_engine(loaded, min_token_prob=0.0)
    greedy = suggest(engine, query(prefix, mode="line", max_tokens=10))[0].text
    alternatives = suggest(engine, query(prefix, mode="line", max_tokens=10, num_samples=3))
    texts = [s.text for s in alternatives]
    assert greedy in texts and len(texts) == 3 and len(set(texts)) == 3
    assert len({t[:1] for t in texts}) > 1 or len({t[:3] for t in texts}) == 3  # they differ from the start
    assert [
        s.text
        for s in suggest(
            make_engine(loaded, min_token_prob=0.0), query(prefix, mode="line", max_tokens=10, num_samples=3)
        )
    ] == texts


def test_greedy_alternatives_have_their_own_bar_for_the_first_token(loaded):
    """The r-th likeliest token starts alternative r when it reaches alternative_prob, however high
    min_token_prob is (a second choice is rarely over 60%); after it min_token_prob rules."""
    prefix = SCRIPT[: SCRIPT.index("mkdir") + 2]
    q = query(prefix, mode="line", max_tokens=10, num_samples=3)
    assert suggest(make_engine(loaded, min_token_prob=1.0, alternative_prob=1.0), q) == []
    got = [s.text for s in suggest(make_engine(loaded, min_token_prob=1.0, alternative_prob=0.0), q)]
    free = [s.text for s in suggest(make_engine(loaded, min_token_prob=0.0), q)]
    assert len(got) == 2 and len(set(got)) == 2  # the greedy row stops at once, the others after one token
    assert all(any(text.startswith(g) for text in free) for g in got)


def test_samples_share_the_prefix_and_come_sorted(engine):
    q = query(SCRIPT[:200], mode="inline", max_tokens=10, num_samples=4, temperature=1.0)
    got = suggest(engine, q)
    assert 1 <= len(got) <= 4
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
    assert len({s.text for s in got}) == len(got)
    assert all(1 <= s.tokens <= 10 for s in got)
    # the document cache still holds the prompt: a greedy request after it reuses it
    assert engine.complete(query(SCRIPT[:200], mode="inline", max_tokens=4)).stats.prefilled <= 4


def test_long_document_keeps_a_stable_window(loaded):
    engine = make_engine(loaded, max_context=128)
    document = SCRIPT * 20
    first = engine.complete(query(document[:3000], max_tokens=16)).stats
    assert first.prompt <= 128 - 16
    stats = engine.complete(query(document[:3001], max_tokens=16)).stats
    assert stats.prefilled <= 4, stats


# -- token healing -------------------------------------------------------------------------------


def test_healing_backs_off_the_partial_word(loaded):
    tok = loaded.tokenizer
    table = TokenTable(tok)
    text = "for f in *; do\n  ech"
    ids = tok.encode(text)
    kept, removed = table.heal(ids)
    assert tok.decode_bytes(kept) + removed == text.encode()
    assert removed.endswith(b"ech") and b"\n" not in removed
    assert all(i in table.extendable for i in ids[len(kept) :])
    # A prompt ending after a complete, non-extendable token is left alone.
    lone = [i for i, b in enumerate(tok.token_bytes) if b and i not in table.extendable][0]
    assert table.heal([lone]) == ([lone], b"")


def test_allowed_tokens_spell_the_healed_bytes(loaded):
    table = TokenTable(loaded.tokenizer)
    for pending in (b"ech", b" ", b"$HO", b"\n"):
        got = set(table.allowed(pending).tolist())
        expected = {
            i
            for i, b in enumerate(table.token_bytes)
            if b and (b.startswith(pending) or (len(b) < len(pending) and pending.startswith(b)))
        }
        assert got == expected and got


def test_healed_suggestion_starts_at_the_cursor(engine, loaded):
    tok, model = loaded.tokenizer, loaded.model
    prefix = SCRIPT[: SCRIPT.index("echo") + 2]  # "...\nec"
    q = query(prefix, mode="line", max_tokens=8)
    doc = engine._document(q.uri)
    prompt, healed = engine.prompts.build(doc, q, budget=8)
    assert healed == b"ec"  # the partial word, not the newline before it
    assert tok.decode_bytes([t for t in prompt if t not in tok.special_ids]) + healed == prefix.encode()
    got = suggest(engine, q)
    assert got, "the model proposes something"
    # The first token is the model's best among those that spell the healed bytes again, and
    # the suggestion is what follows them: it starts at the cursor.
    logits = model.step([prompt], model.new_cache(1, len(prompt)))[0]
    allowed = engine.table.allowed(healed)
    first = allowed[logits[allowed].argmax()].item()
    assert first != tok.encode("ec")[-1] or len(tok.encode("ec")) > 1
    spelled = healed + got[0].text.encode()
    first_bytes = tok.token_bytes[first]
    assert spelled.startswith(first_bytes) or first_bytes.startswith(spelled)
    assert not got[0].text.startswith("ec")


# -- stop rules ----------------------------------------------------------------------------------


def rules(prefix: str, suffix: str = "", mode: str = "inline", multiline: bool = True) -> StopRules:
    return StopRules.for_query(query(prefix, suffix, mode=mode, multiline=multiline))


def finished(r: StopRules, text: str, truncated: bool = False) -> str:
    """Feed the text as it would grow and return the suggestion it is cut to."""
    for end in range(1, len(text) + 1):
        cut = r.cut(text[:end], final=False)
        if cut is not None:
            return text[:end][:cut]
    return text[: r.cut(text, final=True, truncated=truncated)]


def test_line_mode_stops_at_the_newline_and_does_not_repeat_the_rest_of_the_line():
    assert finished(rules("echo hel", mode="line"), "lo world\necho again") == "lo world"
    assert finished(rules('echo "', '"\nls', mode="line"), 'hello"\n') == "hello"
    assert finished(rules("ls", mode="inline", multiline=False), " -la\n  foo\n") == " -la"


def test_inline_stops_at_the_end_of_the_block():
    r = rules("if [ -f x ]; then")
    assert finished(r, "\n  echo yes\n  rm x\nfi\necho after\n") == "\n  echo yes\n  rm x\nfi"
    r = rules("for f in *; do\n  ")
    assert finished(r, "echo $f\n  ls $f\ndone\n") == "echo $f\n  ls $f"  # dedent below the cursor line
    r = rules("echo hel")  # a plain statement: its line, then stop at the next statement
    assert finished(r, "lo\necho world\n") == "lo"
    r = rules("main() {")
    assert finished(r, "\n  run\n\n  more\n}\n") == "\n  run"  # blank line
    r = rules("cat <<EOF |\\")
    assert finished(r, "\n  sort\nEOF\n").startswith("\n  sort")
    r = rules("while read -r line; do")
    assert finished(r, '\n  echo "$line"\n  if x; then\n    y\n  fi\ndone < f\nnext\n') == (
        '\n  echo "$line"\n  if x; then\n    y\n  fi\ndone < f'
    )
    # a line repeating the one before it ends the suggestion (a model caught in a loop)
    r = rules("if a; then")
    assert finished(r, "\n  echo x\n  echo x\n  echo x\nfi\n") == "\n  echo x"
    assert finished(rules("# say it\n", mode="generate"), "echo a\necho a\necho a\n") == "echo a"
    # cut off at the token limit: the partial last line is not offered
    r = rules("if a; then")
    assert r.cut("\n  echo one\n  ech", final=True, truncated=True) == len("\n  echo one")


def test_block_end_is_decided_at_the_next_lines_indentation():
    """The engine stops decoding as soon as a new line's indentation ends the block, instead
    of decoding that whole line first."""
    r = rules("echo hel")  # a statement: the next one at the same level ends it
    assert r.cut("lo\ne", final=False) == 2
    assert r.cut("lo\n   ", final=False) is None  # the indentation is not known yet
    r = rules("for f in *; do\n  ")
    assert r.cut("echo $f\nd", final=False) == len("echo $f")  # dedent below the cursor line
    r = rules("if a; then")
    assert r.cut("\n  echo x\n  e", final=False) is None  # inside the block it goes on


def test_inline_never_repeats_the_lines_after_the_cursor():
    r = rules("if [ -f x ]; then", "\n  rm x\nfi\n")
    assert finished(r, "\n  echo removing\n  rm x\nfi\n") == "\n  echo removing"
    r = rules("if a; then\n  b\n", "fi\n")
    assert finished(r, "  c\nfi\n") == "  c"


def test_generate_stops_at_a_blank_line_before_a_comment():
    r = rules("# list big files\n", "", mode="generate")
    body = "find . -size +10M\nls -la\n\n# next task\nrm -rf /\n"
    assert finished(r, body) == "find . -size +10M\nls -la"


def test_generate_stops_at_the_end_of_its_block():
    """A blank line after complete statements ends the code for the comment; inside a block it
    opened, or after a line continued with a backslash, a blank line does not."""
    r = rules("# list big files\n", "", mode="generate")
    assert finished(r, "du -sh *\n\nfor f in *; do\n") == "du -sh *"
    assert finished(r, "for f in *; do\n  a\n\n  b\ndone\n\nnext\n") == "for f in *; do\n  a\n\n  b\ndone"
    assert finished(r, "ls \\\n\n  -l\n") == "ls \\\n\n  -l"
    assert r.cut("du -sh *\n\n", final=False) == len("du -sh *")  # decided as the blank line ends


def test_repeats_itself():
    assert repeats_itself("for i in /etc/rc.d/rc.d/rc.d/rc.d")
    assert repeats_itself('echo "echo "echo "echo "')
    assert not repeats_itself("for i in /etc/rc.d/rc.d/rc.d")  # three times is not yet a loop
    assert not repeats_itself('echo "=============================="')  # no letter in the unit
    assert not repeats_itself("mktemp -t run.XXXXXXXXXXXXXXXX")  # one character repeated
    assert not repeats_itself("find / -perm -2000 -type f")


def test_generate_drops_a_line_that_repeats_itself(engine):
    """The row ends at once and the looping line is left out; the lines before it stay."""
    tok = engine.tokenizer
    r = rules("# list\n", "", mode="generate")
    row = Row(pending=b"", code_due=True)
    for token in tok.encode("ls -l\nfor i in /etc" + "/rc.d" * 12):
        engine.decoder.take(row, token, -0.1, r, b"")
        if row.done:
            break
    assert row.done and len(row.data) < len(b"ls -l\nfor i in /etc" + b"/rc.d" * 6)
    (suggestion,) = engine.decoder.suggestions([row], b"", r, "generate")
    assert suggestion.text == "ls -l"


def test_block_delta():
    assert [block_delta(x) for x in ("if x; then", "fi", "done < f", "f() {", "}", "case $x in", "esac")] == [
        1,
        -1,
        -1,
        1,
        -1,
        1,
        -1,
    ]
    assert [block_delta(x) for x in ("if x; then y; fi", "else", "elif z; then", "# then", "echo done")] == [
        0,
        0,
        0,
        0,
        0,
    ]


def test_utf8_text_waits_for_a_whole_character():
    data = "é".encode()
    assert utf8_text(b"ab" + data[:1]) == "ab"
    assert utf8_text(b"ab" + data) == "abé"


# -- cancel, swap, info ----------------------------------------------------------------------------


@pytest.mark.parametrize("speculate", [False, True])
def test_cancel_takes_effect_within_one_step(loaded, speculate):
    engine = make_engine(loaded, speculate=speculate)
    polls = 0

    def should_stop():
        nonlocal polls
        polls += 1
        return polls >= 5

    q = query(SCRIPT[:300], mode="generate", max_tokens=64)
    with pytest.raises(Cancelled):
        engine.complete(q, should_stop)
    assert polls == 5  # no more work after the flag turned
    # the cache stays consistent: the next request equals a cold run
    assert_same(suggest(engine, q), suggest(make_engine(loaded), q))


def test_cancel_during_a_long_prefill(loaded):
    engine = make_engine(loaded)
    with pytest.raises(Cancelled):
        engine.complete(query(SCRIPT * 3, mode="line"), should_stop=lambda: True)


def test_swap_changes_the_model_and_drops_caches(engine, loaded, tmp_path):
    other = load_checkpoint(make_tiny_checkpoint(tmp_path / "other", steps=5, seed=1))
    q = query(SCRIPT[:250], mode="inline", max_tokens=10)
    before = suggest(engine, q)
    old_info = engine.info()
    engine.swap(other)
    assert engine.info()["id"] != old_info["id"] and engine.info()["path"] == str(other.path)
    after = engine.complete(q)
    assert after.stats.reused == 0
    assert as_tuples(after.suggestions) != as_tuples(before)
    assert_same(after.suggestions, suggest(make_engine(other), q))


def test_info_and_warm_up(engine, loaded):
    engine.warm_up()
    info = engine.info()
    assert info["params"] == loaded.model.num_params()
    assert info["config"]["vocab_size"] == loaded.tokenizer.vocab_size
    assert info["device"] == "cpu" and info["context"] == loaded.config.block_size


def test_bad_mode_is_rejected(engine):
    with pytest.raises(ValueError):
        engine.complete(query("ls", mode="poem"))


def test_decode_speed_helper_counts_tokens(engine):
    figures = decode_tokens_per_second(engine, tokens=16, context=32)
    assert figures["tokens"] == 16 and figures["tokens_per_second"] > 0


# -- prompt-lookup speculation -------------------------------------------------------------------


def test_prompt_lookup_proposes_what_followed_the_same_tokens():
    from bashlsp.model.engine.speculation import PromptLookup

    ids = [9, 1, 2, 3, 4, 5, 6, 1]
    lookup = PromptLookup(ids, special_ids=frozenset({9}))
    assert lookup.propose(2, 10) == [3, 4, 5, 6, 1]  # after the bigram (1, 2)
    assert lookup.propose(2, 2) == [3, 4]
    ids += [2]
    assert lookup.propose(3, 10) == [4, 5, 6, 1, 2]  # the trigram (1, 2, 3)
    # the list is cut back and grows differently: stale entries are not used
    del ids[3:]
    lookup.truncated(3)
    ids += [7, 1]
    assert lookup.propose(2, 10) == [7, 1]  # (1, 2) was followed by 7 in what the list holds now
    ids[:] = [1, 2, 9, 5, 1]
    lookup = PromptLookup(ids, special_ids=frozenset({9}))
    assert lookup.propose(2, 10) == []  # drafts stop at special tokens
    assert PromptLookup([1, 2], frozenset()).propose(3, 5) == []


@pytest.mark.parametrize("with_suffix", [False, True])
def test_speculation_gives_the_plain_greedy_result(loaded, with_suffix):
    document = SCRIPT + SCRIPT  # the second copy repeats the first: drafts are found
    plain, fast = make_engine(loaded, speculate=False), make_engine(loaded, speculate=True)
    drafted = 0
    for cursor in range(len(SCRIPT) + 40, len(SCRIPT) + 400, 45):
        suffix = document[cursor + 30 :] if with_suffix else ""
        q = query(document[:cursor], suffix, mode="generate", max_tokens=24)
        got = fast.complete(q)
        assert_same(got.suggestions, suggest(plain, q))
        drafted += got.stats.drafted
    assert drafted > 0


def test_incremental_prefix_encoding_equals_a_full_encoding(engine, loaded):
    from bashlsp.model.engine.prompt import DocumentState

    tok = loaded.tokenizer
    doc = DocumentState(cache=None)
    text = SCRIPT * 2
    steps = list(range(1, len(text), 7)) + [len(text) - 50, 40, len(text)]  # typing, then jumps back and forth
    for end in steps:
        assert engine.prompts._encode_prefix(doc, text[:end]) == tok.encode(text[:end])
    edited = text[:100] + "X" + text[101:]  # an edit far above the cursor
    assert engine.prompts._encode_prefix(doc, edited) == tok.encode(edited)


def test_document_cache_grows_as_needed(loaded, monkeypatch):
    import bashlsp.model.engine.core as engine_module

    monkeypatch.setattr(engine_module, "CACHE_START", 32)
    warm = make_engine(loaded)
    for end in (60, 61, 200, 201, 600):
        q = query(SCRIPT[:end], mode="inline", max_tokens=8)
        assert_same(suggest(warm, q), suggest(make_engine(loaded), q))
    doc = warm._docs[q.uri]
    assert 32 < doc.cache.max_len <= loaded.config.block_size
    assert doc.cache.length == len(doc.ids)


@pytest.mark.parametrize("rows", [1, 2, 3, 6, 7, 40])
def test_numpy_matmul_of_skinny_inputs_equals_gemm(rows):
    """numpy_gpt.matmul multiplies 2-6 rows one by one (faster than OpenBLAS's gemm there)."""
    from bashlsp.model.numpy_gpt import matmul

    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 64), dtype=np.float32)
    w = rng.standard_normal((64, 96), dtype=np.float32)
    got = matmul(x, w)
    assert got.dtype == np.float32 and got.shape == (rows, 96)
    np.testing.assert_allclose(got, x @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_a_row_with_no_allowed_token_gets_minus_infinity(engine, monkeypatch, temperature):
    """When the rules leave a row no token, its pick carries -inf (so take ends the row) instead
    of the model's probability of whatever token index the argmax or the draw fell on."""
    vocab = engine.tokenizer.vocab_size
    monkeypatch.setattr(engine.table, "allowed", lambda pending: np.array([], dtype=np.int64))
    logits = np.random.default_rng(0).standard_normal((2, vocab)).astype(np.float32)
    rows = [Row(pending=b"zz"), Row(pending=b"")]
    picked, logprobs = engine.decoder.pick(logits, rows, query("x", temperature=temperature), engine.rng)
    assert logprobs[0] == -np.inf
    assert np.isfinite(logprobs[1]) and 0 <= picked[1] < vocab


# -- text mode: bashlsp generate, eval's raw samples --------------------------------------------


def test_text_mode_below_a_comment_starts_with_code(loaded):
    """With code_first, no sample begins (past indentation) with a blank line or a comment;
    without it (same seed, a hot temperature) some do, so the check can tell the two apart."""

    def samples(code_first: bool) -> list[str]:
        engine = make_engine(loaded, seed=7)
        q = query("#!/bin/bash\n# Print the date\n", mode="text", max_tokens=3, temperature=3.0, num_samples=64)
        q.code_first = code_first
        return [s.text for s in suggest(engine, q)]

    def starts_without_code(text: str) -> bool:
        return text.lstrip(" \t")[:1] in ("\n", "\r", "#")

    with_rule = samples(code_first=True)
    assert with_rule and not any(starts_without_code(text) for text in with_rule)
    assert any(starts_without_code(text) for text in samples(code_first=False))


def test_text_mode_ends_only_at_a_stop_string_or_the_budget(engine):
    q = query(SCRIPT[:200], mode="text", max_tokens=40)
    free = suggest(engine, q)[0]
    assert free.tokens == 40  # no line or block rule: the whole budget (the tiny model rarely ends a file)
    q.stop = ("\n",)
    stopped = suggest(engine, q)[0]
    assert "\n" not in stopped.text and free.text.startswith(stopped.text)
    assert free.text[len(stopped.text) :].startswith("\n")


def test_sampling_draws_from_the_top_k_then_the_nucleus(engine):
    """Decoder.sample: the nucleus of the TOP_K likeliest tokens, renormalised."""
    from bashlsp.model.engine.decode import TOP_K

    rng = np.random.default_rng(0)
    logits = np.full((2, 1000), -20.0, dtype=np.float32)
    logits[:, 5], logits[:, 7], logits[:, 9] = 2.0, 1.0, -1.0  # p ~ 0.705, 0.259, 0.035
    logprobs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    greedy, _ = engine.decoder.pick(logits, [Row(pending=b""), Row(pending=b"")], query("x"))
    assert greedy.tolist() == [5, 5]
    nucleus = np.concatenate([engine.decoder.sample(logprobs, 1.0, 0.9, rng) for _ in range(400)])
    assert set(nucleus.tolist()) == {5, 7}  # 0.9 of the mass needs exactly these two
    assert 0.65 < (nucleus == 5).mean() < 0.81  # 0.705 / 0.964 renormalised
    everything = np.concatenate([engine.decoder.sample(logprobs, 1.0, 1.0, rng) for _ in range(400)])
    assert 9 in everything.tolist()
    flat = np.full((1, 1000), -np.log(1000.0), dtype=np.float32)
    flat[0, :TOP_K] = 0.0  # the likeliest TOP_K; nothing past them is drawn
    drawn = np.concatenate([engine.decoder.sample(flat, 5.0, 1.0, rng) for _ in range(200)])
    assert drawn.max() < TOP_K and len(set(drawn.tolist())) > TOP_K // 2


def test_score_gives_the_log_probabilities_the_model_decoded_with_and_keeps_the_cache(engine):
    # The model as judge (Engine.score): its own greedy suggestion scores what decoding gave it
    # (the partial word at the cursor is healed: its bytes are scored first, as decoded).
    q = query("#!/bin/sh\nfor f in *; do\n  ec", mode="line", max_tokens=8)
    first = engine.complete(q)
    best = first.suggestions[0]
    (logprobs,) = engine.score(q, [best.text])
    assert len(logprobs) == best.tokens
    assert abs(sum(logprobs) / len(logprobs) - best.score) < 1e-4
    # Several continuations, each after the same prompt; a bound on their tokens.
    scores = engine.score(q, [best.text, best.text + "\nzzz zzz", ""], max_tokens=2)
    assert np.allclose(scores[0], logprobs[:2], atol=1e-5) and len(scores[1]) == 2
    assert 1 <= len(scores[2]) <= 2  # an empty continuation: the healed bytes alone
    # The cache holds the prompt: the next request pre-fills at most the token it always re-runs.
    again = engine.complete(q)
    assert again.stats.prefilled <= 1 and as_tuples(again.suggestions) == as_tuples(first.suggestions)
    with pytest.raises(Cancelled):
        engine.score(q, [best.text], should_stop=lambda: True)


def test_ghost_text_at_a_line_start_is_the_likeliest_of_line_rows(loaded):
    """At a line start greedy ghost text decodes line_rows rows (the likeliest first tokens, each
    continued greedily) and offers the text of the highest summed log-probability first; one row
    is plain greedy, and mid-line requests and popup lines are unchanged."""
    line_start = SCRIPT[: SCRIPT.index("\n") + 1]  # after the shebang
    q = query(line_start, mode="inline", max_tokens=12)
    greedy = suggest(make_engine(loaded, line_rows=1), q)
    rows = suggest(make_engine(loaded, line_rows=3), q)
    assert len(greedy) == 1 and 1 <= len(rows) <= 3
    assert greedy[0].text in [s.text for s in rows]
    totals = [s.score * s.tokens for s in rows]
    assert totals == sorted(totals, reverse=True)
    branches = suggest(make_engine(loaded, line_rows=1), query(line_start, mode="inline", max_tokens=12, num_samples=3))
    assert {s.text for s in rows} == {s.text for s in branches}  # the same rows the greedy alternatives decode
    mid_line = query(SCRIPT[: SCRIPT.index("mkdir") + 2], mode="inline", max_tokens=12)
    assert as_tuples(suggest(make_engine(loaded, line_rows=3), mid_line)) == as_tuples(
        suggest(make_engine(loaded, line_rows=1), mid_line)
    )
    popup = query(line_start, mode="line", max_tokens=12)
    assert as_tuples(suggest(make_engine(loaded, line_rows=3), popup)) == as_tuples(
        suggest(make_engine(loaded, line_rows=1), popup)
    )
