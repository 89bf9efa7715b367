"""The base model's logits per window, kept on disk between `halo bench` runs (`--base-cache DIR`).

A benchmark measures many files against one base, and the base's forward pass is the same every time: half the
work of each KL divergence. llama.cpp saves it once (`llama-perplexity --kl-divergence-base`), as 16-bit
quantized log-probabilities; here the float32 logits that llama.cpp returned are saved as they are, so a run
that reads them gives bit for bit the numbers of one that decodes the base again. An entry is a folder named
by a hash of everything that could change those logits: the contents of the base file and the text file (not
their paths or modification times: a data folder copied again, or a model reinstalled unchanged, keeps its
entry), the window size, the thread count and the llama-cpp-python version. Each window is one `.npy` file of
(scored positions, vocabulary) float32 values, written under a temporary name and renamed; a file that cannot
be read back is decoded and written again. Size: scored positions x vocabulary x 4 bytes per window
(SmolLM2-135M: 50 MB, Gemma 3 270M: 268 MB at ctx 512).
"""

from pathlib import Path

import numpy as np

from ramputils.atomic import replacing, write_json
from ramputils.errors import UserError
from ramputils.hashing import file_sha256, json_sha256


class BaseLogits:
    """Cached float32 logits of the base model, one file per window."""

    def __init__(self, folder, base, text_file, n_ctx: int, threads: int, n_vocab: int, backend: dict | None = None):
        import llama_cpp

        # contents, not paths or mtimes (a second per GB of base; a bench takes minutes)
        ident = {"base": file_sha256(base), "text": file_sha256(text_file), "n_ctx": int(n_ctx),
                 "threads": int(threads), "llama_cpp_python": llama_cpp.__version__}
        if backend and backend["gpu_layers"]:  # a GPU's arithmetic gives other logits than the CPU's
            ident |= {"devices": backend["devices"], "gpu_layers": backend["gpu_layers"]}
        key = json_sha256(ident)[:16]
        self.folder = Path(folder) / key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot use {folder} as the base cache: {exc.strerror}") from None
        self.shape = (n_ctx - n_ctx // 2 - 1, int(n_vocab))
        about = self.folder / "about.json"
        if not about.exists():  # for a person looking at the folder; never read back
            write_json(about, {**ident, "base_path": str(Path(base).resolve()),
                               "text_path": str(Path(text_file).resolve())})

    def _path(self, index: int) -> Path:
        return self.folder / f"w{index:05d}.npy"

    def get(self, index: int) -> np.ndarray | None:
        """Window `index`'s logits, or None when not cached (or unreadable, or of another shape)."""
        path = self._path(index)
        if not path.exists():
            return None
        try:
            logits = np.load(path)
        except (OSError, ValueError, EOFError):
            return None
        return logits if logits.shape == self.shape and logits.dtype == np.float32 else None

    def put(self, index: int, logits: np.ndarray) -> None:
        assert logits.shape == self.shape and logits.dtype == np.float32, (logits.shape, logits.dtype)
        with replacing(self._path(index), "wb") as handle:
            np.save(handle, logits)
