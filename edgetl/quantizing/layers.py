"""Layers of a PT2E graph by name: the module a node came from (its nn_module_stack), at the
granularity a user thinks in and mixed precision acts on: a conv-BN-activation unit
('features.3.expand'), a residual block's add ('features.4'), the classifier."""
import torch

from .nodes import MOVES_VALUES, QUANT_OPS

UNIT_CLASSES = ("ConvBNAct", "Conv2dNormActivation", "Linear")


def op_name(target) -> str:
    """'conv2d.default' for torch.ops.aten.conv2d.default."""
    return getattr(target, "__name__", str(target))


def layer_name(node: torch.fx.Node) -> str:
    """The unit a node belongs to: the innermost conv-BN-act unit (or Linear) in its module
    stack, else its innermost module; '' for nodes outside any module (the graph input)."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    for fqn, cls in reversed(stack):
        if str(cls).rsplit(".", 1)[-1] in UNIT_CLASSES:
            return fqn
    return stack[-1][0] if stack else ""


def is_quant(node, kinds=QUANT_OPS) -> bool:
    return node.op == "call_function" and op_name(node.target).startswith(kinds)


def quantized_tensor_layer(q: torch.fx.Node) -> tuple:
    """(layer, 'activation' | 'weight') of a quantize node of a converted graph: activations
    belong to the layer that produced them, weights to the layer that consumes them."""
    if op_name(q.target).startswith("quantize_per_channel") or q.args[0].op == "get_attr":
        consumers = [u for dq in q.users for u in dq.users]
        return (layer_name(consumers[0]) if consumers else "", "weight")
    src = q.args[0]
    while src.op == "call_function" and (not src.meta.get("nn_module_stack") or
                                         op_name(src.target) in MOVES_VALUES):
        src = src.args[0]                       # through quantization's own ops and padding
    return ("input" if src.op == "placeholder" else layer_name(src), "activation")


def clipped_next(q: torch.fx.Node) -> bool:
    """The tensor of quantize node q goes straight into a clip (ReLU6) that shares its scale:
    its saturation is the clip's own work, not an error."""
    users = [u for dq in q.users for u in dq.users]
    return bool(users) and all(op_name(u.target).startswith(("hardtanh", "relu", "clamp"))
                               for u in users if u.op == "call_function")


def block_of(layer: str) -> str:
    """The block a layer belongs to: 'features.3' for 'features.3.project' (a residual block,
    or the stem or head conv), the layer itself outside `features` (the classifier)."""
    parts = layer.split(".")
    return ".".join(parts[:2]) if parts[0] == "features" and len(parts) > 1 else layer


def float_region_quants(graph: torch.fx.Graph, layers: dict, blocks) -> set:
    """Names of the quantize nodes that disappear when `blocks` run in float: their weights'
    and every activation passed only among them (the graph input's too, with the first block).
    A tensor handed to an int8 block stays quantized: int8 layers need int8 input."""
    blocks = set(blocks)
    first = next((block_of(name) for name, kind in layers.values() if kind == "weight"), "")
    owner = lambda name: block_of(first if name == "input" else name)
    nodes = {n.name: n for n in graph.nodes}
    out = set()
    for qname, (name, kind) in layers.items():
        if owner(name) not in blocks:
            continue
        consumers = [u for dq in nodes[qname].users for u in dq.users]
        if kind == "weight" or all(owner(layer_name(u) or name) in blocks for u in consumers):
            out.add(qname)
    return out


def without_quants(gm: torch.fx.GraphModule, names: set) -> torch.fx.GraphModule:
    """A copy of a converted graph where each named quantize node and its dequantize are gone:
    those tensors flow in float (mixed precision, carried as is into every format)."""
    import copy
    gm = copy.deepcopy(gm)
    for q in [n for n in gm.graph.nodes if n.name in names]:
        for dq in list(q.users):
            dq.replace_all_uses_with(q.args[0])
            gm.graph.erase_node(dq)
        gm.graph.erase_node(q)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm
