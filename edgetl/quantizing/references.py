"""PyTorch references: the logits of the float model and of the int8 graph on uint8 crops,
fed exactly as the bundles feed their models, and top-1 on them."""
import copy
import numbers
import operator

import numpy as np
import torch

from .. import bundle_runner
from .layers import is_quant
from .nodes import DEQUANT_OPS

# The float reference runs channels-last, as QAT's teacher does: 372 images at 224 px in
# 6.4-7.2 s against 7.5-8.9 s, logits within 5e-6, predictions the same. The int8 graph keeps
# NCHW: channels-last saved 1.2-1.3 s of 10.3-11.7 there but moved a near-tie's prediction,
# and in the quantization report's probe the blocks' sensitivity ranking, for no time saved
# (benchmarks/results/reference_layout.json)
FLOAT_LAYOUT = torch.channels_last


def top1(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).mean())


def torch_logits(model, images, spec, batch=2, layout=None) -> np.ndarray:
    """A PyTorch model's logits (float or int8 reference graph) on uint8 crops, fed exactly as
    the bundles feed their models. Small batches keep the activations in cache: for the int8
    graph 3.7x faster than batches of 64 at 224 px and 1.2x faster than batches of 4, the fp32
    model 1.1x faster than 4 (2 of 3 pairs), predictions unchanged (benchmarks/reference_batch
    .py: results/reference_batch.json, reference_batch_small.json). A copy of the model runs,
    in `layout` (default: FLOAT_LAYOUT for a float model, NCHW for an int8 graph, which runs
    as fast_reference's copy)."""
    int8 = isinstance(model, torch.fx.GraphModule)
    layout = layout or (torch.contiguous_format if int8 else FLOAT_LAYOUT)
    model = (fast_reference(model) if int8 else copy.deepcopy(model)).to(memory_format=layout)
    manifest = {"preprocessing": {"mean": spec.mean, "std": spec.std},
                "input": {"layout": "NCHW", "dtype": "float32"}}
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(bundle_runner.to_input(images[i:i + batch], manifest))
            out.append(model(x.contiguous(memory_format=layout)).float().numpy())
    return np.concatenate(out)


def quantize_dequantize(x: torch.Tensor, scale: float, zero_point: int, quant_min: int,
                        quant_max: int) -> torch.Tensor:
    """A converted graph's quantize_per_tensor then dequantize_per_tensor (Python-number
    qparams), in four vectorised passes: their (clamp(round(x * (1/scale)) + zp, qmin, qmax)
    - zp) * scale with 1/scale taken in double as they take it, so bit for bit the same for
    finite inputs, without the int8 tensor between them."""
    return torch.mul(x, 1.0 / scale).round_().clamp_(quant_min - zero_point,
                                                      quant_max - zero_point).mul_(scale)


def fast_reference(converted: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of an int8 graph that computes the same logits, bit for bit, in about half the
    time (2.3x on Lite0 @224, 2 threads): each weight's quantize/dequantize pair (run on every
    call: the weights are kept in float) is done once, now, and each activation's pair is one
    quantize_dequantize pass instead of two ops and an int8 tensor."""
    gm = copy.deepcopy(converted)
    graph = gm.graph
    for q in [n for n in graph.nodes if is_quant(n)]:
        if fusable(q):
            with graph.inserting_after(q):
                new = graph.call_function(quantize_dequantize, tuple(q.args[:5]))
            for dq in list(q.users):
                dq.replace_all_uses_with(new)
    for dq, value in weight_constants(gm).items():
        name = f"_reference_{dq.name}"
        gm.register_buffer(name, value)
        with graph.inserting_before(dq):
            dq.replace_all_uses_with(graph.get_attr(name))
    graph.eliminate_dead_code()
    gm.recompile()
    return gm


def fusable(q) -> bool:
    """A per-tensor quantize node with number qparams whose every user is the dequantize with
    the same ones: the pair is quantize_dequantize."""
    return is_quant(q, ("quantize_per_tensor",)) and bool(q.users) and \
        all(isinstance(a, numbers.Number) for a in q.args[1:5]) and \
        all(is_quant(u, ("dequantize_per_tensor",)) and not u.kwargs and
            tuple(u.args[1:]) == tuple(q.args[1:]) for u in q.users)


def weight_constants(gm) -> dict:
    """{dequantize node: its value} for each weight's quantize/dequantize pair that fusable
    leaves (the per-channel ones): dequantize(quantize(weight)), run once with the graph's
    own ops."""
    value = lambda a: operator.attrgetter(a.target)(gm) if isinstance(a, torch.fx.Node) else a
    out = {}
    for q in gm.graph.nodes:
        if is_quant(q) and q.args[0].op == "get_attr" and not fusable(q):
            quantized = q.target(*map(value, q.args), **q.kwargs)
            for dq in (u for u in q.users if is_quant(u, DEQUANT_OPS)):
                out[dq] = dq.target(quantized, *map(value, dq.args[1:]), **dq.kwargs)
    return out
