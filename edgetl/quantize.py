"""PT2E quantization with ONE scheme that every target accepts (TFLite, ONNX QDQ, TensorRT):

- weights: int8, symmetric, per output channel (axis 0), range [-127, 127]
- activations: int8, symmetric, per tensor, zero point 0, range [-128, 127]

QAT (`prepare_qat`) and PTQ calibration (`prepare_ptq`) both annotate through litert-torch's
PT2E quantizer (TFLite-friendly fusions) with this scheme, plus shared scales through padding,
so the converted graph stays fully integer. `convert` folds batch norm and freezes the scales.
"""
import torch
from torch.fx import Node

from .compat import ensure_pattern_export

OBSERVERS = ("minmax", "histogram")
SHARED_SCALE_OPS = {"constant_pad_nd.default", "pad.default", "clone.default",
                    "dropout.default", "contiguous.default"}


def _act_spec(qat: bool, observer: str):
    from torchao.quantization.pt2e import (FusedMovingAvgObsFakeQuantize, HistogramObserver,
                                           MinMaxObserver, MovingAverageMinMaxObserver)
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    if qat:
        ctr = FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver,
                                                      eps=2 ** -12)
    else:
        ctr = (HistogramObserver if observer == "histogram" else MinMaxObserver).with_args(
            eps=2 ** -12)
    return QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127,
                            qscheme=torch.per_tensor_symmetric, observer_or_fake_quant_ctr=ctr)


def _weight_spec(qat: bool):
    from torchao.quantization.pt2e import (FusedMovingAvgObsFakeQuantize,
                                           MovingAveragePerChannelMinMaxObserver,
                                           PerChannelMinMaxObserver)
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    ctr = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver, eps=2 ** -12) if qat else \
        PerChannelMinMaxObserver.with_args(eps=2 ** -12)
    return QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, ch_axis=0,
                            qscheme=torch.per_channel_symmetric, observer_or_fake_quant_ctr=ctr)


def make_quantizer(qat: bool, observer: str = "minmax"):
    """litert-torch's PT2E quantizer, global config = the one edgetl scheme."""
    ensure_pattern_export()
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, QuantizationConfig

    class EdgeQuantizer(PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            annotate_adds(model, self.global_config)
            share_scales_through(model, SHARED_SCALE_OPS)
            return model

    act = _act_spec(qat, observer)
    config = QuantizationConfig(act, act, _weight_spec(qat), None, None, qat, False)
    return EdgeQuantizer().set_global(config)


def annotate_adds(model: torch.fx.GraphModule, config) -> None:
    """Residual adds that litert-torch's source-partition annotator missed (chained adds of
    consecutive blocks merge into one partition): int8 in, int8 out, so ADD stays integer."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    for node in model.graph.nodes:
        if node.op != "call_function" or _op_name(node.target) != "add.Tensor":
            continue
        if node.meta.get("quantization_annotation") is not None:
            continue
        inputs = [a for a in node.args[:2] if isinstance(a, Node)]
        if len(inputs) != 2:
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={a: config.input_activation for a in inputs},
            output_qspec=config.output_activation, _annotated=True)


def share_scales_through(model: torch.fx.GraphModule, op_names: set) -> None:
    """Ops that only move values (padding, copies) reuse their input's scale: no requantize."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
    for node in model.graph.nodes:
        if node.op != "call_function" or _op_name(node.target) not in op_names:
            continue
        prev = node.args[0]
        if not isinstance(prev, Node) or "quantization_annotation" not in prev.meta:
            continue
        if node.meta.get("quantization_annotation") is not None:
            continue
        shared = SharedQuantizationSpec(prev)
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={prev: shared}, output_qspec=shared, _annotated=True)


def _op_name(target) -> str:
    """'constant_pad_nd.default' for torch.ops.aten.constant_pad_nd.default."""
    return getattr(target, "__name__", str(target))


def export_for_quant(model: torch.nn.Module, example: tuple) -> torch.fx.GraphModule:
    """torch.export with a dynamic batch dimension (training and calibration batches vary)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    return torch.export.export(model, example, dynamic_shapes=({0: batch},),
                               strict=False).module()


def prepare_qat(model: torch.nn.Module, example: tuple) -> torch.fx.GraphModule:
    """Fake-quantized training graph (conv-bn kept for training, folded at convert)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    model = model.train()
    return prepare_qat_pt2e(export_for_quant(model, example), make_quantizer(True))


def prepare_ptq(model: torch.nn.Module, example: tuple, observer: str = "minmax"):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    return prepare_pt2e(export_for_quant(model.eval(), example), make_quantizer(False, observer))


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Quantized reference graph (quantize/dequantize around int8 ops), ready for export."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    from torchao.quantization.pt2e import move_exported_model_to_eval
    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared, fold_quantize=False)


def set_qat_phase(prepared, observers: bool, batchnorm: bool) -> None:
    """Freeze observers (scales stop moving) and batch-norm statistics late in QAT."""
    from torchao.quantization.pt2e import (disable_observer, enable_observer)
    prepared.apply(enable_observer if observers else disable_observer)
    for m in prepared.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = batchnorm
