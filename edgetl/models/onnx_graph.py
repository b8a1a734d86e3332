"""A PyTorch module as an ONNX graph (opset 18, dynamic batch): used by the export stage for the
ONNX builds and by training for the onnxruntime cache pass."""
import warnings

import torch

OPSET = 18


def to_proto(model, example: torch.Tensor, output_name: str):
    """`model` on inputs shaped like `example` (any batch size) as an onnx.ModelProto with one
    input named "input"."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET,
                                    dynamic_shapes=({0: batch},), input_names=["input"],
                                    output_names=[output_name], verbose=False)
    proto = program.model_proto
    for node in proto.graph.node:          # the exporter's debugging notes (stack traces, fx
        del node.metadata_props[:]         # names): a tenth of an int8 file, no use to anyone
    return proto
