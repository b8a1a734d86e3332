"""The number format training steps run in: bf16 autocast (oneDNN) where the CPU computes bf16
natively (AMX or AVX512-BF16), fp32 elsewhere. One step of the default tail
(benchmarks/results/tail_step_profile.json and its history): the 1x1 convolutions run faster in
bf16 on both paths, but bf16 depthwise convolutions' backward is 3-4x slower, so those stay fp32
(1.5x a step with AVX512-BF16 alone, 1.5x with AMX). Evaluation (so every validation number),
master weights and the optimizer are always fp32."""
import contextlib
import types

import torch

# setting -> (dtype of the autocast, or None: plain fp32)
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
CHOICES = ("auto", *DTYPES)


# oneDNN's native bf16 paths, fastest first: (name, torch's probe for it)
BF16_PATHS = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))


def bf16_path() -> str:
    """The CPU's native bf16 path this process can use ('AMX', 'AVX512-BF16'), or ''."""
    for name, probe in BF16_PATHS:
        if getattr(torch.cpu, probe, lambda: False)():
            return name
    return ""


def resolve(setting: str) -> tuple:
    """(precision that runs, why): 'auto' is bf16 where the CPU has a native bf16 path."""
    if setting != "auto":
        return setting, "asked for"
    path = bf16_path()
    return ("bf16", f"auto: the CPU has {path}") if path else \
        ("fp32", "auto: no native bf16 on this CPU (neither AMX nor AVX512-BF16)")


def _fp32_forward(module, x):
    with torch.autocast("cpu", enabled=False):
        return type(module).forward(module, x.float())


@contextlib.contextmanager
def training_steps(model, precision: str):
    """Inside: forward passes of `model` autocast to `precision` (bf16: depthwise convolutions
    excepted, they run fp32); outside, the model is as it was."""
    dtype = DTYPES[precision]
    if dtype is None:
        yield
        return
    depthwise = [m for m in model.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    for m in depthwise:
        m.forward = types.MethodType(_fp32_forward, m)
    try:
        with torch.autocast("cpu", dtype=dtype):
            yield
    finally:
        for m in depthwise:
            del m.forward
