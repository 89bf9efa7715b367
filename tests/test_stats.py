"""Hook statistics equal a direct computation on the same inputs."""

from contextlib import contextmanager

import pytest
import torch

from calibration.layers import layer_table
from calibration.models import load, resolve
from calibration.stats import collect


@pytest.fixture()
def model_and_layers(tiny_llama_dir):
    source = resolve(str(tiny_llama_dir))
    model, _ = load(source)
    return model, layer_table(model, source.gguf_arch)


@contextmanager
def recorded_inputs(model, layers):
    """Each layer's inputs, as (rows, in_features) float64 copies, while the block runs."""
    seen = {layer.name: [] for layer in layers}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(
        lambda m, inp, n=n: seen[n].append(inp[0].detach().reshape(-1, inp[0].shape[-1]).double())) for n in seen]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def test_hook_statistics_match_direct_computation(model_and_layers):
    model, layers = model_and_layers
    torch.manual_seed(0)
    batches = [torch.randint(0, model.config.vocab_size, (2, 32)) for _ in range(3)]
    with recorded_inputs(model, layers) as seen:
        stats = collect(model, layers, batches)

    for layer in layers:
        x = torch.cat(seen[layer.name])
        assert x.shape[0] == 3 * 2 * 32
        s = stats[layer.name]
        assert s.count == x.shape[0]
        torch.testing.assert_close(s.max_abs, x.abs().amax(0))
        torch.testing.assert_close(s.mean_abs, x.abs().mean(0))
        torch.testing.assert_close(s.mean_sq, (x * x).mean(0))
    # q, k, v share their input; o does not
    assert torch.equal(stats[layers[0].name].sum_sq, stats[layers[2].name].sum_sq)
    assert not torch.equal(stats[layers[0].name].sum_sq, stats[layers[3].name].sum_sq)


def test_the_head_runs_on_the_last_position_only_and_statistics_do_not_change(model_and_layers):
    model, layers = model_and_layers
    torch.manual_seed(1)
    batches = [torch.randint(0, model.config.vocab_size, (2, 16)) for _ in range(2)]
    head_positions = []
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda m, inp: head_positions.append(inp[0].shape[-2]))
    stats = collect(model, layers, batches)
    handle.remove()
    assert head_positions == [1, 1]  # the full model would run the head on all 16 positions

    with recorded_inputs(model, layers) as seen, torch.no_grad():
        for batch in batches:
            model(input_ids=batch, use_cache=False)  # every position's logits, as a plain forward
    for layer in layers:
        expected = torch.zeros(layer.in_features, dtype=torch.float64)
        for x in seen[layer.name]:  # summed per batch, in order, as collect does
            expected += (x * x).sum(0)
        assert torch.equal(stats[layer.name].sum_sq, expected), layer.name
