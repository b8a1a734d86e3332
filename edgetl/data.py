"""Image folders, splits, image decoding and the transforms derived from a model's spec."""
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torchvision.transforms import v2 as T

from .errors import DataError
from .models import ModelSpec

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass
class Splits:
    classes: list
    train: list          # [(path str, label int)]
    val: list
    test: list
    source: str          # "folders" or "auto-split"

    def manifest(self) -> dict:
        return {"classes": self.classes, "source": self.source,
                **{s: [[p, y] for p, y in getattr(self, s)] for s in ("train", "val", "test")}}


def _class_folders(root: Path) -> dict:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    found = {}
    for name in classes:
        files = sorted(str(p) for p in (root / name).rglob("*")
                       if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"class folder {root / name} is empty: add images or remove it")
        found[name] = files
    return found


def _labelled(found: dict, classes: list, where: Path) -> list:
    extra = sorted(set(found) - set(classes))
    if extra:
        raise DataError(f"{where} has classes not in train/: {', '.join(extra)}; "
                        "use the same class folders in every split")
    return [(p, classes.index(c)) for c in found for p in found[c]]


def _split_dir(root: Path, split: str):
    for name in SPLIT_NAMES[split]:
        if (root / name).is_dir():
            return root / name
    return None


def stratified_split(found: dict, seed: int, fractions=(0.7, 0.15, 0.15)) -> tuple:
    rng = random.Random(seed)
    parts = ([], [], [])
    for label, name in enumerate(sorted(found)):
        files = list(found[name])
        rng.shuffle(files)
        n_val = max(1, round(len(files) * fractions[1]))
        n_test = max(1, round(len(files) * fractions[2]))
        if len(files) < 3:
            raise DataError(f"class '{name}' has {len(files)} file(s): a split needs at least 3 "
                            "per class (one each for train, validation and test)")
        cut = (files[n_val + n_test:], files[:n_val], files[n_val:n_val + n_test])
        for part, chunk in zip(parts, cut):
            part.extend((p, label) for p in chunk)
    return parts


def discover(data, seed: int = 0) -> Splits:
    """Read DATA as train/validation[/test] class folders, or class folders split here."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist: pass a folder of class folders")
    train_dir = _split_dir(root, "train")
    if train_dir is None and (_split_dir(root, "val") or _split_dir(root, "test")):
        raise DataError(f"{root} has validation/test folders but no train/: add {root}/train")
    if train_dir is not None:
        val_dir, test_dir = _split_dir(root, "val"), _split_dir(root, "test")
        if val_dir is None:
            raise DataError(f"{root} has train/ but no validation/ (or val/) split: add one, or "
                            "put the class folders directly in the data folder to have edgetl "
                            "split them")
        found = _class_folders(train_dir)
        classes = sorted(found)
        splits = Splits(classes, _labelled(found, classes, train_dir),
                        _labelled(_class_folders(val_dir), classes, val_dir),
                        _labelled(_class_folders(test_dir), classes, test_dir) if test_dir else [],
                        "folders")
    else:
        found = _class_folders(root)
        classes = sorted(found)
    if len(classes) < 2:
        raise DataError(f"{train_dir or root} has {len(classes)} class folder(s): a classifier "
                        "needs at least 2 (one sub-folder of images per class)")
    if train_dir is None:
        splits = Splits(classes, *stratified_split(found, seed), "auto-split")
    return splits


def open_rgb(path, draft_size: int = 0) -> Image.Image:
    """Decode any common mode (L, LA, P, RGBA, CMYK, I;16, I, F) to 8-bit RGB."""
    img = Image.open(path)
    if draft_size and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        peak = arr.max() if arr.size else 1.0
        arr = arr / (65535.0 if peak > 255 else 255.0) * 255.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, img)
    return img.convert("RGB")


def check_image(path) -> str:
    """'' if the file decodes as an image, else the reason it does not."""
    p = Path(path)
    if p.suffix.lower() not in IMAGE_EXTS:
        return "not an image file extension"
    if p.stat().st_size == 0:
        return "zero-byte file"
    try:
        with Image.open(p) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"unreadable image ({e.__class__.__name__}: {e})"
    return ""


def find_bad_images(samples: list, workers: int = 8) -> list:
    """[(path, reason)] for every sample that cannot be decoded."""
    paths = [p for p, _ in samples]
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(check_image, paths))
    return [(p, r) for p, r in zip(paths, reasons) if r]


def eval_transform(spec: ModelSpec):
    interp = T.InterpolationMode(spec.interpolation)
    return T.Compose([T.ToImage(), T.Resize(spec.resize_size, interp, antialias=True),
                      T.CenterCrop(spec.img_size), T.ToDtype(torch.float32, scale=True),
                      T.Normalize(spec.mean, spec.std)])


def train_transform(spec: ModelSpec, cfg) -> T.Compose:
    interp = T.InterpolationMode(spec.interpolation)
    steps = [T.ToImage(), T.RandomResizedCrop(spec.img_size, scale=(cfg.crop_scale, 1.0),
                                              interpolation=interp, antialias=True)]
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip())
    if cfg.color_jitter:
        j = cfg.color_jitter
        steps.append(T.ColorJitter(j, j, j))
    if cfg.rotation:
        steps.append(T.RandomRotation(cfg.rotation, interpolation=interp))
    return T.Compose(steps + [T.ToDtype(torch.float32, scale=True),
                              T.Normalize(spec.mean, spec.std)])


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor, label, index) per sample, decoded with JPEG draft mode for speed."""

    def __init__(self, samples: list, transform, draft_size: int, skip_bad: bool = False):
        self.samples, self.transform, self.draft_size = samples, transform, draft_size
        self.skip_bad = skip_bad

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            img = open_rgb(path, self.draft_size)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if not self.skip_bad:
                raise DataError(f"{path}: unreadable image ({e}); remove it or pass "
                                "--skip-bad-images") from e
            img, label = Image.new("RGB", (self.draft_size,) * 2), -1
        return self.transform(img), label, i


def save_split(path, splits: Splits) -> None:
    from .checkpoint import write_json
    write_json(path, splits.manifest())


def load_split(path) -> Splits:
    d = json.loads(Path(path).read_text())
    return Splits(d["classes"], *[[(p, y) for p, y in d[s]] for s in ("train", "val", "test")],
                  d["source"])
