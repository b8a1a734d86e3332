"""ONNX builds: fp32 / fp16 (opset 18, dynamic batch) and int8 in explicit QuantizeLinear /
DequantizeLinear form (what TensorRT's explicit quantization consumes). The edgetl spec is in
the model's metadata_props["edgetl"]."""
import copy
import json

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..core.errors import ModelError
from ..models.onnx_graph import to_proto

# What TensorRT 8.6+/10 parses for these networks (explicit quantization).
TENSORRT_OPS = {"Conv", "Add", "Clip", "Relu", "Pad", "ReduceMean", "GlobalAveragePool",
                "Reshape", "Flatten", "Gemm", "MatMul", "QuantizeLinear", "DequantizeLinear",
                "Transpose", "Identity", "Mul", "Sigmoid", "HardSigmoid", "HardSwish",
                "Constant", "Cast", "Concat", "Squeeze", "Unsqueeze", "Shape", "Gather",
                "Div", "Sub", "MaxPool", "AveragePool"}


def build(model, precision: str, img_size: int, layout: str = "NCHW",
          metadata: dict = None) -> bytes:
    """Bytes of an .onnx file. `model`: float eval model, or the converted int8 graph."""
    example = torch.zeros(2, 3, img_size, img_size)
    if precision == "fp16":
        model, example = copy.deepcopy(model).half(), example.half()
    proto = to_proto(model, example, "logits")
    if precision == "int8":
        store_int8_weights(proto)
        unshare_quant_params(proto)
    onnx.helper.set_model_props(proto, {"edgetl": json.dumps(metadata or {})})
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def store_int8_weights(proto) -> int:
    """Each float weight initializer feeding a QuantizeLinear (and the Clip to the weight range
    the exporter puts after it) becomes the int8 tensor they would produce, rounded as the
    PyTorch reference does: the file holds int8 weights and a DequantizeLinear only, a quarter
    of the bytes. Returns how many."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    uses, users = {}, {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
            users.setdefault(name, []).append(node)
    folded = 0
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 \
            else np.zeros((), np.uint8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim:
            shape[axis] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.round(w * (np.float32(1.0) / scale.reshape(shape))) + zp.reshape(shape),
                    info.min, info.max)
        out, after = node.output[0], users.get(node.output[0], [])
        if len(after) == 1 and after[0].op_type == "Clip" and \
                all(i in inits for i in after[0].input[1:]):
            lo, hi = (numpy_helper.to_array(inits[i]) for i in after[0].input[1:3])
            q, out = np.clip(q, lo, hi), after[0].output[0]
            graph.node.remove(after[0])
        graph.initializer.append(numpy_helper.from_array(q.astype(zp.dtype), out))
        graph.node.remove(node)
        for name in node.input:
            uses[name] -= 1
            if uses[name] == 0 and name in inits:
                graph.initializer.remove(inits.pop(name))
        folded += 1
    return folded


def unshare_quant_params(proto) -> None:
    """Give each QuantizeLinear/DequantizeLinear its own scale and zero-point initializers. The
    exporter shares equal ones (every ReLU6 output has the same scale); onnxruntime's
    s8->u8 rewrite for x86 (session.x64quantprecision) then fails to load the model
    ('Attempt to replace the existing tensor')."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    seen = set()
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for j in (1, 2):
            name = node.input[j] if j < len(node.input) else ""
            if name not in inits:
                continue
            if name in seen:
                copy_ = onnx.TensorProto()
                copy_.CopyFrom(inits[name])
                copy_.name = f"{name}_{node.output[0]}"
                graph.initializer.append(copy_)
                node.input[j] = copy_.name
            seen.add(name)


def read_metadata(data: bytes) -> dict:
    proto = onnx.load_from_string(data)
    return json.loads({p.key: p.value for p in proto.metadata_props}.get("edgetl", "{}"))


def tensorrt_readiness(data: bytes) -> list:
    """What edgetl knows TensorRT's explicit-quantization parser rejects (operators, opset,
    asymmetric zero points); [] means none found. edgetl's own operator check, not TensorRT's
    parser, which only the device has."""
    proto = onnx.load_from_string(data)
    problems = []
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        problems.append(f"opset {opset} < 13 (per-channel QDQ needs 13+)")
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consts = _constants(proto)
    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type not in TENSORRT_OPS:
            problems.append(f"operator {node.op_type} ({node.name}) is not supported")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp_name = node.input[2] if len(node.input) > 2 else ""
            zp = inits.get(zp_name, consts.get(zp_name))
            if zp is not None and np.any(zp != 0):
                problems.append(f"{node.op_type} {node.name}: zero point {zp.ravel()[:4]} != 0 "
                                "(TensorRT takes symmetric int8 only)")
            scale = inits.get(node.input[1], consts.get(node.input[1]))
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            source = producers.get(node.input[0])
            is_weight = node.input[0] in inits or (source is not None and
                                                    source.op_type == "Constant")
            if scale is not None and scale.size > 1 and axis != 0 and is_weight:
                problems.append(f"{node.name}: per-channel weight scale on axis {axis}, "
                                "TensorRT needs axis 0 (output channels)")
            if node.op_type == "QuantizeLinear" and is_weight:
                problems.append(f"{node.name}: a float weight quantized at run time; store it "
                                "as int8 with a DequantizeLinear only")
    return problems


def _constants(proto) -> dict:
    out = {}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def check_tensorrt_ready(data: bytes, what: str) -> None:
    problems = tensorrt_readiness(data)
    if problems:
        raise ModelError(f"{what}: edgetl's TensorRT operator check (not TensorRT's parser) "
                         f"rejects it: {problems[0]}"
                         f"{f' (+{len(problems) - 1} more)' if len(problems) > 1 else ''}")
