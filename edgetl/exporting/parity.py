"""Parity: each build, run in its own runtime on the held-out images, against its PyTorch
reference (fp32/fp16 builds: the float model; int8 builds: the quantized graph)."""
import numpy as np


THRESHOLDS = {"fp32": 0.995, "fp16": 0.99, "int8": 0.99}
TIE_STEPS = 4          # int8: reference top-2 within this many output steps is a tie


def decided_samples(reference: np.ndarray) -> np.ndarray:
    """Samples whose int8 reference top-1 wins by more than TIE_STEPS output quantization steps.
    The int8 logits lie on one grid (step = the output scale); two int8 runtimes round each
    layer differently, so a closer call may flip without either build being wrong."""
    grid = np.unique(np.round(reference.astype(np.float64), 6))
    steps = np.diff(grid)
    step = steps[steps > 1e-6].min() if (steps > 1e-6).any() else 0.0
    top2 = np.sort(reference, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > TIE_STEPS * step + 1e-6


def check(logits: np.ndarray, reference: np.ndarray, precision: str) -> dict:
    """Agreement with the reference; for int8 the threshold applies to decided samples."""
    same = logits.argmax(-1) == reference.argmax(-1)
    decided = decided_samples(reference) if precision == "int8" else np.ones_like(same)
    decided_agreement = float(same[decided].mean()) if decided.any() else 1.0
    return {"reference": "torch-int8 (quantized)" if precision == "int8" else "torch-fp32",
            "top1_agreement": float(same.mean()),
            "max_abs_diff": float(np.abs(logits - reference).max()),
            "ties": int((~decided).sum()), "decided_agreement": decided_agreement,
            "threshold": THRESHOLDS[precision],
            "passed": decided_agreement >= THRESHOLDS[precision]}
