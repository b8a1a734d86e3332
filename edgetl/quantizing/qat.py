"""Quantization-aware training and PTQ calibration: fine-tuned model -> int8 graph.

QAT here is two steps on one fake-quantized graph (batch norm folded first):
1. scales: running min/max of every activation over the calibration images (clean, centre
   crops), then frozen; augmented training batches would widen them and cost precision;
2. weights: SGD at a low, cosine-decayed LR through the fake quantizers (straight-through
   gradients) towards the float model's own predictions (distillation), so the weights settle
   on the int8 grid where they change the outputs least. More epochs can follow. The units that
   fine-tuning kept frozen keep their weights here too: no gradient flows below the first unit
   that trained, which spares the backward pass through the network's high-resolution end.
Calibrated but untrained, the graph is exactly the PTQ model; QAT only adds.
"""
import copy
import math
import time

import torch
import torch.nn.functional as F

from ..core.console import bar as progress
from ..training.features import FrozenPart
from ..training.images import loader
from ..training.schedule import cosine
from ..training.strategy import cache_unit
from ..training.transforms import eval_transform, train_transform
from . import quantize

QAT_LR = 2e-4
BATCH = 32
# QAT's images and teacher in NHWC: oneDNN's convolutions run faster so; a Lite0 @224 step
# 3.52-3.65 -> 2.80-2.91 s on 2 cores (benchmarks/history/qat_step_profile_intel_amx_425a403
# .json); the values are the same up to float rounding
LAYOUT = torch.channels_last


WORKERS = 2                  # image decoders of QAT and calibration


def _batches(samples, transform, spec, shuffle_seed=None):
    return loader(samples, transform, spec.resize_size, BATCH, WORKERS, shuffle_seed)


def _laid_out(x):
    return x.contiguous(memory_format=LAYOUT)


def _example(spec) -> tuple:
    return (torch.zeros(2, 3, spec.img_size, spec.img_size),)


@torch.no_grad()
def calibrated(model, spec, calib, weight_range="full"):
    """The fake-quantized QAT graph with its activation scales calibrated and frozen."""
    prepared = quantize.prepare_qat(model, _example(spec), weight_range)
    quantize.set_fake_quant(prepared, enabled=False)
    for x, _, _ in progress(_batches(calib, eval_transform(spec), spec),
                            desc="QAT scales", unit="batch"):
        prepared(_laid_out(x))
    quantize.set_fake_quant(prepared, enabled=True)
    quantize.freeze_activation_scales(prepared)
    return prepared


def steps_for(epochs: float, samples) -> int:
    """QAT steps of BATCH images that `epochs` over `samples` take."""
    return math.ceil(epochs * len(samples) / BATCH) if epochs > 0 and samples else 0


def float_teacher(model, spec, epochs: float, samples) -> FrozenPart:
    """The float `model` as QAT's teacher for `epochs` over `samples`: a copy of its own (NHWC),
    in onnxruntime once that work pays for the export. Make it once and pass it to every
    `train` of one int8 decision (a mitigation's more QAT exported it again: 4.4 s, the export and
    first call in benchmarks/results/qat_step_profile.json)."""
    return FrozenPart(None, None, spec.img_size, BATCH * steps_for(epochs, samples),
                      module=copy.deepcopy(model).to(memory_format=LAYOUT))


def train(prepared, spec, cfg, samples, epochs: float, teacher: FrozenPart, seed=0,
          log=None) -> int:
    """`epochs` of QAT on `prepared` (in place); returns the steps taken. The loss is the
    divergence from the float `teacher`'s (float_teacher(model)) predictions on the same
    augmented batch: QAT's job is to make the int8 model agree with the float one, not to fit
    the labels further (with cross-entropy, 0.3 epoch on clothing-small lowered validation
    agreement with fp32 from 0.974 after calibration to 0.962; with this loss it rose to
    0.985). The teacher runs as the training cache's frozen part does: in onnxruntime once the
    steps are enough to pay for its export (Lite0 @224, 32 images: its forward 0.76-0.79 ->
    0.16-0.17 s, the step 2.09-2.12 -> 1.49-1.56 s, benchmarks/results/qat_step_profile.json;
    logits within 1e-5)."""
    t0 = time.time()
    steps = steps_for(epochs, samples)
    units = len(teacher.prefix.features)          # the float model's own copy
    opt = torch.optim.SGD(trained_parameters(prepared, cache_unit(cfg, units)),
                          lr=QAT_LR, momentum=0.9)
    bar = progress(total=steps, desc="QAT", unit="batch")
    with torch.random.fork_rng(devices=[]):   # the augmentation's draws: seeded, the same in
        torch.manual_seed(cfg.seed + seed)     # any process (decoded here or in workers)
        x = _steps(prepared, opt, teacher, steps, seed,
                   lambda s: _batches(samples, train_transform(spec, cfg), spec, shuffle_seed=s),
                   bar)
    bar.close()
    if steps:                 # the weights' observers last saw the weights before the final
        with torch.no_grad():  # update: one more pass sizes their scales for the final ones
            prepared(x)
    if log:
        log.info("QAT: %d steps (%.2f epochs, lr %g) in %.0f s", steps, epochs, QAT_LR,
                 time.time() - t0)
    return steps


def _steps(prepared, opt, teacher, steps: int, seed: int, batches, bar):
    """`steps` distillation steps; each pass over the data is a new seeded shuffle. Returns the
    last batch."""
    done, x = 0, None
    while done < steps:
        for x, _, _ in batches(seed + done):
            if done >= steps:
                break
            x = _laid_out(x)
            for g in opt.param_groups:
                g["lr"] = QAT_LR * cosine(done, steps)
            target = F.log_softmax(teacher(x), -1)
            loss = F.kl_div(F.log_softmax(prepared(x), -1), target, log_target=True,
                            reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return x


def trained_parameters(prepared, first_unit: int) -> list:
    """The parameters of features[first_unit:] and the head; the rest stop taking gradients."""
    frozen = tuple(f"features.{i}." for i in range(first_unit))
    for name, p in prepared.named_parameters():
        p.requires_grad_(not name.startswith(frozen))
    return [p for p in prepared.parameters() if p.requires_grad]


def converted(prepared):
    """The int8 reference graph of `prepared` (which stays trainable)."""
    return quantize.convert(copy.deepcopy(prepared))


@torch.no_grad()
def observed(model, spec, samples, observer: str, weight_range: str = "full", log=None):
    """Post-training quantization: the graph with its observers run over the calibration
    samples (convert it with `converted`)."""
    t0 = time.time()
    prepared = quantize.prepare_ptq(model, _example(spec), observer, weight_range)
    for x, _, _ in progress(_batches(samples, eval_transform(spec), spec),
                            desc="calibrate", unit="batch"):
        prepared(_laid_out(x))
    if log:
        log.info("PTQ (%s): %d calibration images in %.0f s", observer, len(samples),
                 time.time() - t0)
    return prepared
