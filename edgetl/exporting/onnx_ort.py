"""The onnxruntime form of an int8 QDQ graph: the same arithmetic, in the shape onnxruntime's
CPU kernels fuse end to end (benchmarks/int8_speed.py measures what this buys).

The exported graph's activations are int8 with zero point 0 (what TensorRT requires). On x86,
onnxruntime rewrites such pairs to uint8 itself, but only pair by pair: where one tensor feeds
two consumers the rewrite stops, input and output types of a convolution disagree, and the
convolution stays float between DequantizeLinear and QuantizeLinear. Each ReLU6 and each padding
is a float island too (DequantizeLinear -> Clip / Pad -> QuantizeLinear), with transposes
around every island once the integer convolutions run NHWC. Rewritten here, exactly:

- every activation as uint8 with zero point 128 (int8 q with zero point 0 is uint8 q + 128 at
  the same scale: the same real numbers, bit for bit);
- DequantizeLinear -> Clip(lo, hi) -> QuantizeLinear with equal parameters as one integer Clip
  on the quantized tensor (bounds round(lo / scale) + zp, round(hi / scale) + zp);
- DequantizeLinear -> Pad(0) -> QuantizeLinear with equal parameters as an integer Pad whose
  value is the zero point.
Weights stay int8 per channel (stored as int8 by onnx.store_int8_weights).
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper


def for_onnxruntime(proto: onnx.ModelProto) -> onnx.ModelProto:
    del proto.graph.value_info[:]          # recorded int8 types no longer hold; re-inferred
    _uint8_activations(proto)
    for op in ("Clip", "Pad"):
        _integer_islands(proto, op)
    return proto


def _value(graph, name):
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def _set(graph, name, array) -> None:
    for i, init in enumerate(graph.initializer):
        if init.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    graph.initializer.append(numpy_helper.from_array(array, name))


def _uint8_activations(proto) -> None:
    """int8 zero points of activation Q/DQ nodes (not weights) -> uint8, shifted by 128."""
    graph = proto.graph
    weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8
               and len(i.dims) > 1}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 \
                and node.input[0] not in weights:
            zp = _value(graph, node.input[2])
            if zp is not None and zp.dtype == np.int8:
                _set(graph, node.input[2], (zp.astype(np.int16) + 128).astype(np.uint8))


def _integer_islands(proto, op: str) -> None:
    """DQ -> op -> Q with equal scale and zero point: the op on the quantized tensor."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    users = {}
    for n in graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    for node in [n for n in graph.node if n.op_type == op]:
        dq = producer.get(node.input[0])
        after = users.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(after) != 1 or \
                after[0].op_type != "QuantizeLinear" or len(users[dq.output[0]]) != 1:
            continue
        q = after[0]
        scale, zp = _value(graph, dq.input[1]), _value(graph, dq.input[2])
        if scale is None or zp is None or scale.size != 1 or \
                not np.array_equal(scale, _value(graph, q.input[1])) or \
                not np.array_equal(zp, _value(graph, q.input[2])):
            continue
        replacement = _clip(graph, node, dq, q, scale, zp) if op == "Clip" else \
            _pad(graph, node, dq, q, zp)
        if replacement is None:
            continue
        index = list(graph.node).index(dq)
        for n in (dq, node, q):
            graph.node.remove(n)
        graph.node.insert(index, replacement)


def _clip(graph, node, dq, q, scale, zp):
    lo, hi = (_value(graph, name) if name else None for name in list(node.input[1:3]) + [""] *
              (3 - len(node.input)))
    info = np.iinfo(zp.dtype)
    bound = lambda v, default: np.array(default if v is None else np.clip(
        np.round(float(v) / float(scale)) + int(zp), info.min, info.max), zp.dtype)
    lo_name, hi_name = f"{node.name}_int_lo", f"{node.name}_int_hi"
    _set(graph, lo_name, bound(lo, info.min))
    _set(graph, hi_name, bound(hi, info.max))
    return helper.make_node("Clip", [dq.input[0], lo_name, hi_name], [q.output[0]],
                            name=f"{node.name}_int")


def _pad(graph, node, dq, q, zp):
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    value = _value(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if mode != b"constant" or (value is not None and float(value) != 0.0):
        return None
    value_name = f"{node.name}_int_value"
    _set(graph, value_name, np.array(zp, zp.dtype).reshape(()))
    inputs = [dq.input[0], node.input[1], value_name] + list(node.input[3:4])
    return helper.make_node("Pad", inputs, [q.output[0]], name=f"{node.name}_int", mode="constant")
