"""Multiple-choice accuracy: PIQA, WinoGrande, BoolQ, ARC-Easy/Challenge (jsonl) and HellaSwag.

Every choice is a token sequence tokenize(context + continuation) (BOS in front when the model adds
BOS) whose last tokens, the continuation's, are scored by their log-likelihood under the model.
The tokens all choices share are decoded once; each choice then only decodes its own tail on top of
that KV cache.

- jsonl tasks (`{"query","choices","gold"}`, lm-evaluation-harness style): continuation = " " +
  choice (no space when the query ends in whitespace); the scored tokens are those after the
  longest common prefix of tokenize(query) and tokenize(query + continuation).  acc = argmax of the
  summed log-likelihood, acc_norm = argmax of the sum divided by the continuation's UTF-8 bytes
  (lm-evaluation-harness's byte-length normalisation).
- winogrande.jsonl (`{"context_options","continuation","gold"}`): the harness's partial scoring, the
  same continuation " " + continuation scored after each context option; acc_norm equals acc there.
- HellaSwag (`hellaswag_val_full.txt.bz2`, 6 lines a task as `llama-perplexity --hellaswag` reads:
  context, gold index, 4 endings): as perplexity.cpp's `hellaswag_score`, each sequence is
  tokenize(context + " " + ending), the scored tokens are those after the common prefix of the four
  sequences, and acc_norm = argmax of the mean log-likelihood per scored token (llama.cpp's
  HellaSwag score); acc = argmax of the sum.

`limit` takes the first N items of each file in file order (llama.cpp draws HellaSwag tasks at
random instead), so a subset is deterministic and the same for every model.
"""

import bz2
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ramputils.errors import UserError

from . import Model, log_softmax

TASKS = ("piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq")
TASK_CONTEXT = 2048  # context of the tasks' llama.cpp instance; longer items lose tokens on the left


@dataclass(frozen=True)
class Item:
    """One question: a context and a continuation per choice, the gold index, how to score."""

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int
    common_prefix: bool = False  # True: score after the choices' common prefix (llama.cpp HellaSwag)


def check_tasks(names) -> tuple[str, ...]:
    """The task names, validated; an unknown one is a UserError."""
    names = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UserError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    return names


def task_file(name: str) -> Path:
    from calibration.paths import data_dir

    path = data_dir() / "tasks" / ("hellaswag_val_full.txt.bz2" if name == "hellaswag" else f"{name}.jsonl")
    if not path.is_file():
        raise UserError(f"task data not found: {path}")
    return path


def _jsonl_item(row: dict) -> Item:
    if "context_options" in row:
        cont = " " + row["continuation"]
        return Item(tuple(row["context_options"]), (cont,) * len(row["context_options"]), int(row["gold"]))
    query = row["query"]
    sep = "" if query[-1:].isspace() else " "
    return Item((query,) * len(row["choices"]), tuple(sep + c for c in row["choices"]), int(row["gold"]))


def load_items(name: str, limit: int | None = None) -> list[Item]:
    """The first `limit` items (all when None) of task `name`."""
    path = task_file(check_tasks([name])[0])
    items = []
    if name == "hellaswag":
        lines = bz2.open(path, "rt", encoding="utf-8").read().split("\n")
        for i in range(0, len(lines) - 5, 6):
            if limit is not None and len(items) >= limit:
                break
            context, endings = lines[i], lines[i + 2:i + 6]
            items.append(Item((context,) * 4, tuple(" " + e for e in endings), int(lines[i + 1]), True))
        return items
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(items) >= limit:
                break
            if line.strip():
                items.append(_jsonl_item(json.loads(line)))
    return items


def _common_prefix(a, b) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def sequences(model: Model, item: Item) -> tuple[list[np.ndarray], list[int]]:
    """Each choice's tokens and the index of its first scored token."""
    seqs = [model.tokenize(c + t) for c, t in zip(item.contexts, item.continuations)]
    if item.common_prefix:
        shared = min(_common_prefix(seqs[0], s) for s in seqs)
        starts = [shared] * len(seqs)
    else:
        starts = [_common_prefix(model.tokenize(c), s) for c, s in zip(item.contexts, seqs)]
    starts = [min(max(start, 1), len(s) - 1) for start, s in zip(starts, seqs)]
    cut = max(len(s) for s in seqs) - model.n_ctx
    if cut > 0:  # keep the last n_ctx tokens of every choice
        cut = min(cut, min(starts) - 1)
        seqs, starts = [s[cut:] for s in seqs], [start - cut for start in starts]
    return seqs, starts


def choice_logprobs(model: Model, seqs: list[np.ndarray], starts: list[int]) -> list[np.ndarray]:
    """Log-probability of each scored token of each choice; the shared prefix is decoded once."""
    prefix = min(min(_common_prefix(seqs[0], s) for s in seqs), min(starts))
    model.forget(0)
    head = model.decode(seqs[0][:prefix]) if prefix > 0 else np.zeros((0, model.n_vocab), np.float32)
    result = []
    for seq, start in zip(seqs, starts):
        model.forget(prefix)
        pos = np.arange(prefix, len(seq))
        rows = model.decode(seq[prefix:], prefix, (pos >= start - 1) & (pos < len(seq) - 1))
        if start == prefix:  # its first scored token is predicted by the prefix's last row
            rows = np.concatenate([head, rows])
        logp = log_softmax(rows)  # row k predicts seq[start + k]
        result.append(logp[np.arange(len(logp)), seq[start:]])
    return result


def score_item(model: Model, item: Item) -> dict:
    """Per-choice sums and normalised scores, and which choice wins each."""
    logps = choice_logprobs(model, *sequences(model, item))
    sums = np.array([lp.sum() for lp in logps])
    if item.common_prefix:
        norms = np.array([lp.mean() for lp in logps])
    else:
        norms = sums / np.array([len(c.encode("utf-8")) for c in item.continuations])
    return {"sums": sums, "norms": norms, "pred": int(sums.argmax()), "pred_norm": int(norms.argmax())}


def _binomial_err(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / max(1, n - 1)))


def evaluate(model: Model, name: str, limit: int | None = None, progress: bool = True) -> dict:
    """acc and acc_norm (± binomial standard error) of `model` on the first `limit` items of `name`."""
    start = time.perf_counter()
    items = load_items(name, limit)
    hits, hits_norm = [], []
    for item in tqdm(items, desc=name, unit="item", disable=not progress):
        scores = score_item(model, item)
        hits.append(scores["pred"] == item.gold)
        hits_norm.append(scores["pred_norm"] == item.gold)
    n = len(items)
    acc, acc_norm = float(np.mean(hits)), float(np.mean(hits_norm))
    return {"acc": acc, "acc_err": _binomial_err(acc, n), "acc_norm": acc_norm,
            "acc_norm_err": _binomial_err(acc_norm, n),
            "norm": "token" if name == "hellaswag" else "byte", "n": n,
            "seconds": time.perf_counter() - start}


def run_tasks(path, names, limit: int | None = None, threads: int | None = None, progress: bool = True,
              gpu_layers: int = 0) -> dict:
    """Accuracy of GGUF `path` on each task in `names`."""
    names = check_tasks(names)
    if not names:
        return {}
    with Model(path, n_ctx=TASK_CONTEXT, threads=threads, gpu_layers=gpu_layers) as model:
        return {name: evaluate(model, name, limit, progress) for name in names}
