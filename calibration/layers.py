"""The layer table: every quantizable linear layer of a decoder, in a fixed order.

Order is block by block, and inside a block q, k, v, o, gate, up, down (then any other linear, by
name).  Each row carries the transformers module name and the GGUF tensor name that llama.cpp uses,
taken from gguf-py's tensor name map.  Token embeddings and the output head are listed apart: they
are not part of the search.
"""

from dataclasses import asdict, dataclass

from ramputils.errors import UserError

ROLE_ORDER = ("q", "k", "v", "o", "gate", "up", "down", "other")
_ROLE_BY_NAME = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
                 "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}


@dataclass(frozen=True)
class Layer:
    """One quantizable linear layer."""

    index: int          # row in the table
    name: str           # transformers module name, e.g. model.layers.0.self_attn.q_proj
    gguf_name: str      # llama.cpp tensor name, e.g. blk.0.attn_q.weight
    block: int
    role: str           # one of ROLE_ORDER
    in_features: int
    out_features: int

    @property
    def params(self) -> int:
        return self.in_features * self.out_features

    def to_dict(self) -> dict:
        return asdict(self) | {"params": self.params}


def decoder_blocks(model):
    """The model's list of transformer blocks (`model.model.layers` and its relatives)."""
    inner = model.get_decoder() if hasattr(model, "get_decoder") else model
    for candidate in (inner, getattr(inner, "language_model", None), getattr(model, "model", None)):
        blocks = getattr(candidate, "layers", None)
        if blocks is not None:
            return blocks
    raise UserError(f"cannot find the transformer blocks of {type(model).__name__}")


def _prefix_of(model, blocks) -> str:
    for name, module in model.named_modules():
        if module is blocks:
            return name
    raise UserError("the transformer blocks are not a submodule of the model")


def _tensor_name_map(gguf_arch: str, n_blocks: int):
    import gguf

    return gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, gguf_arch), n_blocks)


def _gguf_name(name_map, hf_name: str) -> str:
    # transformers 5 may nest the decoder (model.language_model.layers); gguf-py knows model.layers.
    for candidate in (hf_name, hf_name.replace("model.language_model.", "model.")):
        mapped = name_map.get_name(candidate + ".weight", try_suffixes=(".weight",))
        if mapped:
            return mapped
    raise UserError(f"no GGUF tensor name for {hf_name}: its architecture is not mapped by gguf-py")


def layer_table(model, gguf_arch: str) -> list[Layer]:
    """All quantizable linear layers in table order."""
    import torch

    blocks = decoder_blocks(model)
    prefix = _prefix_of(model, blocks)
    name_map = _tensor_name_map(gguf_arch, len(blocks))
    rows = []
    for b, block in enumerate(blocks):
        found = []
        for sub, module in block.named_modules():
            if isinstance(module, torch.nn.Linear):
                role = _ROLE_BY_NAME.get(sub.rsplit(".", 1)[-1], "other")
                found.append((ROLE_ORDER.index(role), sub, role, module))
        for _, sub, role, module in sorted(found, key=lambda item: item[:2]):
            name = f"{prefix}.{b}.{sub}"
            rows.append(Layer(index=len(rows), name=name, gguf_name=_gguf_name(name_map, name), block=b,
                              role=role, in_features=module.in_features, out_features=module.out_features))
    if not rows:
        raise UserError(f"{type(model).__name__} has no quantizable linear layers")
    return rows


def special_tensors(model, gguf_arch: str) -> list[dict]:
    """Token embeddings and output head (kept out of the search), with their GGUF names."""
    name_map = _tensor_name_map(gguf_arch, len(decoder_blocks(model)))
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is None or head.weight is embed.weight
    rows = [{"role": "token_embd", "gguf_name": _gguf_name(name_map, _module_name(model, embed)),
             "shape": list(embed.weight.shape), "tied": tied}]
    if not tied:
        rows.append({"role": "output", "gguf_name": _gguf_name(name_map, _module_name(model, head)),
                     "shape": list(head.weight.shape), "tied": False})
    return rows


def _module_name(model, target) -> str:
    for name, module in model.named_modules():
        if module is target:
            return name
    raise UserError(f"module {type(target).__name__} not found in the model")
