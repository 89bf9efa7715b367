"""The importance matrix HALO quantizes with: llama.cpp's imatrix quantity from a calibration artifact.

llama-imatrix stores, per weight matrix, the mean of x^2 over calibration tokens for each input
channel; the calibration artifact holds exactly that (`act_mean_sq`).  After scale folding the layer
sees x / s, so its importance becomes mean x^2 / s^2 (`halo.fold.folded_imatrix`).  The same values
feed the export and the search's evaluator, so both quantize identically.
"""

import numpy as np

from halo.fold import FoldScales, folded_imatrix


def layer_imatrix(calibration, layer, scales: FoldScales | None = None) -> np.ndarray:
    """Per-input-channel importance of `layer` (a calibration Layer), folding applied when given."""
    mean_sq = calibration.channel(layer.gguf_name, "act_mean_sq")
    scale = scales.for_layer(layer.name) if scales is not None else None
    return np.ascontiguousarray(folded_imatrix(mean_sq, scale), dtype=np.float32)


def imatrix_table(calibration, scales: FoldScales | None = None) -> dict[str, np.ndarray]:
    """{GGUF tensor name: importance} for every quantizable layer (what llama-quantize --imatrix reads)."""
    return {layer.gguf_name: layer_imatrix(calibration, layer, scales) for layer in calibration.layers}
