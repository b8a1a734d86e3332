"""TFLite flatbuffer edits edgetl needs: float I/O around an int8 graph, embedded metadata, and
the operator inventory used to prove a graph is fully integer."""
import collections
import json

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE", "TRANSPOSE"}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def read(data: bytes) -> schema.ModelT:
    """Object tree of a model; constants stored after the flatbuffer (offset/size buffers, as
    litert-torch writes them) are pulled inline so that `write` keeps them."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(data, np.uint8, buf.size, buf.offset)
            buf.offset, buf.size = 0, 0
    return model


def write(model: schema.ModelT) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(model, op) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == op:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op, min(op, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_twin(model, graph, index, name) -> int:
    src = graph.tensors[index]
    t = schema.TensorT()
    t.name, t.shape, t.type = name.encode(), list(src.shape), schema.TensorType.FLOAT32
    t.shapeSignature = None if src.shapeSignature is None else list(src.shapeSignature)
    buf = schema.BufferT()
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def float_io(data: bytes) -> bytes:
    """int8 input/output -> float32 input/output: one QUANTIZE in, one DEQUANTIZE out."""
    model = read(data)
    graph = model.subgraphs[0]
    q_in, q_out = graph.inputs[0], graph.outputs[0]
    f_in = _float_twin(model, graph, q_in, "input_float")
    f_out = _float_twin(model, graph, q_out, "output_float")
    quant, dequant = schema.OperatorT(), schema.OperatorT()
    quant.opcodeIndex, quant.inputs, quant.outputs = _opcode(model, schema.BuiltinOperator.QUANTIZE), [f_in], [q_in]
    dequant.opcodeIndex = _opcode(model, schema.BuiltinOperator.DEQUANTIZE)
    dequant.inputs, dequant.outputs = [q_out], [f_out]
    graph.operators = [quant] + list(graph.operators) + [dequant]
    graph.inputs, graph.outputs = [f_in], [f_out]
    for sig in model.signatureDefs or []:
        for tensor_map, new in ((sig.inputs, f_in), (sig.outputs, f_out)):
            for m in tensor_map:
                m.tensorIndex = new
    return write(model)


def add_metadata(data: bytes, name: str, payload: dict) -> bytes:
    """Embed a JSON document as named model metadata (read back with `read_metadata`)."""
    model = read(data)
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(payload).encode(), np.uint8)
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name, meta.buffer = name.encode(), len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [meta]
    return write(model)


def read_metadata(data: bytes, name: str):
    model = read(data)
    for meta in model.metadata or []:
        if meta.name.decode() == name:
            return json.loads(bytes(model.buffers[meta.buffer].data).decode())
    return None


def op_inventory(data: bytes) -> dict:
    """Operator counts, plus the ops that compute in float (any float32 input or output)."""
    model = read(data)
    graph = model.subgraphs[0]
    counts, float_ops = collections.Counter(), collections.Counter()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        counts[name] += 1
        types = {graph.tensors[i].type for i in list(op.inputs) + list(op.outputs) if i >= 0}
        if schema.TensorType.FLOAT32 in types and name not in ("QUANTIZE", "DEQUANTIZE"):
            float_ops[name] += 1
    io = {"input": _TYPE_NAMES[graph.tensors[graph.inputs[0]].type],
          "output": _TYPE_NAMES[graph.tensors[graph.outputs[0]].type]}
    return {"ops": dict(counts), "float_ops": dict(float_ops), "io": io}


def integer_violations(inventory: dict, nchw_input: bool) -> list:
    """What keeps the graph from being fully integer, beyond the allowed input/output boundary."""
    ops, io = inventory["ops"], inventory["io"]
    allowed = {"TRANSPOSE": 1 if nchw_input else 0,
               "QUANTIZE": 1 if io["input"] == "FLOAT32" else 0,
               "DEQUANTIZE": 1 if io["output"] == "FLOAT32" else 0}
    bad = [f"{ops.get(op, 0)} {op} (allowed {n})" for op, n in allowed.items()
           if ops.get(op, 0) > n]
    bad += [f"{n} float {op}" for op, n in inventory["float_ops"].items()]
    return bad
