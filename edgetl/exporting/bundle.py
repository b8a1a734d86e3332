"""Deployment bundles: model file + manifest (everything needed to feed it) + a small evaluation
set + the standalone runner, one folder per build. The manifest holds the sha256 of every file
the bundle ships, which the runner checks before it runs anything."""
from pathlib import Path

import numpy as np

from ..core import documents
from ..core.files import sha256
from ..training.data import loader
from ..training.transforms import crop_transform
from ..quantizing.calibration import select
from .formats import FORMATS, model_file

RUNNER = Path(__file__).resolve().parent.parent / "bundle_runner.py"


def eval_images(samples: list, spec) -> tuple:
    """uint8 [N, H, W, 3] crops (the training evaluation crop) and int labels."""
    images, labels = [], []
    for x, y, _ in loader(samples, crop_transform(spec), spec.resize_size, 64, workers=2):
        images.append(x.permute(0, 2, 3, 1).numpy())
        labels.append(y.numpy())
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


def write_bundle(folder: Path, build, data: bytes, spec, meta: dict, held_out,
                 bundle_size: int) -> dict:
    """`held_out`: (images, labels, the PyTorch reference's predictions on them), from which
    `bundle_size` class-balanced images become the bundle's evaluation set (agreement on the
    device needs the reference)."""
    images, labels, reference = held_out
    folder.mkdir(parents=True)
    fmt, name = FORMATS[build.format], model_file(build)
    (folder / name).write_bytes(data)
    keep = _balanced(labels, bundle_size)
    np.savez_compressed(folder / "eval.npz", images=images[keep], labels=labels[keep],
                        reference=reference[keep])
    (folder / "run.py").write_text(RUNNER.read_text())
    inp, out = fmt.io(build, folder / name, spec)
    manifest = {"format": build.format, "precision": build.precision, "variant": build.variant,
                "model_file": name, "labels": list(spec.labels),
                "preprocessing": {"img_size": spec.img_size, "resize_size": spec.resize_size,
                                  "interpolation": spec.interpolation,
                                  "policy": "EXIF upright, resize shorter side, centre crop",
                                  "mean": list(spec.mean), "std": list(spec.std),
                                  "color": "RGB", "scale": "pixels / 255"},
                "input": inp, "output": out, "quantization": meta.get("quantization"),
                "macs": meta.get("macs"),
                "source_checkpoint_sha256": meta["source_checkpoint_sha256"],
                "edgetl_version": meta["edgetl_version"]}
    if fmt.extras:
        manifest.update(fmt.extras(folder, build, spec, meta))
    seal(folder, manifest)
    return manifest


def seal(folder: Path, manifest: dict) -> None:
    """Record the sha256 of every file in the bundle (but the manifest) and write it."""
    manifest["sha256"] = {f.name: sha256(f) for f in sorted(folder.iterdir())
                          if f.is_file() and f.name != "manifest.json"}
    documents.write(folder / "manifest.json", "bundle", manifest)


def _balanced(labels, size: int) -> np.ndarray:
    if size >= len(labels):
        return np.arange(len(labels))
    picked = select([(i, int(y)) for i, y in enumerate(labels)], size, int(labels.max()) + 1)
    return np.array(sorted(i for i, _ in picked))
