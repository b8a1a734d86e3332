"""Image folders -> labelled splits: layout discovery, the split record (paths relative to the
data root), bad-image checks, and the one DataLoader builder every stage uses.

Accepted layouts: train/ + validation/ (or val/) [+ test/], each holding one folder per class,
or one level of class folders that edgetl splits itself (70/15/15, stratified, seeded). Hidden
and system folders (.ipynb_checkpoints, @eaDir, __MACOSX) are never read; files without an image
extension (Thumbs.db, notes.txt) are ignored and listed.
"""
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..bundle_runner import open_rgb
from ..core.errors import DataError
from ..core.files import read_json, write_json

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                 Image.DecompressionBombError)


@dataclass
class Splits:
    classes: list
    train: list          # [(absolute path str, label int)]
    val: list
    test: list
    source: str          # "folders" or "auto-split"
    root: str = ""       # the data folder (absolute)
    ignored: list = field(default_factory=list)   # non-image files found in class folders
    skipped: list = field(default_factory=list)   # unreadable images left out (--skip-bad-images)

    def all_samples(self) -> list:
        return self.train + self.val + self.test

    def manifest(self) -> dict:
        """The split record: paths relative to the data root, so a moved run still works."""
        rel = lambda p: Path(p).relative_to(self.root).as_posix()
        return {"root": self.root, "classes": self.classes, "source": self.source,
                **{s: [[rel(p), y] for p, y in getattr(self, s)] for s in ("train", "val", "test")},
                "ignored": [rel(p) for p in self.ignored], "skipped": self.skipped}


def _hidden(name: str) -> bool:
    return name.startswith((".", "@", "__"))


def _files(folder: Path) -> list:
    """Every file below `folder`, skipping hidden and system folders and files."""
    out = []
    for entry in sorted(folder.iterdir()):
        if _hidden(entry.name):
            continue
        if entry.is_dir():
            out += _files(entry)
        elif entry.is_file():
            out.append(entry)
    return out


def _class_folders(root: Path, ignored: list) -> dict:
    found = {}
    for d in sorted(root.iterdir()):
        if not d.is_dir() or _hidden(d.name):
            continue
        files = _files(d)
        images = [str(p) for p in files if p.suffix.lower() in IMAGE_EXTS]
        ignored += [str(p) for p in files if p.suffix.lower() not in IMAGE_EXTS]
        if not images:
            raise DataError(f"class folder {d} is empty: no images ({len(files)} other file(s)); "
                            "add .jpg/.png/... images or remove the folder")
        found[d.name] = images
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
        if len(files) < 3:
            raise DataError(f"class '{name}' has {len(files)} image(s): a split needs at least 3 "
                            "per class (one each for train, validation and test)")
        rng.shuffle(files)
        n_val = max(1, round(len(files) * fractions[1]))
        n_test = max(1, round(len(files) * fractions[2]))
        cut = (files[n_val + n_test:], files[:n_val], files[n_val:n_val + n_test])
        for part, chunk in zip(parts, cut):
            part.extend((p, label) for p in chunk)
    return parts


def discover(data, seed: int = 0) -> Splits:
    """Read DATA as train/validation[/test] class folders, or class folders split here."""
    root = Path(data).resolve()
    if not root.is_dir():
        raise DataError(f"data folder {data} does not exist: pass a folder of class folders")
    train_dir = _split_dir(root, "train")
    if train_dir is None and (_split_dir(root, "val") or _split_dir(root, "test")):
        raise DataError(f"{root} has validation/test folders but no train/: add {root}/train")
    ignored = []
    if train_dir is not None:
        val_dir, test_dir = _split_dir(root, "val"), _split_dir(root, "test")
        if val_dir is None:
            raise DataError(f"{root} has train/ but no validation/ (or val/) split: add one, or "
                            "put the class folders directly in the data folder to have edgetl "
                            "split them")
        found = _class_folders(train_dir, ignored)
        classes = sorted(found)
        splits = Splits(classes, _labelled(found, classes, train_dir),
                        _labelled(_class_folders(val_dir, ignored), classes, val_dir),
                        _labelled(_class_folders(test_dir, ignored), classes, test_dir)
                        if test_dir else [], "folders", str(root), ignored)
        if not splits.val:
            raise DataError(f"{val_dir} holds no class folders with images: put one folder of "
                            "images per class there")
    else:
        found = _class_folders(root, ignored)
        classes = sorted(found)
    if len(classes) < 2:
        raise DataError(f"{train_dir or root} has {len(classes)} class folder(s): a classifier "
                        "needs at least 2 (one sub-folder of images per class)")
    if train_dir is None:
        splits = Splits(classes, *stratified_split(found, seed), "auto-split", str(root), ignored)
    return splits


def save_split(path, splits: Splits, fingerprint: dict) -> None:
    """split.json: the split, and the fingerprint of the data folder it was made from."""
    write_json(path, {**splits.manifest(), "fingerprint": fingerprint})


def load_split(path, root=None) -> Splits:
    """The recorded split; paths resolve against `root` (default: the recorded data root)."""
    d = read_json(path)
    base = Path(root or d["root"])
    absolute = lambda rel: str(base / rel)
    return Splits(d["classes"], *[[(absolute(p), y) for p, y in d[s]]
                                  for s in ("train", "val", "test")],
                  d["source"], str(base), [absolute(p) for p in d.get("ignored", [])],
                  d.get("skipped", []))


def check_image(path) -> str:
    """'' if the file decodes completely as an image, else why not (a truncated JPEG fails
    here, not halfway through training)."""
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            return "zero-byte file"
        with Image.open(p) as img:
            img.draft("RGB", (64, 64))
            img.load()
    except DECODE_ERRORS as e:
        return f"unreadable image ({e.__class__.__name__}: {e})"
    return ""


def find_bad_images(samples: list, workers: int = 8) -> list:
    """[(path, reason)] for every sample that cannot be decoded."""
    paths = [p for p, _ in samples]
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(check_image, paths))
    return [(p, r) for p, r in zip(paths, reasons) if r]


class ImageDataset(torch.utils.data.Dataset):
    """(transformed image, label, index) per sample; an undecodable image is an error, or
    with skip_bad a blank image labelled -1 that the caller drops."""

    def __init__(self, samples: list, transform, draft_size: int, skip_bad: bool = False):
        self.samples, self.transform, self.draft_size = samples, transform, draft_size
        self.skip_bad = skip_bad

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            img = open_rgb(path, self.draft_size)
        except DECODE_ERRORS as e:
            if not self.skip_bad:
                raise DataError(f"{path}: unreadable image ({e}); restore or remove it (edgetl "
                                "train: --skip-bad-images skips such files)") from e
            img, label = Image.new("RGB", (self.draft_size,) * 2), -1
        return self.transform(img), label, i


def loader(samples, transform, draft_size, batch_size, workers=0, shuffle=False, seed=0,
           skip_bad=False, sampler=None) -> torch.utils.data.DataLoader:
    """The one DataLoader over image files: decoded in `workers` processes, shuffled with a
    seeded generator when asked; batches are (images, labels, indices)."""
    g = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        ImageDataset(samples, transform, draft_size, skip_bad), batch_size=batch_size,
        shuffle=shuffle and sampler is None, sampler=sampler, generator=g,
        num_workers=workers, collate_fn=_collate)


def _collate(batch):
    x = torch.stack([b[0] for b in batch])
    return x, torch.tensor([b[1] for b in batch]), torch.tensor([b[2] for b in batch])
