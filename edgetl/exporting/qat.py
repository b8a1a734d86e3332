"""Quantization-aware training and PTQ calibration loops: fine-tuned model -> int8 graph."""
import math
import time

import torch
import torch.nn.functional as F

from ..core.console import bar as progress
from ..training.data import loader
from ..training.schedule import cosine
from ..training.transforms import eval_transform, train_transform
from . import quantize


def _batches(samples, transform, spec, batch_size, workers, shuffle=False, seed=0):
    return loader(samples, transform, spec.resize_size, batch_size, workers, shuffle, seed)


def qat(model, spec, cfg, samples, calib, epochs: float, weight_range: str = "reduced",
        lr: float = 2e-4, batch_size: int = 32, workers: int = 2, log=None):
    """Fake-quantized fine-tuning from the fine-tuned checkpoint (batch norm folded):

    1. scales: running min/max of every activation over `calib` (clean, centre-cropped
       images), then frozen; augmented training batches would widen them and cost precision;
    2. weights: `epochs` of SGD at a low, cosine-decayed LR through the fake-quantized graph
       (straight-through gradients), so the weights adapt to the int8 grid.
    Returns the converted int8 reference graph."""
    t0 = time.time()
    example = (torch.zeros(2, 3, spec.img_size, spec.img_size),)
    prepared = quantize.prepare_qat(model, example, weight_range)
    quantize.set_fake_quant(prepared, enabled=False)
    with torch.no_grad():
        for x, _, _ in progress(_batches(calib, eval_transform(spec), spec, batch_size, workers),
                                desc="QAT scales", unit="batch"):
            prepared(x)
    quantize.set_fake_quant(prepared, enabled=True)
    quantize.freeze_activation_scales(prepared)
    steps = math.ceil(epochs * len(samples) / batch_size) if epochs > 0 and samples else 0
    opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
    done = 0
    bar = progress(total=steps, desc="QAT", unit="batch")
    while done < steps:          # each pass over the data is a new seeded shuffle
        for x, y, _ in _batches(samples, train_transform(spec, cfg), spec, batch_size, workers,
                                shuffle=True, seed=done):
            if done >= steps:
                break
            for g in opt.param_groups:
                g["lr"] = lr * cosine(done, steps)
            loss = F.cross_entropy(prepared(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    if log:
        log.info("QAT: scales from %d clean images, then %d steps (%.2f epochs, lr %g) in %.0f s",
                 len(calib), steps, epochs, lr, time.time() - t0)
    return quantize.convert(prepared)


@torch.no_grad()
def ptq(model, spec, samples, observer: str, weight_range: str = "reduced", batch_size: int = 32,
        workers: int = 2, log=None):
    """Post-training quantization: observe activations on the calibration samples."""
    t0 = time.time()
    example = (torch.zeros(2, 3, spec.img_size, spec.img_size),)
    prepared = quantize.prepare_ptq(model, example, observer, weight_range)
    for x, _, _ in progress(_batches(samples, eval_transform(spec), spec, batch_size, workers),
                            desc="calibrate", unit="batch"):
        prepared(x)
    if log:
        log.info("PTQ (%s): %d calibration images in %.0f s", observer, len(samples),
                 time.time() - t0)
    return quantize.convert(prepared)
