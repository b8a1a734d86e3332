"""PyTorch references: the logits of the float model and of the int8 graph on uint8 crops,
fed exactly as the bundles feed their models, and top-1 on them."""
import numpy as np
import torch

from .. import bundle_runner


def top1(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).mean())


def torch_logits(model, images, spec, batch=4) -> np.ndarray:
    """A PyTorch model's logits (float or int8 reference graph) on uint8 crops, fed exactly as
    the bundles feed their models. Small batches keep the int8 graph's quantize/dequantize
    passes in cache: about 3x faster than batches of 64 at 224 px, predictions unchanged
    (benchmarks/reference_batch.py)."""
    manifest = {"preprocessing": {"mean": spec.mean, "std": spec.std},
                "input": {"layout": "NCHW", "dtype": "float32"}}
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(bundle_runner.to_input(images[i:i + batch], manifest))
            out.append(model(x).float().numpy())
    return np.concatenate(out)
