"""Deployment bundles: model file + manifest (everything needed to feed it) + a small evaluation
set + the standalone runner, one folder per build. The manifest holds the sha256 of every file
the bundle ships, which the runner checks before it runs anything."""
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core import documents
from ..core.files import sha256
from ..training.images import loader
from ..training.transforms import crop_transform
from ..quantizing.calibration import select
from .formats import FORMATS, model_file

RUNNER = Path(__file__).resolve().parent.parent / "bundle_runner.py"
SAMPLE_FILES = 4                      # original image files for end-to-end latency
SAMPLE_MAX_BYTES = 8 << 20


class HeldOut(NamedTuple):
    """The held-out images a bundle's evaluation set comes from: uint8 crops, labels, this
    build's PyTorch reference predictions, the fp32 model's logits, and the files."""
    images: np.ndarray
    labels: np.ndarray
    reference: np.ndarray
    fp32_logits: np.ndarray
    paths: list


def eval_images(samples: list, spec) -> tuple:
    """uint8 [N, H, W, 3] crops (the training evaluation crop) and int labels."""
    images, labels = [], []
    for x, y, _ in loader(samples, crop_transform(spec), spec.resize_size, 64, workers=2):
        images.append(x.permute(0, 2, 3, 1).numpy())
        labels.append(y.numpy())
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


def write_bundle(folder: Path, build, data: bytes, spec, meta: dict, held_out: HeldOut,
                 bundle_size: int) -> dict:
    """`bundle_size` class-balanced images of `held_out` become the bundle's evaluation set
    (with the reference, for agreement on the device, and fp32's predictions and margins with
    the file names, for the flip audit); a few original files time the app's whole path."""
    folder.mkdir(parents=True)
    fmt, name = FORMATS[build.format], model_file(build)
    (folder / name).write_bytes(data)
    keep = _balanced(held_out.labels, bundle_size)
    fp32 = held_out.fp32_logits[keep]
    top2 = np.sort(fp32, axis=-1)[:, -2:]
    names = np.array([Path(held_out.paths[i]).name for i in keep])
    np.savez_compressed(folder / "eval.npz", images=held_out.images[keep],
                        labels=held_out.labels[keep], reference=held_out.reference[keep],
                        fp32=fp32.argmax(-1), fp32_margin=top2[:, 1] - top2[:, 0], names=names)
    samples = _copy_samples(folder, [held_out.paths[i] for i in keep])
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
                "macs": meta.get("macs"), "samples": samples,
                "source_checkpoint_sha256": meta["source_checkpoint_sha256"],
                "edgetl_version": meta["edgetl_version"]}
    if fmt.extras:
        manifest.update(fmt.extras(folder, build, spec, meta))
    seal(folder, manifest)
    return manifest


def _copy_samples(folder: Path, paths: list) -> list:
    """Up to SAMPLE_FILES original image files (as the camera wrote them) for end-to-end
    latency on the device; their names in the bundle."""
    names = []
    for path in paths:
        path = Path(path)
        if len(names) == SAMPLE_FILES:
            break
        if path.is_file() and path.stat().st_size <= SAMPLE_MAX_BYTES:
            names.append(f"sample-{len(names)}{path.suffix.lower()}")
            shutil.copyfile(path, folder / names[-1])
    return names


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
