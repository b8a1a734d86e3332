"""ExecuTorch builds: `.pte` programs lowered to the XNNPACK CPU backend (fp32, fp16, int8).

int8 is lowered from edgetl's own converted PT2E graph, the one the ONNX, TFLite and TensorRT
int8 builds come from: the same scales and float blocks. One step differs from XNNPACK's own
recipe: edgetl converts with `fold_quantize=False` (its ONNX and TFLite converters read the float
weights and their quantize nodes), and XNNPACK delegates a convolution only when its weight is
an int8 constant feeding a dequantize, so the weight quantize nodes are folded into int8
constants here (torchao's own fold, the one `convert_pt2e(fold_quantize=True)` runs: the same
rounded values). The program carries the edgetl metadata as a method, `edgetl_metadata`, that
returns its JSON as bytes; the delegation coverage is read from the program itself."""
import copy
import json

import numpy as np
import torch

METADATA_METHOD = "edgetl_metadata"


def _fold_weights(converted):
    """The converted int8 graph with its weight quantize nodes folded into int8 constants."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint
    folded = copy.deepcopy(converted)
    constant_fold(folded, _quant_node_constraint)
    folded.recompile()
    return folded


def delegation(data: bytes) -> dict:
    """What the program's `forward` runs where, read from the .pte itself: its calls into
    delegates (XNNPACK) and the operators left on ExecuTorch's portable kernels."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    program = deserialize_pte_binary(data).program
    plan = next(p for p in program.execution_plan if p.name == "forward")
    calls, portable = {}, {}
    for instruction in (i for chain in plan.chains for i in chain.instructions):
        kind = type(instruction.instr_args).__name__
        if kind == "DelegateCall":
            backend = plan.delegates[instruction.instr_args.delegate_index].id
            calls[backend] = calls.get(backend, 0) + 1
        elif kind == "KernelCall":
            op = plan.operators[instruction.instr_args.op_index]
            name = op.name + (f".{op.overload}" if op.overload else "")
            portable[name] = portable.get(name, 0) + 1
    return {"delegate_calls": calls, "portable_ops": portable,
            "fully_delegated": bool(calls) and not portable}


def lower(model, precision: str, img_size: int, metadata: dict = None) -> bytes:
    """Bytes of a .pte program. `model`: the float eval model, or (int8) the converted PT2E
    graph. fp16 is the model in half precision (half input and output)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    example = torch.zeros(1, 3, img_size, img_size)
    model = _fold_weights(model) if precision == "int8" else copy.deepcopy(model).eval()
    if precision == "fp16":
        model, example = model.half(), example.half()
    blob = torch.from_numpy(np.frombuffer(json.dumps(metadata or {}).encode(), np.uint8).copy())
    edge = to_edge_transform_and_lower(torch.export.export(model, (example,)),
                                       partitioner=[XnnpackPartitioner()],
                                       constant_methods={METADATA_METHOD: blob})
    return bytes(edge.to_executorch().buffer)


def read_metadata(path) -> dict:
    """The metadata a .pte program carries (its `edgetl_metadata` method)."""
    from executorch.runtime import Runtime
    program = Runtime.get().load_program(str(path))
    blob = program.load_method(METADATA_METHOD).execute([])[0]
    return json.loads(bytes(np.asarray(blob, dtype=np.uint8)).decode())
