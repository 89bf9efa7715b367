"""`halo bench`: perplexity, KL divergence, task scoring, speed and the CLI, against llama.cpp itself.

Small settings keep it fast: windows of 128 tokens, 2 windows, a few task items, on the default
SmolLM2-135M GGUF and copies of it quantized by llama.cpp to Q8_0 and Q4_0.
"""

import json
import os

import numpy as np
import pytest

from calibration.models import default_gguf
from calibration.paths import wikitext2
from halo.measure.backend import can_offload
from ramputils.errors import run_cli

N_CTX, CHUNKS = 128, 2
THREADS = 1  # the test machine is shared: one thread never waits on a descheduled peer


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """The first 120 lines of wiki.test.raw: enough for a few 128-token windows, quick to tokenize."""
    lines = wikitext2("test").read_text(encoding="utf-8").splitlines(keepends=True)[:120]
    path = tmp_path_factory.mktemp("text") / "wiki-head.raw"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _quantize(src, dst, ftype):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = THREADS
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) == 0
    return dst


@pytest.fixture(scope="module")
def requantized(tmp_path_factory):
    """The default model requantized by llama.cpp: {"q8_0": path, "q4_0": path}."""
    import llama_cpp

    folder = tmp_path_factory.mktemp("requant")
    return {name: _quantize(default_gguf(), folder / f"{name}.gguf", ftype)
            for name, ftype in (("q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0),
                                ("q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0))}


def _direct_nll(path, text_file, n_ctx, chunks):
    """Per-token NLL recomputed with llama-cpp-python's high-level API (all logits of each window)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, flash_attn=True,
                          n_threads=THREADS, verbose=False)
    add_bos = llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model))
    tokens = llm.tokenize(text_file.read_text(encoding="utf-8").encode(), add_bos=True)
    nll = []
    for c in range(chunks):
        window = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        if add_bos:
            window[0] = llm.token_bos()
        llm.reset()
        llm.eval(window)
        for pos in range(n_ctx // 2, n_ctx - 1):
            logprobs = llama_cpp.Llama.logits_to_logprobs(llm.scores[pos])
            nll.append(-float(logprobs[tokens[c * n_ctx + pos + 1]]))
    llm.close()
    return np.array(nll)


def test_perplexity_equals_direct_recomputation(text_file):
    from halo.measure.perplexity import perplexity

    result = perplexity(default_gguf(), text_file, n_ctx=N_CTX, max_chunks=CHUNKS, threads=THREADS,
                        progress=False)
    nll = _direct_nll(default_gguf(), text_file, N_CTX, CHUNKS)
    assert result["tokens"] == len(nll) == CHUNKS * (N_CTX - N_CTX // 2 - 1)
    assert result["ppl"] == pytest.approx(np.exp(nll.mean()), rel=1e-4)
    spread = np.sqrt(((nll ** 2).mean() - nll.mean() ** 2) / (len(nll) - 1))
    assert result["ppl_err"] == pytest.approx(spread * np.exp(nll.mean()), rel=1e-3)


def test_perplexity_needs_two_windows(text_file):
    from halo.measure.perplexity import perplexity
    from ramputils.errors import UserError

    with pytest.raises(UserError, match="needs at least"):
        perplexity(default_gguf(), text_file, n_ctx=1 << 14, max_chunks=1, progress=False)


def test_kld_of_a_file_against_itself_is_zero(text_file):
    from halo.measure.kld import kl_divergence

    r = kl_divergence(default_gguf(), default_gguf(), text_file, N_CTX, CHUNKS, THREADS, progress=False)
    assert r["kld_mean"] == 0 and r["kld_max"] == 0 and r["same_top"] == 1.0
    assert r["ppl"] == r["ppl_base"] and r["ppl_delta"] == 0


def test_kld_grows_with_coarser_quantization(text_file, requantized):
    from halo.measure.kld import kl_divergence
    from halo.measure.perplexity import perplexity

    base = default_gguf()
    q8 = kl_divergence(requantized["q8_0"], base, text_file, N_CTX, CHUNKS, THREADS, progress=False)
    q4 = kl_divergence(requantized["q4_0"], base, text_file, N_CTX, CHUNKS, THREADS, progress=False)
    assert 0 < q8["kld_mean"] < q4["kld_mean"]
    assert q8["same_top"] > q4["same_top"] and q4["same_top"] < 1
    assert q4["kld_median"] <= q4["kld_p99"] <= q4["kld_max"]
    alone = perplexity(requantized["q4_0"], text_file, N_CTX, CHUNKS, THREADS, progress=False)
    assert q4["ppl"] == pytest.approx(alone["ppl"], rel=1e-9)
    assert q4["ppl_delta"] == pytest.approx(q4["ppl"] - q4["ppl_base"])


def test_cached_base_logits_give_the_same_numbers(text_file, requantized, tmp_path):
    """A cached run writes the base's logits, the next one reads them: both give the uncached numbers exactly."""
    from halo.measure.kld import kl_divergence

    def kld(threads=THREADS, cache=tmp_path):
        r = kl_divergence(requantized["q4_0"], default_gguf(), text_file, N_CTX, CHUNKS, threads, progress=False,
                          base_cache=cache)
        return {k: v for k, v in r.items() if k != "seconds"}

    plain = kld(cache=None)
    assert kld() == plain
    saved = sorted(tmp_path.glob("*/w*.npy"))
    assert len(saved) == CHUNKS and not list(tmp_path.glob("*/*.tmp"))
    assert kld() == plain
    logits = np.load(saved[0])  # the next run reads the files: altered logits change its numbers
    np.save(saved[0], logits[:, ::-1].copy())
    assert kld()["kld_mean"] != plain["kld_mean"]
    saved[0].write_bytes(b"damaged")  # a file that does not read back is decoded and written again
    assert kld() == plain and np.array_equal(np.load(saved[0]), logits)
    stat = text_file.stat()  # the same text with a new modification time (a data folder copied again): same entry
    os.utime(text_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**12))
    assert kld() == plain and len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1
    kld(threads=2)  # another thread count is another entry
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_bits_per_weight_follow_the_type(requantized):
    from halo.measure.run import file_stats

    q8, q4 = file_stats(requantized["q8_0"]), file_stats(requantized["q4_0"])
    assert q8["params"] == q4["params"] > 100e6
    assert 8.5 < q8["bpw"] < 9.5 and 4.5 < q4["bpw"] < 5.5  # 34 and 18 bytes per 32 weights, plus metadata


def _direct_choice_sums(path, seqs, starts):
    """Sum of log-probs of seq[start:] decoding each whole sequence from scratch (high-level API)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=2048, n_batch=512, logits_all=True, flash_attn=True,
                          n_threads=THREADS, verbose=False)
    sums = []
    for seq, start in zip(seqs, starts):
        llm.reset()
        llm.eval(list(seq))
        logprobs = np.stack([llama_cpp.Llama.logits_to_logprobs(llm.scores[p - 1]) for p in range(start, len(seq))])
        sums.append(float(logprobs[np.arange(len(logprobs)), seq[start:]].sum()))
    llm.close()
    return np.array(sums)


@pytest.mark.parametrize("task, index", [("piqa", 0), ("piqa", 3), ("hellaswag", 1)])
def test_task_scoring_matches_direct_loglikelihood(task, index):
    from halo.measure import Model
    from halo.measure.tasks import load_items, score_item

    item = load_items(task, index + 1)[index]
    with Model(default_gguf(), n_ctx=2048, threads=THREADS) as model:
        scores = score_item(model, item)
        seqs = [model.tokenize(c + t) for c, t in zip(item.contexts, item.continuations)]
        if task == "hellaswag":  # llama.cpp: after the common prefix of the four sequences
            n = min(len(s) for s in seqs)
            same = np.all([s[:n] == seqs[0][:n] for s in seqs], axis=0)
            starts = [int(np.argmin(same))] * len(seqs)
        else:  # the query ends in "\n", so its tokens are a prefix of every sequence
            query = model.tokenize(item.contexts[0])
            assert all((s[:len(query)] == query).all() for s in seqs)
            starts = [len(query)] * len(seqs)
    direct = _direct_choice_sums(default_gguf(), seqs, starts)
    np.testing.assert_allclose(scores["sums"], direct, rtol=1e-4)
    assert scores["pred"] == int(direct.argmax())
    lengths = [len(s) - start for s, start in zip(seqs, starts)]
    expected_norm = direct / lengths if task == "hellaswag" else \
        direct / [len(t.encode()) for t in item.continuations]
    assert scores["pred_norm"] == int(np.argmax(expected_norm))


def test_task_accuracy_over_a_few_items():
    from halo.measure.tasks import run_tasks

    result = run_tasks(default_gguf(), ["winogrande", "arc_easy"], limit=4, threads=THREADS, progress=False)
    for name in ("winogrande", "arc_easy"):
        assert result[name]["n"] == 4 and 0 <= result[name]["acc"] <= 1
    assert result["winogrande"]["acc"] == result["winogrande"]["acc_norm"]  # one shared continuation


def test_speed_reports_tokens_per_second():
    from halo.measure.speed import speed

    result = speed(default_gguf(), n_prompt=64, n_gen=8, reps=1, threads=THREADS, progress=False)
    assert result["pp64"] > 0 and result["tg8"] > 0 and len(result["pp64_runs"]) == 1


def _cli(argv, capfd):
    from halo.cli import main

    try:
        code = run_cli(main, argv)
    except SystemExit as exc:   # argparse's own one-line usage errors
        code = exc.code
    out, err = capfd.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize("case, pattern", [("missing", "not found"), ("corrupt", "not a readable GGUF"),
                                           ("task", "unknown task 'mmlu'"), ("base", "not found"),
                                           ("cache", "needs a base file"), ("cache-file", "as the base cache")])
def test_cli_bad_input_is_one_line(case, pattern, tmp_path, capfd):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 40)
    target = {"missing": tmp_path / "none.gguf", "corrupt": bad}.get(case, default_gguf())
    argv = ["bench", str(target), "--no-speed", "--threads", "1", "--max-chunks", "1",
            "--json", str(tmp_path / "out.json")]
    argv += {"task": ["--tasks", "piqa,mmlu"], "base": ["--base", str(tmp_path / "none.gguf")],
             "cache": ["--base-cache", str(tmp_path / "cache")],
             "cache-file": ["--base", str(default_gguf()), "--base-cache", str(bad)]}.get(case, [])
    code, out, err = _cli(argv, capfd)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:") and pattern in err, err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("value, pattern", [("-3", "a number of layers (0 or more) or all"),
                                            ("some", "a number of layers (0 or more) or all"),
                                            ("all", "no GPU backend (CPU only)"), ("4", "no GPU backend (CPU only)")])
def test_cli_gpu_layers_errors(value, pattern, tmp_path, capfd):
    if "GPU backend" in pattern and can_offload():
        pytest.skip("this llama.cpp build has a GPU backend")
    code, out, err = _cli(["bench", str(default_gguf()), "--gpu-layers", value, "--no-speed", "--max-chunks", "1",
                           "--json", str(tmp_path / "out.json")], capfd)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:") and pattern in err, err
    assert not (tmp_path / "out.json").exists()


def test_gpu_layers_default_and_forwarding(monkeypatch):
    """--gpu-layers reaches llama.cpp's n_gpu_layers (-1 = all); the default is all only with a GPU backend."""
    import llama_cpp

    from halo.measure import Model, backend

    assert backend.gpu_layers(None) == (-1 if can_offload() else 0) and backend.gpu_layers(0) == 0
    seen = []
    real = llama_cpp.Llama.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["n_gpu_layers"])
        real(self, *args, **kwargs)
    monkeypatch.setattr(llama_cpp.Llama, "__init__", spy)
    with Model(default_gguf(), n_ctx=64, threads=THREADS, gpu_layers=0) as model:
        assert model.backend["gpu_layers"] == 0 and model.backend["n_layer"] == 30
    assert seen == [0]


def test_cli_writes_json(tmp_path, text_file, capfd):
    out = tmp_path / "bench.json"
    code, table, err = _cli(["bench", str(default_gguf()), "--max-chunks", "1", "--ctx", "128", "--tasks", "piqa",
                             "--limit", "2", "--no-speed", "--threads", "1", "--json", str(out)], capfd)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["perplexity"]["chunks"] == 1 and result["tasks"]["piqa"]["n"] == 2
    assert "speed" not in result and "PPL" in table and "piqa" in table
    backend = result["backend"]   # where llama.cpp ran it: by default every layer on a GPU when the build has one
    assert backend["n_layer"] == 30 and backend["devices"] and "backend" in table
    if not can_offload():
        assert backend["backend"] == "CPU" and backend["gpu_layers"] == 0 and backend["devices"][0].startswith("CPU")
    else:
        assert backend["gpu_layers"] == 31 and backend["backend"] != "CPU"
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left behind
