"""Activation fake quantization, exact and cheaper where no gradient flows through it.

ATen's per-tensor fake quantization always runs its autograd kernel, which also writes a mask
for the backward pass, element by element: in a QAT step of Lite0 @224 it was 37% of the CPU
time (benchmarks/history/qat_step_profile_intel_amx_425a403.json), nearly all of it in the frozen,
high-resolution units, where no gradient flows. There (and in every no-grad pass: calibration
checks, references) the same values come from four vectorised passes:
round(x * (1/scale)) clamped to [qmin - zp, qmax - zp], times scale, which is ATen's formula
((clamp(zp + round(x * inv_scale), qmin, qmax) - zp) * scale, inv_scale = 1/scale in float32)
step for step in float32: bit for bit the same for finite inputs.
"""
import contextlib

import torch
from torchao.quantization.pt2e import FakeQuantize as TorchaoFakeQuantize


def fake_quantize_values(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                         quant_min: int, quant_max: int) -> torch.Tensor:
    """torch.fake_quantize_per_tensor_affine(x, ...)'s values, without its gradient mask."""
    z = int(zero_point)
    return torch.mul(x, 1.0 / scale).round_().clamp_(quant_min - z, quant_max - z).mul_(scale)


class FakeQuantize(TorchaoFakeQuantize):
    """torchao's FakeQuantize; a per-tensor one with frozen scales (observer off) whose input
    takes no gradient computes its values with `fake_quantize_values`."""

    def forward(self, X):
        if X.requires_grad or self.is_per_channel or not self.fake_quant_enabled[0] or \
                self.observer_enabled[0]:
            return super().forward(X)
        post = self.activation_post_process
        return fake_quantize_values(X, self.scale, self.zero_point, post.quant_min,
                                    post.quant_max)


@contextlib.contextmanager
def atens_kernel():
    """Within it, every edgetl FakeQuantize computes through ATen's kernel (as before this
    module): for measuring and checking the difference."""
    own = FakeQuantize.forward
    FakeQuantize.forward = TorchaoFakeQuantize.forward
    try:
        yield
    finally:
        FakeQuantize.forward = own
