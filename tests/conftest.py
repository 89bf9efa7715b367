"""Shared fixtures: tiny random models built in the test session (fast, every row divisible by 256)."""

import pytest


def build_tiny_llama(path, seed: int = 0, vocab_size: int | None = None, layers: int = 2, tie: bool = True,
                     arch: str = "llama"):
    """A random decoder (hidden 256, intermediate 512) saved as a Hugging Face directory with a tokenizer.

    `arch` is llama, qwen2 or gemma3 (text).  The tokenizer is SmolLM2's, taken from the default GGUF,
    so real text tokenizes; the vocabulary is the tokenizer's unless `vocab_size` is given.
    """
    import torch
    import transformers
    from transformers import AutoTokenizer

    from calibration.models import default_gguf

    gguf = default_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(seed)
    config_cls, model_cls = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                             "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
                             "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM")}[arch]
    extra = {"head_dim": 64, "sliding_window": 64} if arch == "gemma3" else {}
    config = getattr(transformers, config_cls)(
        vocab_size=vocab_size or len(tokenizer), hidden_size=256, intermediate_size=512,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=tie, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **extra)
    model = getattr(transformers, model_cls)(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A 2-block random Llama with SmolLM2's tokenizer (vocabulary 49152)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory):
    """A short English text file: the first 400 lines of the WikiText-2 validation split."""
    from calibration.paths import wikitext2

    lines = wikitext2("valid").read_text(encoding="utf-8").splitlines()[:400]
    path = tmp_path_factory.mktemp("text") / "calib.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_cal(tiny_llama_dir, tmp_path_factory):
    """The tiny model's calibration (4 x 64 tokens of WikiText-2 validation), shared by the search tests."""
    from calibration.pipeline import CalibrationConfig, calibrate

    return calibrate(CalibrationConfig(model=str(tiny_llama_dir), samples=4, seq_len=64),
                     tmp_path_factory.mktemp("tiny-cal") / "cal")


FAST_SEARCH = dict(episodes=6, eval_samples=2, eval_seq_len=64)
FAST_SAC = dict(warmup_episodes=2, updates_per_episode=4)


def fast_config(model, cal, **kw):
    """A short search of `model` on calibration `cal` (the settings of the search tests), `kw` overriding; SAC's
    own settings only for SAC (the search refuses options its method would ignore)."""
    from ramp.config.options import search_config

    sac = FAST_SAC if kw.get("algo", "sac") == "sac" else {}
    return search_config(model=str(model), calibration=str(cal.path), **(FAST_SEARCH | sac | kw))
