"""The architectures of issue 17 (moe, mamba, hybrid; dense is tests/model/test_model.py): the
cache gives the full forward's logits, the MoE routing and its loss, checkpoints, configs."""

import json

import pytest
import torch
from support import fixture_texts

from bashlsp.model.architectures import build_model
from bashlsp.model.checkpoint import load_checkpoint, save_checkpoint
from bashlsp.model.config import GPTConfig, preset_config
from bashlsp.model.engine import CompletionQuery, Engine
from bashlsp.model.errors import CheckpointError, ConfigError
from bashlsp.model.mamba import RECENT, SNAPSHOT_EVERY, scan_implementation
from bashlsp.model.tokenizer import BashTokenizer

ARCHS = {
    "moe": dict(n_experts=4, top_k=2),
    "mamba": dict(d_state=8),
    "hybrid": dict(d_state=8, attn_every=2),
}
VOCAB = 97


def tiny(arch: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    settings = dict(vocab_size=VOCAB, block_size=160, n_layer=3, n_head=2, n_embd=32, arch=arch) | ARCHS[arch]
    model = build_model(GPTConfig(**(settings | overrides))).eval()
    # Weights far from their small initial values, and a dt near 1, so that every part of the
    # state (an old conv input, an SSM state one position off) shows in the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and not name.endswith("A_log"):
                p.normal_(0.0, 0.3)
            elif name.endswith("dt_proj.bias"):
                p.zero_()
    return model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """For models this small, a second thread only adds synchronisation: under the shared
    machine's load the MoE tests ran ~300x slower with two (as support.make_tiny_checkpoint says)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=list(ARCHS))
def model(request):
    return tiny(request.param)


@pytest.fixture(scope="module")
def tokenizer():
    return BashTokenizer.train(fixture_texts(), vocab_size=300)


def test_incremental_decoding_matches_full_forward(model):
    idx = torch.randint(0, VOCAB, (2, 120))
    with torch.no_grad():
        full = model(idx)  # (2, 120, V)
        cache = model.new_cache(2, 160)
        pieces = [model(idx[:, :37], cache=cache)]  # a chunk across the first snapshot
        pieces += [model(idx[:, t : t + 1], cache=cache) for t in range(37, 70)]  # token by token
        pieces.append(model(idx[:, 70:], cache=cache))  # a chunk after cached positions
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-4, rtol=1e-4)
    assert cache.length == 120


@pytest.mark.parametrize("keep", [0, 5, SNAPSHOT_EVERY, 2 * SNAPSHOT_EVERY + 3, 88, 100 - RECENT + 1, 99])
def test_lowering_the_length_drops_the_tail(model, keep):
    idx = torch.randint(0, VOCAB, (1, 100))
    other, more = torch.randint(0, VOCAB, (1, 9)), torch.randint(0, VOCAB, (1, 3))
    with torch.no_grad():
        cache = model.new_cache(1, 160)
        model(idx[:, :60], cache=cache)
        model(idx[:, 60:], cache=cache)
        cache.length = keep  # the user edited the text after token `keep`
        tail = model(other, cache=cache)
        again = model(more, cache=cache)  # and decoding goes on from there
        full = model(torch.cat([idx[:, :keep], other, more], dim=1))
    torch.testing.assert_close(torch.cat([tail, again], dim=1), full[:, keep:], atol=1e-4, rtol=1e-4)
    if model.config.arch != "moe":
        # a recurrent state restores one of the last RECENT positions' states, or re-runs from
        # the snapshot at or before `keep`
        assert cache.recomputed == (0 if keep > 100 - RECENT else keep % SNAPSHOT_EVERY)


def test_lowering_twice_within_the_recent_states():
    """A rejected draft, then another: each cut restores a recent state, nothing is re-run."""
    model = tiny("hybrid")
    idx = torch.randint(0, VOCAB, (1, 80))
    with torch.no_grad():
        cache = model.new_cache(1, 160)
        model(idx[:, :50], cache=cache)
        model(idx[:, 50:55], cache=cache)
        cache.length = 52
        model(idx[:, 52:53], cache=cache)  # now at 53, the recent states of 48..53 are valid
        cache.length = 49
        out = model(idx[:, 49:80], cache=cache)
        full = model(idx)
    torch.testing.assert_close(out, full[:, 49:], atol=1e-4, rtol=1e-4)
    assert cache.recomputed == 0


def test_resized_cache_continues_each_row(model):
    """The engine grows a document's cache and starts sampled rows from one prefix with `resized`."""
    idx = torch.randint(0, VOCAB, (1, 50))
    with torch.no_grad():
        cache = model.new_cache(1, 64)
        model(idx, cache=cache)
        cache.length = 45
        wide = cache.resized(3, 120)
        out = model(torch.tensor([[1], [2], [3]]), cache=wide)[:, -1]
        ref = model(torch.cat([idx[:, :45].repeat(3, 1), torch.tensor([[1], [2], [3]])], dim=1))[:, -1]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert wide.max_len == 120 and wide.length == 46


def test_a_state_cache_length_cannot_be_raised():
    model = tiny("mamba")
    with torch.no_grad():
        cache = model.new_cache(1, 64)
        model(torch.randint(0, VOCAB, (1, 10)), cache=cache)
        cache.length = 20
        with pytest.raises(ValueError, match="lowered, not raised"):
            model(torch.randint(0, VOCAB, (1, 1)), cache=cache)


def test_moe_routes_each_token_to_top_k_experts_and_has_a_balancing_loss():
    model = tiny("moe").train()
    idx = torch.randint(0, VOCAB, (2, 24))
    loss = model(idx[:, :-1], targets=idx[:, 1:])
    for block in model.blocks:
        choice = block.moe.last_choice  # (tokens, k)
        assert choice.shape == (2 * 23, 2)
        assert (choice[:, 0] != choice[:, 1]).all()  # k distinct experts per token
    aux = model.aux_loss
    assert torch.isfinite(aux) and aux > 0
    plain = torch.nn.functional.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    torch.testing.assert_close(loss, plain + model.config.aux_loss_weight * model.aux_loss)
    loss.backward()  # the router learns from the balancing loss too
    assert model.blocks[0].moe.router.weight.grad.abs().sum() > 0
    assert model.active_params() < model.num_params()


def test_mamba_runs_the_sequential_scan_here():
    assert scan_implementation(torch.device("cpu")) == "sequential"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_checkpoint_round_trip_and_engine(tmp_path, tokenizer, arch):
    torch.manual_seed(0)
    model = build_model(_small(arch, tokenizer))
    save_checkpoint(tmp_path / "c", model, tokenizer, {}, dtype=torch.float16)  # as --export writes
    loaded = load_checkpoint(tmp_path / "c", backend="numpy")  # what the server asks for on a CPU
    assert loaded.backend == "torch" and type(loaded.model) is type(model)  # numpy is dense only
    assert loaded.config == model.config
    ids = torch.tensor([tokenizer.encode("#!/bin/sh\necho hi\n")])
    with torch.no_grad():
        expected = model.half().float()(ids)  # the float16-rounded weights
        torch.testing.assert_close(loaded.model(ids), expected, atol=1e-4, rtol=1e-4)
    engine = Engine(loaded, min_token_prob=0.0)
    query = CompletionQuery("file:///a.sh", "#!/bin/sh\nfor f in *; do\n  ec", "\ndone\n", "line", max_tokens=6)
    completion = engine.complete(query)
    assert completion.stats.decoded >= 1
    assert engine.info()["backend"] == "torch"


def _small(arch, tokenizer):
    return GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32, arch=arch, **ARCHS[arch]
    )


def test_a_dense_config_is_stored_as_before():
    config = preset_config("nano", 8192)
    assert "arch" not in config.to_dict() and "n_experts" not in config.to_dict()
    assert GPTConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "change, message",
    [
        ({"arch": "transformer"}, "unknown arch 'transformer'"),
        ({"arch": "moe", "top_k": 5, "n_experts": 4}, "top_k=5 must be between 1 and n_experts=4"),
        ({"arch": "moe", "n_experts": 1, "top_k": 1}, "n_experts >= 2"),
        ({"arch": "moe", "aux_loss_weight": -1}, "aux_loss_weight must be a number >= 0"),
        ({"arch": "mamba", "d_state": 0}, "d_state must be a positive integer"),
        ({"arch": "mamba", "d_conv": 1}, "d_conv must be at least 2"),
        ({"arch": "mamba", "n_experts": 4}, "n_experts do not apply to arch mamba"),
        ({"arch": "hybrid", "attn_every": 1}, "attn_every=1 must be between 2 and n_layer=2"),
        ({"d_conv": 4}, "d_conv do not apply to arch dense"),
    ],
)
def test_a_checkpoint_with_a_bad_arch_config_gets_a_clear_error(tmp_path, tokenizer, change, message):
    model = build_model(_small("moe", tokenizer))
    save_checkpoint(tmp_path / "c", model, tokenizer, {})
    config_file = tmp_path / "c" / "config.json"
    data = json.loads(config_file.read_text())
    data["model"] = {
        k: v for k, v in data["model"].items() if k not in ("arch", "n_experts", "top_k", "aux_loss_weight")
    }
    data["model"] |= change
    config_file.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "c")


def test_weights_of_another_arch_get_a_clear_error(tmp_path, tokenizer):
    save_checkpoint(tmp_path / "c", build_model(_small("mamba", tokenizer)), tokenizer, {})
    config_file = tmp_path / "c" / "config.json"
    data = json.loads(config_file.read_text())
    data["model"] = _small("hybrid", tokenizer).to_dict()  # the config says hybrid, the weights are mamba
    config_file.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="weights are missing tensors: blocks.1.attn"):
        load_checkpoint(tmp_path / "c")


def test_preset_sizes_of_each_arch():
    assert preset_config("nano", 8192, arch="mamba").n_layer == 8
    hybrid = preset_config("nano", 8192, arch="hybrid")
    assert [hybrid.is_attention(i) for i in range(hybrid.n_layer)] == [False, False, True] * 2
    with pytest.raises(ConfigError, match="top_k do not apply to arch mamba"):
        preset_config("nano", 8192, arch="mamba", top_k=2)
