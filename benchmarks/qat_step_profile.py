"""Where one QAT step of the int8 decision goes (default Lite0 @224, batch 32, the default
fine-tune's frozen units): the float teacher's forward, the fake-quantized graph's forward with
and without autograd, and the whole step (teacher, forward, KL, backward through the trained
units, SGD), each in NCHW and in the NHWC layout `quantizing.qat` now uses, and in NHWC with
ATen's fake quantization everywhere (`_aten_fq`, as QAT ran up to e6358ca) against edgetl's
(`quantizing.fake_quant`: the same values without the gradient mask where no gradient flows),
with the teacher in onnxruntime (`_teacher_ort`, as QAT runs since 689d3c0); and one batch of
the calibration pass (observers on, fake quantization off) with edgetl's observers and with
the copying ones used up to 2c9d668 (`_copying_observers`); timed in alternating rounds in one
process; then the per-operator CPU time of the step as QAT runs it now. Random images and
ImageNet weights: a step's time does not depend on their values.
Writes results/qat_step_profile.json."""
import copy
import functools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CODE, commit, op_shares, save, seconds_per_call,  # noqa: E402
                    step_timing_args)

from edgetl.models import create_model  # noqa: E402
from edgetl.quantizing import fake_quant, qat, quantize  # noqa: E402
from edgetl.training import strategy  # noqa: E402
from edgetl.training.features import FrozenPart  # noqa: E402
from edgetl.training.config import load_config  # noqa: E402


def parts(model, prepared, opt, x, calibrating: dict, teacher_ort) -> dict:
    """part -> a callable doing it once; NCHW (as QAT ran up to 425a403) and in
    `qat.LAYOUT` with a teacher copy in it, as QAT runs now."""
    nhwc = x.contiguous(memory_format=qat.LAYOUT)
    teacher_nhwc = copy.deepcopy(model).to(memory_format=qat.LAYOUT)

    def teacher(m=model, xx=x):
        with torch.no_grad():
            return m(xx)

    def fake_quant_forward_no_grad():
        with torch.no_grad():
            return prepared(x)

    def step(m=model, xx=x, run_teacher=teacher):
        target = F.log_softmax(run_teacher(m, xx), -1)
        loss = F.kl_div(F.log_softmax(prepared(xx), -1), target, log_target=True,
                        reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"teacher_forward": aten(teacher), "fake_quant_forward": aten(lambda: prepared(x)),
            "fake_quant_forward_no_grad": aten(fake_quant_forward_no_grad),
            "whole_step": aten(step),
            "teacher_forward_nhwc": lambda: teacher(teacher_nhwc, nhwc),
            "fake_quant_forward_nhwc_aten_fq": aten(lambda: prepared(nhwc)),
            "fake_quant_forward_nhwc": lambda: prepared(nhwc),
            "whole_step_nhwc_aten_fq": aten(lambda: step(teacher_nhwc, nhwc)),
            "whole_step_nhwc": lambda: step(teacher_nhwc, nhwc),
            "teacher_forward_nhwc_ort": lambda: teacher_ort(nhwc),
            "whole_step_nhwc_teacher_ort": lambda: step(
                teacher_ort, nhwc, run_teacher=lambda m, xx: m(xx)),
            **{f"calibration_forward_nhwc{name}": functools.partial(_observe, graph, nhwc)
               for name, graph in calibrating.items()}}


@torch.no_grad()
def _observe(graph, x):
    return graph(x)


def _copying_observing(observer_cls, clip=None):
    """The observers up to 2c9d668: the whole (clipped) tensor to torchao's observer."""
    if clip is None:
        return observer_cls

    class Clipped(observer_cls):
        def forward(self, x):
            super().forward(x.detach().clamp(*clip))
            return x
    return Clipped


def calibration_graphs(model, spec) -> dict:
    """name suffix -> a QAT graph with its observers on and fake quantization off."""
    graphs = {}
    for name, observing in (("", quantize.observing), ("_copying_observers",
                                                       _copying_observing)):
        own, quantize.observing = quantize.observing, observing
        try:
            graphs[name] = quantize.prepare_qat(model, qat._example(spec))
        finally:
            quantize.observing = own
        quantize.set_fake_quant(graphs[name], enabled=False)
    return graphs


def aten(fn):
    """`fn` with every activation fake quantizer computing through ATen's kernel."""
    def with_aten():
        with fake_quant.atens_kernel():
            return fn()
    return with_aten


def main():
    args = step_timing_args(steps=3)
    cfg = load_config(None)
    model, spec = create_model(cfg.model, 10, "imagenet", cfg.dropout)
    model.eval()
    unit = strategy.cache_unit(cfg, len(model.features))
    x = torch.randn(qat.BATCH, 3, spec.img_size, spec.img_size)
    prepared = quantize.prepare_qat(model, qat._example(spec))
    quantize.set_fake_quant(prepared, enabled=False)
    with torch.no_grad():
        prepared(x)                                   # the scales, as `qat.calibrated` sets them
    quantize.set_fake_quant(prepared, enabled=True)
    quantize.freeze_activation_scales(prepared)
    opt = torch.optim.SGD(qat.trained_parameters(prepared, unit), lr=qat.QAT_LR, momentum=0.9)
    teacher_ort = FrozenPart(None, None, spec.img_size, 10 ** 6, engine="onnxruntime",
                             module=copy.deepcopy(model).to(memory_format=qat.LAYOUT))
    t0 = time.perf_counter()
    teacher_ort(x[:2])
    export_s = time.perf_counter() - t0
    todo = parts(model, prepared, opt, x, calibration_graphs(model, spec), teacher_ort)
    rounds = [{f"{name}_s": round(seconds_per_call(fn, args.steps, warmup=1), 3)
               for name, fn in todo.items()}
              for _ in range(args.rounds)]
    save("qat_step_profile", {
        "code": commit(CODE), "model": cfg.model, "img_size": spec.img_size,
        "batch": qat.BATCH, "trained_from_unit": unit, "of_units": len(model.features),
        "steps_per_timing": args.steps, "rounds": rounds,
        "teacher_onnx_export_and_first_call_s": round(export_s, 2),
        "whole_step_nhwc_teacher_ort_self_cpu_share": op_shares(todo["whole_step_nhwc_teacher_ort"],
                                                               calls=2, top=10)})


if __name__ == "__main__":
    main()
