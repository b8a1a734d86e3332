"""The number format training steps run in: bf16 autocast (oneDNN) where the CPU has AMX, fp32
elsewhere. Measured on one step of the default tail (benchmarks/results/tail_step_profile.json):
with AMX the 1x1 convolutions run 2-3x faster in bf16, but bf16 depthwise convolutions' backward
is 3-4x slower, so those stay fp32. Without AMX (AVX512-BF16 only) bf16 autocast was slower
(measured before depthwise convolutions were kept fp32), so auto keeps fp32 there. Evaluation
(so every validation number), master weights and the optimizer are always fp32."""
import contextlib
import types

import torch

# setting -> (dtype of the autocast, or None: plain fp32)
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
CHOICES = ("auto", *DTYPES)


def has_amx() -> bool:
    """AMX tiles usable by this process (oneDNN's bf16 fast path)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def resolve(setting: str) -> tuple:
    """(precision that runs, why): 'auto' is bf16 where the CPU has AMX, else fp32."""
    if setting != "auto":
        return setting, "asked for"
    return ("bf16", "auto: the CPU has AMX") if has_amx() else \
        ("fp32", "auto: no AMX on this CPU (bf16 was slower without it)")


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
