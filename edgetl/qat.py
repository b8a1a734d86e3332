"""Quantization-aware training and PTQ calibration loops: fine-tuned model -> int8 graph."""
import math
import time

import torch
import torch.nn.functional as F

from . import quantize
from .data import ImageDataset, eval_transform, train_transform
from .progress import bar as progress


def _loader(samples, transform, spec, batch_size, shuffle, workers, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ImageDataset(samples, transform, spec.resize_size),
                                       batch_size=batch_size, shuffle=shuffle, generator=g,
                                       num_workers=workers, drop_last=shuffle)


def qat(model, spec, cfg, samples, epochs: float, weight_range: str = "reduced",
        lr: float = 5e-5, batch_size: int = 32, workers: int = 2, bn_freeze: float = 0.5,
        observer: str = "moving_average", log=None):
    """Fake-quantized fine-tuning: BN statistics frozen after `bn_freeze` of the steps,
    observers (the scales) after 70%, cosine LR; returns the converted int8 reference graph."""
    t0 = time.time()
    example = (torch.zeros(2, 3, spec.img_size, spec.img_size),)
    prepared = quantize.prepare_qat(model, example, weight_range, observer)
    steps = max(1, math.ceil(epochs * len(samples) / batch_size))
    opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
    done, bn_frozen = 0, False
    bar = progress(total=steps, desc="QAT", unit="batch")
    while done < steps:
        for x, y, _ in _loader(samples, train_transform(spec, cfg), spec, batch_size, True,
                               workers, seed=done):
            if done >= steps:
                break
            if not bn_frozen and done >= int(steps * bn_freeze):
                from torchao.quantization.pt2e import move_exported_model_to_eval
                move_exported_model_to_eval(prepared)
                bn_frozen = True
            if done == int(steps * 0.7):
                quantize.set_observers(prepared, enabled=False)
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * done / steps))
            loss = F.cross_entropy(prepared(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    if log:
        log.info("QAT: %d steps (%.2f epochs) in %.0f s", steps, epochs, time.time() - t0)
    return quantize.convert(prepared)


@torch.no_grad()
def ptq(model, spec, samples, observer: str, weight_range: str = "reduced", batch_size: int = 32,
        workers: int = 2, log=None):
    """Post-training quantization: observe activations on the calibration samples."""
    t0 = time.time()
    example = (torch.zeros(2, 3, spec.img_size, spec.img_size),)
    prepared = quantize.prepare_ptq(model, example, observer, weight_range)
    for x, _, _ in progress(_loader(samples, eval_transform(spec), spec, batch_size, False,
                                    workers), desc="calibrate", unit="batch"):
        prepared(x)
    if log:
        log.info("PTQ (%s): %d calibration images in %.0f s", observer, len(samples),
                 time.time() - t0)
    return quantize.convert(prepared)
