"""PT2E quantization with ONE scheme that every target accepts (TFLite, ONNX QDQ, TensorRT):

- weights: int8, symmetric, per output channel (axis 0), zero point 0, range [-127, 127]
  ("full", the default) or [-63, 63] ("reduced")
- activations: int8, symmetric, per tensor, zero point 0, range [-128, 127]

Full-range weights everywhere: x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 pairs into
saturating int16, so onnxruntime's default int8 kernels overflow there with full-range weights;
the ONNX bundles therefore carry onnxruntime's `session.x64quantprecision` option, which selects
exact kernels on such CPUs (tests/test_emulated_cpu.py runs both on an emulated Haswell). The
7-bit range stays available for runtimes that cannot be told so.

QAT (`prepare_qat`) and PTQ calibration (`prepare_ptq`) both fold batch norm, then annotate
through litert-torch's PT2E quantizer (TFLite-friendly fusions) with this scheme, plus shared
scales through padding, so the converted graph stays fully integer. `convert` freezes the
scales. (Mixed precision is decided on the converted graph: see int8.py.)

Clipped activations (ReLU6 = hardtanh(0, 6)) share their producer's scale. litert-torch sizes
that scale from the producer's raw output (a convolution's pre-activation range, e.g. +-84), which
left EfficientNet-Lite's ReLU6 outputs about 9 int8 levels. Here the producer's observer sees its
output clipped to the activation's range instead: the same scale for both tensors, sized for the
values that survive the clip (about 6/127), and exact, since the clip happens anyway.
"""
import copy
import functools

import torch
from torch.fx import Node

from .compat import ensure_pattern_export
from .layers import op_name as _op_name
from .nodes import MOVES_VALUES

OBSERVERS = ("minmax", "histogram")
WEIGHT_RANGES = {"reduced": 63, "full": 127}


def scheme(weight_range: str = "full") -> dict:
    q = WEIGHT_RANGES[weight_range]
    return {"weights": f"int8 symmetric per-channel (axis 0), zero point 0, [-{q}, {q}]",
            "activations": "int8 symmetric per-tensor, zero point 0, [-128, 127]",
            "weight_range": weight_range}


def _dense(x: torch.Tensor) -> torch.Tensor:
    """x as a dense tensor in its memory order (a channels-last batch seen as NHWC), so a
    reduction over all of it reads memory in order and copies nothing."""
    if x.ndim == 4 and not x.is_contiguous() and \
            x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1)
    return x


@functools.cache
def observing(observer_cls, clip: tuple = None):
    """`observer_cls` that records x, or x.clamp(*clip) (the range a following clip lets through)
    when `clip` is given; one class per (observer, clip), however many layers use it. A
    per-tensor min/max observer is fed only x's two extremes (clamped: a clip is monotonic, so
    the same range), read in x's memory order: torch.aminmax copied a channels-last batch first,
    and the clamp wrote a copy (a calibration batch of Lite0 @224, 32 images: 1.74-1.88 ->
    0.64-0.71 s, benchmarks/results/qat_step_profile.json). Others see x clipped."""
    from torchao.quantization.pt2e import MinMaxObserver
    if not issubclass(observer_cls, MinMaxObserver):
        if clip is None:
            return observer_cls

        class Observing(observer_cls):
            def forward(self, x):
                super().forward(x.detach().clamp(*clip))
                return x
    else:
        class Observing(observer_cls):
            def forward(self, x):
                if x.numel():
                    extremes = torch.stack(torch.aminmax(_dense(x.detach())))
                    super().forward(extremes.clamp(*clip) if clip else extremes)
                return x
    Observing.__name__ = f"{'Clipped' if clip else 'Dense'}{observer_cls.__name__}"
    return Observing


def _act_spec(qat: bool, observer: str, clip: tuple = None):
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    from .fake_quant import FakeQuantize        # exact and cheaper where no gradient flows
    cls = HistogramObserver if observer == "histogram" and not qat else MinMaxObserver
    cls = observing(cls, clip)
    if qat:          # trainable fake quantization; scale from a running min/max (calibrated)
        ctr = FakeQuantize.with_args(observer=cls, eps=2 ** -12)
    else:
        ctr = cls.with_args(eps=2 ** -12)
    return QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127,
                            qscheme=torch.per_tensor_symmetric, observer_or_fake_quant_ctr=ctr)


def _weight_spec(qat: bool, weight_range: str):
    from torchao.quantization.pt2e import FakeQuantize, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    ctr = FakeQuantize.with_args(observer=PerChannelMinMaxObserver, eps=2 ** -12) if qat else \
        PerChannelMinMaxObserver.with_args(eps=2 ** -12)
    q = WEIGHT_RANGES[weight_range]
    return QuantizationSpec(dtype=torch.int8, quant_min=-q, quant_max=q, ch_axis=0,
                            qscheme=torch.per_channel_symmetric, observer_or_fake_quant_ctr=ctr)


def make_quantizer(qat: bool, observer: str = "minmax", weight_range: str = "full"):
    """litert-torch's PT2E quantizer, global config = the one edgetl scheme."""
    ensure_pattern_export()
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, QuantizationConfig

    class EdgeQuantizer(PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            annotate_adds(model, self.global_config)
            share_scales_through(model, MOVES_VALUES)
            size_scales_for_clips(model, lambda clip: _act_spec(qat, observer, clip))
            return model

    act = _act_spec(qat, observer)
    # is_qat False: batch norm is folded into the convolutions before annotation (see
    # prepare_qat), so no conv-bn training pattern is needed
    config = QuantizationConfig(act, act, _weight_spec(qat, weight_range), None, None, False,
                                False)
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


def size_scales_for_clips(model: torch.fx.GraphModule, act_spec) -> None:
    """A hardtanh (ReLU6) shares its producer's scale: observe the producer's output clipped to
    the hardtanh's range, so that scale fits the activation (see the module docstring)."""
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    for node in model.graph.nodes:
        if node.op != "call_function" or not _op_name(node.target).startswith("hardtanh"):
            continue
        prev = node.args[0]
        annotation = prev.meta.get("quantization_annotation") if isinstance(prev, Node) else None
        if annotation is None or not isinstance(annotation.output_qspec, QuantizationSpec) \
                or len(prev.users) != 1:
            continue
        lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
        hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
        annotation.output_qspec = act_spec((float(lo), float(hi)))


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


def export_for_quant(model: torch.nn.Module, example: tuple) -> torch.fx.GraphModule:
    """torch.export with a dynamic batch dimension (training and calibration batches vary)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    return torch.export.export(model, example, dynamic_shapes=({0: batch},),
                               strict=False).module()


def prepare_qat(model: torch.nn.Module, example: tuple,
                weight_range: str = "full") -> torch.fx.GraphModule:
    """Trainable fake-quantized graph: batch norm folded into the convolutions first (its
    fine-tuned statistics stay frozen), the same annotation as PTQ, fake quantizers in place of
    observers. Calibrated this graph IS the PTQ model; QAT then moves the weights to suit the
    int8 grid. Works on a copy: the float model keeps its weights for the fp32/fp16 builds."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    model = copy.deepcopy(model).eval()
    return prepare_pt2e(export_for_quant(model, example),
                        make_quantizer(True, weight_range=weight_range))


def set_fake_quant(prepared, enabled: bool) -> None:
    from torchao.quantization.pt2e import disable_fake_quant, enable_fake_quant
    prepared.apply(enable_fake_quant if enabled else disable_fake_quant)


def freeze_activation_scales(prepared) -> None:
    """Activation observers stop; weight observers keep tracking the weights as they train."""
    from torchao.quantization.pt2e import FakeQuantize
    for m in prepared.modules():
        if isinstance(m, FakeQuantize):
            per_channel = m.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
            m.enable_observer(per_channel)


def prepare_ptq(model: torch.nn.Module, example: tuple, observer: str = "minmax",
                weight_range: str = "full"):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    model = copy.deepcopy(model).eval()
    return prepare_pt2e(export_for_quant(model, example),
                        make_quantizer(False, observer, weight_range))


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Quantized reference graph (quantize/dequantize around int8 ops), ready for export."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    from torchao.quantization.pt2e import move_exported_model_to_eval
    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared, fold_quantize=False)


def quant_params(converted: torch.fx.GraphModule, weight_range: str) -> dict:
    """The learned scales: activation scale/zero point per quantize node, weight scale ranges."""
    acts, weights = [], []
    for node in converted.graph.nodes:
        name = _op_name(node.target) if node.op == "call_function" else ""
        if name.startswith("quantize_per_tensor"):
            acts.append({"node": node.name, "scale": float(node.args[1]),
                         "zero_point": int(node.args[2])})
        elif name.startswith("quantize_per_channel"):
            scales = getattr(converted, node.args[1].target)
            zps = getattr(converted, node.args[2].target)
            weights.append({"node": node.name, "axis": int(node.args[3]),
                            "scale_min": float(scales.min()), "scale_max": float(scales.max()),
                            "zero_points_all_zero": bool((zps == 0).all())})
    return {"scheme": scheme(weight_range), "activations": acts, "weights": weights}
