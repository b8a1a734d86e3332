"""TFLite builds through litert-torch: fp32, fp16 (weights), int8 full-integer (int8 or float
I/O, NCHW or NHWC input). Each file embeds the edgetl spec as metadata "edgetl"."""
import contextlib
import io
import warnings

import torch

from . import tflite_graph
from ..quantizing.compat import ensure_nhwc_zero_pad
from ..quantizing.quantize import make_quantizer

FP16_RECIPE = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                              "compute_precision": "FLOAT", "explicit_dequantize": True}}]


class NHWCInput(torch.nn.Module):
    """Takes NHWC images (the mobile convention) and feeds the NCHW model."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.permute(0, 3, 1, 2))


def _convert(model, example, quant_config=None) -> bytes:
    import logging

    import litert_torch
    from litert_torch import progress
    ensure_nhwc_zero_pad()
    quiet, progress.console.quiet = progress.console.quiet, True
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edge = litert_torch.convert(model, (example,), quant_config=quant_config)
    finally:
        progress.console.quiet = quiet
        logging.getLogger().setLevel(root_level)
    return edge.model_content()


def convert(model, precision: str, img_size: int, layout: str = "NCHW") -> bytes:
    """Raw .tflite bytes. `model`: the float eval model, or (int8) the converted PT2E graph,
    which becomes a full-integer graph with int8 input and output."""
    example = torch.zeros(1, 3, img_size, img_size)
    if layout == "NHWC":
        model, example = NHWCInput(model), example.permute(0, 2, 3, 1).contiguous()
    if precision == "int8":
        from litert_torch.quantize.quant_config import QuantConfig
        # The quantizer only tells litert-torch the graph is PT2E-static; scales come from it.
        return _convert(model, example, QuantConfig(pt2e_quantizer=make_quantizer(True)))
    data = _convert(model.eval(), example)
    return fp16_weights(data) if precision == "fp16" else data


def finish(raw: bytes, io: str = "int8", metadata: dict = None) -> bytes:
    """The deployable file: float I/O around the int8 graph if asked, edgetl spec embedded."""
    data = tflite_graph.float_io(raw) if io == "float" else raw
    return tflite_graph.add_metadata(data, "edgetl", metadata or {})


def fp16_weights(data: bytes) -> bytes:
    """Weights stored as float16 (dequantized at load), compute stays float32."""
    from ai_edge_quantizer import quantizer
    q = quantizer.Quantizer(data)
    q.load_quantization_recipe(FP16_RECIPE)
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(q.quantize(enable_progress_report=False).quantized_model)
