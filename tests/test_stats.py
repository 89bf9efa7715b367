"""Hook statistics equal a direct computation on the same inputs."""

import torch

from calibration.layers import layer_table
from calibration.models import load, resolve
from calibration.stats import collect


def test_hook_statistics_match_direct_computation(tiny_llama_dir):
    source = resolve(str(tiny_llama_dir))
    model, _ = load(source)
    layers = layer_table(model, source.gguf_arch)
    torch.manual_seed(0)
    batches = [torch.randint(0, model.config.vocab_size, (2, 32)) for _ in range(3)]

    seen = {layer.name: [] for layer in layers}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(lambda m, inp, n=n: seen[n].append(inp[0].detach().clone()))
               for n in seen]
    stats = collect(model, layers, batches)
    for h in handles:
        h.remove()

    for layer in layers:
        x = torch.cat([t.reshape(-1, layer.in_features) for t in seen[layer.name]]).double()
        assert x.shape[0] == 3 * 2 * 32
        s = stats[layer.name]
        assert s.count == x.shape[0]
        torch.testing.assert_close(s.max_abs, x.abs().amax(0))
        torch.testing.assert_close(s.mean_abs, x.abs().mean(0))
        torch.testing.assert_close(s.mean_sq, (x * x).mean(0))
    # q, k, v share their input; o does not
    assert torch.equal(stats[layers[0].name].sum_sq, stats[layers[2].name].sum_sq)
    assert not torch.equal(stats[layers[0].name].sum_sq, stats[layers[3].name].sum_sq)


def test_the_head_runs_on_the_last_position_only_and_statistics_do_not_change(tiny_llama_dir):
    source = resolve(str(tiny_llama_dir))
    model, _ = load(source)
    layers = layer_table(model, source.gguf_arch)
    torch.manual_seed(1)
    batches = [torch.randint(0, model.config.vocab_size, (2, 16)) for _ in range(2)]
    head_positions = []
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda m, inp: head_positions.append(inp[0].shape[-2]))
    stats = collect(model, layers, batches)
    handle.remove()
    assert head_positions == [1, 1]  # the full model would run the head on all 16 positions

    seen = {layer.name: torch.zeros(layer.in_features, dtype=torch.float64) for layer in layers}
    modules = dict(model.named_modules())

    def record(name):
        def hook(_m, inp):
            x = inp[0].reshape(-1, inp[0].shape[-1]).double()
            seen[name].add_((x * x).sum(0))
        return hook

    handles = [modules[n].register_forward_pre_hook(record(n)) for n in seen]
    with torch.no_grad():
        for batch in batches:
            model(input_ids=batch, use_cache=False)  # every position's logits, as a plain forward
    for h in handles:
        h.remove()
    for layer in layers:
        assert torch.equal(stats[layer.name].sum_sq, seen[layer.name]), layer.name
