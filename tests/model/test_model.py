import pytest
import torch

from bashlsp.model.errors import ConfigError
from bashlsp.model.gpt import GPT, PRESETS, GPTConfig, preset_config


def small_model(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(**dict(dict(vocab_size=97, block_size=64, n_layer=2, n_head=2, n_embd=32), **overrides))
    return GPT(config).eval()


def test_kv_cache_decoding_matches_full_forward():
    model = small_model()
    idx = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        full = model(idx)  # (2, 40, V)
        cache = model.new_cache(batch_size=2, max_len=64)
        pieces = [model(idx[:, :17], cache=cache)]  # pre-fill a prefix
        for t in range(17, 30):  # then one token at a time
            pieces.append(model(idx[:, t : t + 1], cache=cache))
        pieces.append(model(idx[:, 30:], cache=cache))  # then a chunk after cached positions
    incremental = torch.cat(pieces, dim=1)
    torch.testing.assert_close(incremental, full, atol=1e-4, rtol=1e-4)
    assert cache.length == 40


def test_cache_truncation_reuses_prefix():
    model = small_model()
    idx = torch.randint(0, 97, (1, 20))
    with torch.no_grad():
        cache = model.new_cache(1, 64)
        model(idx, cache=cache)
        cache.length = 12  # the user edited the text after token 12
        other = torch.randint(0, 97, (1, 5))
        tail = model(other, cache=cache)
        full = model(torch.cat([idx[:, :12], other], dim=1))
    torch.testing.assert_close(tail, full[:, 12:], atol=1e-4, rtol=1e-4)


def test_expand_cache_for_samples():
    model = small_model()
    idx = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        cache = model.new_cache(1, 32)
        model(idx, cache=cache)
        wide = cache.expand(3)
        out = model(torch.tensor([[1], [2], [3]]), cache=wide)
        ref = model(torch.cat([idx, torch.tensor([[2]])], dim=1))[:, -1]
    torch.testing.assert_close(out[1, 0], ref[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes(name):
    config = preset_config(name, vocab_size=256, block_size=32)
    with torch.device("meta"):
        model = GPT(config)
        logits = model(torch.zeros(2, 16, dtype=torch.long))
    assert logits.shape == (2, 16, 256)
    assert config.n_embd % config.n_head == 0


def test_preset_sizes_are_ordered():
    counts = []
    for name in ("nano", "tiny", "small", "medium"):
        with torch.device("meta"):
            counts.append(GPT(preset_config(name, vocab_size=8192)).num_params())
    assert counts == sorted(counts)
    assert counts[0] < 8e6


def test_last_only_logits():
    model = small_model()
    idx = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(idx, last_only=True)[:, -1], model(idx)[:, -1])


def test_loss_decreases_when_overfitting_a_tiny_batch():
    model = small_model().train()
    x = torch.randint(0, 97, (4, 32))
    y = torch.roll(x, -1, dims=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = model(x, targets=y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first * 0.3


def test_sequence_longer_than_block_is_refused():
    model = small_model()
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(n_embd=30, n_head=4), "not divisible"),
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(vocab_size="many"), "vocab_size must be a positive integer"),
    ],
)
def test_bad_config_is_a_clear_error(bad, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**dict(dict(vocab_size=97, n_layer=2, n_head=2, n_embd=32), **bad))


def test_config_from_dict_rejects_unknown_and_missing_keys():
    good = GPTConfig(vocab_size=97).to_dict()
    assert GPTConfig.from_dict(good) == GPTConfig(vocab_size=97)
    with pytest.raises(ConfigError, match="unknown keys: colour"):
        GPTConfig.from_dict(dict(good, colour=1))
    with pytest.raises(ConfigError, match="missing keys: n_layer"):
        GPTConfig.from_dict({k: v for k, v in good.items() if k != "n_layer"})
    with pytest.raises(ConfigError, match="unknown model size"):
        preset_config("huge", 100)
