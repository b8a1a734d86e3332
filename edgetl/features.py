"""The frozen part of the network runs once: its outputs are cached and training reads them.

A cache holds, for each image, `views` outputs of `features[:unit]`: view 0 from the eval
transform, the others from random training augmentations. Epochs then pick a view per image and
flip feature maps, so augmentation survives caching at no extra backbone cost.
"""
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from .progress import bar as progress

from .checkpoint import atomic_write
from .data import ImageDataset


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _prefix(model, unit):
    """Callable running the frozen part: features[:unit], pooled if the whole trunk is frozen."""
    def run(x):
        x = model.features[:unit](x)
        return model.pool(x).flatten(1) if unit >= len(model.features) else x
    return run


@torch.inference_mode()
def compute(model, unit, samples, transforms, draft_size, batch_size, workers, desc,
            skip_bad=False, channels_last=True, disable=False) -> tuple:
    """(features [N, V, ...] float16, ok mask [N]) for every transform in `transforms`."""
    model.eval()
    run = _prefix(model, unit)
    ok = torch.ones(len(samples), dtype=torch.bool)
    out = None
    bar = progress(total=len(samples) * len(transforms), desc=desc, unit="img",
                   disable=disable)
    for v, transform in enumerate(transforms):
        loader = torch.utils.data.DataLoader(
            ImageDataset(samples, transform, draft_size, skip_bad), batch_size=batch_size,
            num_workers=workers, persistent_workers=False, collate_fn=_collate)
        for x, labels, idx in loader:
            ok[idx[labels < 0]] = False
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
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
    hit = load(path, key)
    if hit is not None:
        return hit
    feats, ok = compute(**compute_args)
    if path is not None:
        os.makedirs(Path(path).parent, exist_ok=True)
        save(path, feats, ok, key)
    return feats, ok


def augment(batch: torch.Tensor, hflip: bool, generator=None) -> torch.Tensor:
    """Random horizontal flip of cached feature maps (a flip commutes with the convolutions
    up to padding, so this stands in for flipping the image)."""
    if not hflip or batch.ndim != 4:
        return batch
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = batch.clone()
    batch[flip] = batch[flip].flip(-1)
    return batch
