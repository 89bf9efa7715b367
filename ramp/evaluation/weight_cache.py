"""The quantized weights the search swaps into the model: exactly what `halo export` writes, decoded.

For every quantizable layer and every candidate GGUF type (the type llama.cpp really writes, i.e.
`Choice.actual` after the row-size fallback) the cache holds the layer's weight as llama.cpp will
see it: `ggml.dequantize(exporter.quantize_layer(W, type, imatrix))` of the (possibly scale-folded)
transformers-layout weight, with the export's own importance matrix.  Three memory plans:

* ``dequantized`` — float tensors for every layer x type, on the model's device when they fit there
  (else in host memory).  Applying an allocation swaps `module.weight.data` to the cached tensor:
  no copy on the device that holds them.
* ``bytes`` — the quantized rows (uint8) in host memory; applying decodes them with gguf-py.
* ``on-the-fly`` — nothing cached; applying quantizes and decodes.

``auto`` picks the first plan whose storage fits in half of the free memory (psutil, or
/proc/meminfo; the CUDA allocator's free memory for a device cache) and says so in a log line.
The original weight tensors are kept; `restore()` puts them back (type ``None`` = base weights).
A model evaluated in bfloat16 or float16 passes `source`, its float32 weights: the cache quantizes those (the bytes
the export writes) and only rounds the decoded result to the model's precision.
"""

import logging
from collections.abc import Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from calibration.memory import HEADROOM, free_host_memory
from halo import exporter, ggml, qtypes
from ramputils.errors import UserError

QType = qtypes.QType
PLANS = ("dequantized", "bytes", "on-the-fly")

log = logging.getLogger(__name__)


def free_device_memory(device: torch.device) -> int:
    """Free bytes on `device` (host memory for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return free_host_memory()


def encode(weight: np.ndarray, qtype: QType, imatrix: np.ndarray | None) -> np.ndarray:
    """What the export writes for one layer: libggml's bytes (uint8), or floats in F16/F32."""
    data = exporter.quantize_layer(weight, qtype, imatrix)
    return np.asarray(data, dtype=np.float16) if qtype == QType.F16 else data


def decode(data: np.ndarray, qtype: QType, shape: tuple[int, int]) -> np.ndarray:
    """The float32 weights llama.cpp computes with, from `encode`'s output."""
    if data.dtype != np.uint8:
        return np.asarray(data, dtype=np.float32).reshape(shape)
    return ggml.dequantize(data, qtype, shape)


def storage_bytes(layers, candidates: dict, float_bytes: int) -> dict[str, int]:
    """Memory each plan needs: floats of `float_bytes` each, or quantized rows."""
    floats = quantized = 0
    for layer in layers:
        shape = (layer.out_features, layer.in_features)
        for qtype in candidates[layer.gguf_name]:
            floats += layer.params * float_bytes
            quantized += qtypes.tensor_bytes(qtype, shape)
    return {"dequantized": floats, "bytes": quantized, "on-the-fly": 0}


def choose_plan(need: dict[str, int], free_device: int, free_host: int) -> tuple[str, str]:
    """(plan, where the cache lives: "device" or "host") for the first plan that fits."""
    if need["dequantized"] <= HEADROOM * free_device:
        return "dequantized", "device"
    if need["dequantized"] <= HEADROOM * free_host:
        return "dequantized", "host"
    if need["bytes"] <= HEADROOM * free_host:
        return "bytes", "host"
    return "on-the-fly", "host"


def check_candidates(layers, candidates: dict) -> dict[str, list[QType]]:
    """One de-duplicated list of real (post-fallback) types per layer, in table order."""
    missing = [layer.gguf_name for layer in layers if layer.gguf_name not in candidates]
    if missing:
        raise UserError(f"no candidate types for {len(missing)} layers (first: {missing[0]})")
    checked = {}
    for layer in layers:
        types = list(dict.fromkeys(QType(t) for t in candidates[layer.gguf_name]))
        for qtype in types:
            actual = qtypes.actual_type(qtype, layer.in_features)
            if actual != qtype:
                raise UserError(f"{layer.gguf_name}: llama.cpp writes {qtype.name} as {actual.name} "
                                f"(rows of {layer.in_features}); give candidates after the fallback")
        checked[layer.gguf_name] = types
    return checked


def offload_hook(module):
    """accelerate's hook of a module whose weights live off the model (streamed in per forward), else None."""
    hook = getattr(module, "_hf_hook", None)
    return hook if getattr(hook, "offload", False) and getattr(hook, "weights_map", None) is not None else None


class _Swapped(Mapping):
    """An offloaded module's weights map with its weight replaced: the hook loads this one at the next forward."""

    def __init__(self, inner, weight: torch.Tensor):
        self.inner, self.weight = inner, weight

    def __getitem__(self, key):
        return self.weight if key == "weight" else self.inner[key]

    def __iter__(self):
        return iter(self.inner)

    def __len__(self):
        return len(self.inner)


class WeightCache:
    """Candidate weights of every layer, and the swap of a whole allocation into the model.

    A model placed by accelerate with offloaded modules (`calibration.memory`) works too: an offloaded layer's
    base weight is read from its hook's weights map, and an allocation is swapped into that map."""

    def __init__(self, model, layers, candidates: dict, imatrix: dict | None = None, plan: str = "auto",
                 progress: bool = True, source: list | None = None):
        modules = dict(model.named_modules())
        self.layers = list(layers)
        self.modules = [modules[layer.name] for layer in self.layers]
        self.hooks = [offload_hook(module) for module in self.modules]
        self.maps = [None if hook is None else hook.weights_map for hook in self.hooks]
        self.base = [module.weight.data if hook is None else hook.weights_map["weight"]   # the original tensors
                     for module, hook in zip(self.modules, self.hooks)]
        assert source is None or [tuple(w.shape) for w in source] == [tuple(w.shape) for w in self.base]
        self.source = source   # float32 weights to quantize; None: the model's own
        self.candidates = check_candidates(self.layers, candidates)
        self.imatrix = imatrix
        self.device = self.base[0].device
        self.dtype = self.base[0].dtype
        self.need = storage_bytes(self.layers, self.candidates, self.base[0].element_size())
        if plan == "auto":
            plan, where = choose_plan(self.need, free_device_memory(self.device), free_host_memory())
        elif plan == "dequantized":
            fits = self.need[plan] <= HEADROOM * free_device_memory(self.device)
            where = "device" if fits or self.device.type == "cpu" else "host"
        elif plan in PLANS:
            where = "host"
        else:
            raise UserError(f"unknown weight-cache plan {plan!r}; choose auto or one of {', '.join(PLANS)}")
        self.plan = plan
        self.store = self.device if where == "device" else torch.device("cpu")
        self.entries: dict[tuple[int, QType], object] = {}
        if plan != "on-the-fly":
            self._build(progress)
        log.info("weight cache: plan %s, %.2f GB %s (%d layers, %d layer x type entries)",
                 plan, self.need[plan] / 1e9, f"on {self.store}" if plan == "dequantized" else "in host memory",
                 len(self.layers), sum(len(t) for t in self.candidates.values()))

    def _weight(self, index: int) -> np.ndarray:
        weight = self.base[index] if self.source is None else self.source[index]
        return weight.detach().to("cpu", torch.float32).numpy()

    def _imatrix(self, index: int) -> np.ndarray | None:
        return None if self.imatrix is None else self.imatrix[self.layers[index].gguf_name]

    def _tensor(self, floats: np.ndarray, device) -> torch.Tensor:
        return torch.from_numpy(floats).to(device=device, dtype=self.dtype)

    def _build(self, progress: bool) -> None:
        for i in tqdm(range(len(self.layers)), desc=f"weight cache ({self.plan})", unit="layer",
                      disable=not progress):
            weight, shape = self._weight(i), tuple(self.base[i].shape)
            for qtype in self.candidates[self.layers[i].gguf_name]:
                data = encode(weight, qtype, self._imatrix(i))
                if self.plan == "dequantized":
                    self.entries[i, qtype] = self._tensor(decode(data, qtype, shape), self.store)
                else:
                    self.entries[i, qtype] = data

    def weights(self, index: int, qtype: QType) -> torch.Tensor:
        """Layer `index`'s weights as llama.cpp sees them in `qtype`, on the model's device."""
        if qtype not in self.candidates[self.layers[index].gguf_name]:
            raise UserError(f"{qtype.name} is not a candidate type of {self.layers[index].gguf_name}; "
                            f"candidates: {', '.join(t.name for t in self.candidates[self.layers[index].gguf_name])}")
        shape = tuple(self.base[index].shape)
        if self.plan == "dequantized":
            return self.entries[index, qtype].to(self.device, non_blocking=True)
        data = self.entries[index, qtype] if self.plan == "bytes" else encode(
            self._weight(index), qtype, self._imatrix(index))
        return self._tensor(decode(data, qtype, shape), self.device)

    def error(self, index: int, qtype: QType) -> torch.Tensor:
        """Layer `index`'s quantization error in `qtype` (llama.cpp's weights minus the base), float64 on the CPU."""
        base = torch.from_numpy(self._weight(index)).double()
        return self.weights(index, qtype).detach().to("cpu", torch.float64) - base

    def apply(self, types, weights: dict | None = None) -> None:
        """Put an allocation's weights into the model: one type (or None = base weights) per layer; `weights`
        ({layer index: tensor of the layer's shape}) replaces those layers' weights outright."""
        types = list(types)
        if len(types) != len(self.layers):
            raise UserError(f"the allocation has {len(types)} entries but there are {len(self.layers)} layers")
        swapped = [self.base[i] if qtype is None else self.weights(i, QType(qtype)) for i, qtype in enumerate(types)]
        for i, tensor in (weights or {}).items():
            assert tuple(tensor.shape) == tuple(self.base[i].shape), (i, tensor.shape, self.base[i].shape)
            swapped[i] = tensor.to(device=self.device, dtype=self.dtype)
        for i, tensor in enumerate(swapped):
            if self.hooks[i] is None:
                self.modules[i].weight.data = tensor
            else:
                self.hooks[i].weights_map = _Swapped(self.maps[i], tensor)

    def restore(self) -> None:
        """Put the original (base) weight tensors back."""
        for i, tensor in enumerate(self.base):
            if self.hooks[i] is None:
                self.modules[i].weight.data = tensor
            else:
                self.hooks[i].weights_map = self.maps[i]
