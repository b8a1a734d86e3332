"""The int8 graph an export ships, saved as its tensors (weights, scales, zero points, before
float blocks) plus how to rebuild it, and rebuilt from them (report-only runs, benchmarks)."""
import json

import torch

from . import qat, quant_report
from .layers import float_region_quants, op_name, without_quants
from .nodes import PER_TENSOR


def save_graph(path, converted, info: dict) -> None:
    """The int8 graph's tensors (weights, scales, zero points: before float blocks) and how to
    rebuild it (see load_graph)."""
    from safetensors.torch import save_file

    from ..core.files import atomic_write
    state = {k: v.detach().clone().contiguous() for k, v in converted.state_dict().items()}
    acts = {n.name: [float(n.args[1]), int(n.args[2])] for n in converted.graph.nodes
            if n.op == "call_function" and op_name(n.target).startswith(PER_TENSOR)}
    meta = {"method": info["method"], "weight_range": info["weight_range"],
            "observer": info["observer"], "float_blocks": ",".join(info["float_blocks"]),
            "activation_qparams": json.dumps(acts)}
    atomic_write(path, lambda p: save_file(state, str(p), metadata=meta))


def load_graph(path, model, spec):
    """The int8 reference graph an export shipped, rebuilt from its saved tensors."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from . import quantize as q
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    example = (torch.zeros(2, 3, spec.img_size, spec.img_size),)
    prepared = q.prepare_qat(model, example, meta["weight_range"]) if meta["method"] == "qat" \
        else q.prepare_ptq(model, example, meta["observer"], meta["weight_range"])
    with torch.no_grad():
        prepared(example[0])                 # observers set once, so that convert runs
    converted = qat.converted(prepared)      # the same graph; its numbers then replaced:
    converted.load_state_dict(load_file(str(path)), strict=True)   # tensors,
    acts = json.loads(meta["activation_qparams"])                   # and activation qparams,
    for n in converted.graph.nodes:                                 # which are node arguments
        if n.name in acts:
            n.args = (n.args[0], *acts[n.name], *n.args[3:])
    converted.recompile()
    blocks = [b for b in meta["float_blocks"].split(",") if b]
    layers = quant_report.tensor_layers(converted)
    return without_quants(converted, float_region_quants(converted.graph, layers, blocks))
