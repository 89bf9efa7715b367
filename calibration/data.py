"""Calibration and search-evaluation text as fixed-length token windows.

A text is tokenized once into one stream, then split in two regions: the first
`1 - EVAL_FRACTION` of the tokens feeds calibration, the last `EVAL_FRACTION` feeds the search's
evaluation.  Windows never cross the cut and never overlap, so calibration and evaluation
sequences are disjoint by construction, whatever their counts.  Which windows are drawn is fixed
by the seed.  As llama.cpp's perplexity and imatrix tools do, a window starts with BOS when the
tokenizer adds one.
"""

from dataclasses import dataclass
from pathlib import Path

from ramputils.errors import UserError
from ramputils.hashing import text_sha256

from .paths import wikitext2

EVAL_FRACTION = 0.2
DEFAULT_DATA = "wikitext2"


@dataclass(frozen=True)
class Text:
    label: str      # what it is, for manifests and logs
    text: str
    sha256: str


def load_text(spec: str = DEFAULT_DATA) -> Text:
    """`wikitext2` (the validation split), a text file path, or `hf:NAME[:CONFIG]:SPLIT` from datasets."""
    if spec in ("wikitext2", "wikitext2-valid"):
        path = wikitext2("valid")
        return _file_text(path, label=f"wikitext-2 valid ({path.name})")
    if spec.startswith("hf:"):
        return _datasets_text(spec[3:])
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"data file not found: {spec}")
    return _file_text(path, label=str(path))


def _file_text(path: Path, label: str) -> Text:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} as UTF-8 text ({exc.__class__.__name__})") from None
    if not text.strip():
        raise UserError(f"data file {path} is empty")
    return Text(label=label, text=text, sha256=text_sha256(text))


def _datasets_text(name: str) -> Text:
    parts = name.split(":")
    if len(parts) not in (2, 3):
        raise UserError("datasets source must be hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT")
    split = parts[-1]
    try:
        import datasets

        ds = datasets.load_dataset(*parts[:-1], split=split)
    except Exception as exc:
        raise UserError(f"cannot load dataset {name!r} ({exc.__class__.__name__}); offline, "
                        "pass a text file with --data PATH") from None
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    text = "\n".join(str(row) for row in ds[column])
    return Text(label=f"datasets {name}", text=text, sha256=text_sha256(text))


def bos_id(tokenizer) -> int | None:
    """The BOS id when the tokenizer adds one to a fresh sequence, else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos if ids and ids[0] == bos else None


def tokenize(tokenizer, text: str):
    """The whole text as one 1-D LongTensor of token ids (no special tokens)."""
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def _windows(tokens, start: int, stop: int, count: int, seq_len: int, seed: int, bos: int | None, what: str,
             skip: int = 0):
    import torch

    available = (stop - start) // seq_len
    if count + skip > available:
        raise UserError(f"the {what} part of the data ({stop - start} tokens) holds only {available} windows of "
                        f"{seq_len} tokens, fewer than the {count + skip} asked for; lower the count or --seq-len, "
                        "or give more text")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(available, generator=generator)[skip:skip + count]
    out = torch.stack([tokens[start + int(p) * seq_len: start + (int(p) + 1) * seq_len] for p in picks])
    if bos is not None:
        out[:, 0] = bos
    return out


def split_point(n_tokens: int) -> int:
    return int(n_tokens * (1 - EVAL_FRACTION))


def calibration_windows(tokens, samples: int, seq_len: int, seed: int, bos: int | None = None):
    """`samples` windows of `seq_len` tokens from the calibration region, as a (samples, seq_len) tensor."""
    if samples < 1 or seq_len < 2:
        raise UserError(f"need at least 1 sample of at least 2 tokens (got --samples {samples}, --seq-len {seq_len})")
    return _windows(tokens, 0, split_point(len(tokens)), samples, seq_len, seed, bos, "calibration")


def evaluation_windows(tokens, count: int, seq_len: int, seed: int, bos: int | None = None, skip: int = 0):
    """`count` windows from the evaluation region, disjoint from every calibration window; `skip` passes over the
    first windows of the seed's draw, so `skip=n` gives windows disjoint from those of `count=n` (a confirmation
    split beside the search's windows)."""
    if count < 1 or seq_len < 2:
        raise UserError(f"need at least 1 evaluation window of at least 2 tokens (got {count} x {seq_len})")
    return _windows(tokens, split_point(len(tokens)), len(tokens), count, seq_len, seed + 1, bos, "evaluation", skip)
