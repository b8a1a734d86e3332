"""The frozen part of the network runs once: its outputs are cached and training reads them.

A cache holds, for each image, `views` outputs of `features[:unit]`: view 0 from the eval
transform, the others from random training augmentations. Epochs then pick a view per image and
flip feature maps, so augmentation survives caching at no extra backbone cost. That one pass
runs in onnxruntime when the job is big enough (see FrozenPart).
"""
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import atomic_write
from .data import ImageDataset
from .progress import bar as progress

# Image-views at 224 px from which onnxruntime pays: its export takes ~10 s, and it saves about
# 45 ms per 224-px image over eager PyTorch on a 2-core CPU (benchmarks/cache_speed.py).
ONNX_MIN_WORK = 500


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Prefix(torch.nn.Module):
    """The frozen part: features[:unit], pooled if the whole trunk is frozen."""

    def __init__(self, model, unit):
        super().__init__()
        self.trunk = model.features[:unit]
        self.pool = model.pool if unit >= len(model.features) else None

    def forward(self, x):
        x = self.trunk(x)
        return self.pool(x).flatten(1) if self.pool is not None else x


class FrozenPart:
    """The frozen part as a callable on float batches, in the engine that suits the job.

    "onnxruntime" exports it on first use (~10 s), then caches 4x faster than eager PyTorch on
    a 2-core CPU, decoding included (benchmarks/cache_speed.py); "torch" runs it eagerly,
    channels-last.
    "auto" picks onnxruntime once the job is big enough for the export to pay for itself.
    """

    def __init__(self, model, unit, img_size: int, n_images: int, engine: str = "auto"):
        self.prefix, self.img_size = Prefix(model, unit).eval(), img_size
        work = n_images * (img_size / 224) ** 2
        self.engine = engine if engine != "auto" else \
            "onnxruntime" if work >= ONNX_MIN_WORK else "torch"
        self._session = None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.engine == "torch":
            return self.prefix(x.contiguous(memory_format=torch.channels_last))
        if self._session is None:
            self._session = self._export()
        return torch.from_numpy(self._session.run(None, {"input": x.numpy()})[0])

    def _export(self):
        import onnxruntime as ort
        from .exporters.onnx import to_proto
        example = torch.zeros(2, 3, self.img_size, self.img_size)
        proto = to_proto(self.prefix, example, "features")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        return ort.InferenceSession(proto.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])


def compute(run: FrozenPart, samples, transforms, draft_size, batch_size, workers, desc,
            skip_bad=False, disable=False) -> tuple:
    """(features [N, V, ...] float16, ok mask [N]): `run` on every transform of every sample."""
    ok = torch.ones(len(samples), dtype=torch.bool)
    out = None
    bar = progress(total=len(samples) * len(transforms), desc=f"{desc} ({run.engine})",
                   unit="img", disable=disable)
    for v, transform in enumerate(transforms):
        loader = torch.utils.data.DataLoader(
            ImageDataset(samples, transform, draft_size, skip_bad), batch_size=batch_size,
            num_workers=workers, persistent_workers=False, collate_fn=_collate)
        for x, labels, idx in loader:
            ok[idx[labels < 0]] = False
            y = run(x).to(torch.float16).contiguous()
            if out is None:
                out = torch.zeros((len(samples), len(transforms), *y.shape[1:]), dtype=y.dtype)
            out[idx, v] = y
            bar.update(len(idx))
    bar.close()
    return out, ok


def _collate(batch):
    x = torch.stack([b[0] for b in batch])
    return x, torch.tensor([b[1] for b in batch]), torch.tensor([b[2] for b in batch])


def save(path, feats, ok, key) -> None:
    atomic_write(path, lambda p: save_file({"features": feats, "ok": ok}, str(p),
                                           metadata={"key": key}))


def load(path, key):
    """(features, ok) if `path` holds the cache for `key`, else None."""
    if not Path(path).is_file():
        return None
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        return f.get_tensor("features"), f.get_tensor("ok")


def cached(path, key, **compute_args) -> tuple:
    """(features, ok, hit): read from `path` if it holds `key`, else computed and saved there."""
    hit = load(path, key)
    if hit is not None:
        return (*hit, True)
    feats, ok = compute(**compute_args)
    if path is not None:
        os.makedirs(Path(path).parent, exist_ok=True)
        save(path, feats, ok, key)
    return feats, ok, False


def augment(batch: torch.Tensor, hflip: bool, generator=None) -> torch.Tensor:
    """Random horizontal flip of cached feature maps (a flip commutes with the convolutions
    up to padding, so this stands in for flipping the image)."""
    if not hflip or batch.ndim != 4:
        return batch
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = batch.clone()
    batch[flip] = batch[flip].flip(-1)
    return batch
