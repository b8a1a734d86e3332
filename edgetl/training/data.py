"""Image folders -> labelled splits: layout discovery and the split record (paths relative to
the data root). Decoding the images into batches: training/images.py.

Accepted layouts: train/ + validation/ (or val/) [+ test/], each holding one folder per class;
train/ + test/, whose validation split edgetl carves out of train/ (15%, stratified, seeded); or
one level of class folders (or train/ alone) that edgetl splits itself (70/15/15, stratified,
seeded). Hidden folders (a leading dot) and the system folders (core/folders.py) are never
read; files without an image extension (Thumbs.db, notes.txt) are ignored and listed. A folder
reached twice (a link loop) is read once, and every image file counts once, whatever its path.
"""
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DataError
from ..core.files import read_json, write_json
from ..core.folders import IMAGE_EXTS, files_below, hidden

SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
CARVED_VAL = 0.15          # of train/, when a data set has train/ + test/ but no validation/


@dataclass
class Splits:
    classes: list
    train: list          # [(absolute path str, label int)]
    val: list
    test: list
    source: str          # "folders", "folders, validation carved from train/" or "auto-split"
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


def _class_folders(root: Path, ignored: list, seen: set = None) -> dict:
    found, seen = {}, set() if seen is None else seen
    for d in sorted(root.iterdir()):
        if not d.is_dir() or hidden(d.name):
            continue
        files = files_below(d, seen, (os.path.realpath(root),))
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
    """(train, val, test) out of class folders, >= 1 image a class in validation and test."""
    return _stratify(found, seed, fractions[1:], "class '{name}' has {n} image(s): a split needs "
                     "at least 3 per class (one each for train, validation and test)")


def carve_validation(found: dict, seed: int, fraction: float = CARVED_VAL) -> tuple:
    """(train, val) out of train/'s class folders: stratified, seeded, >= 1 image a class."""
    train, val, _ = _stratify(found, seed, (fraction, 0), "class '{name}' has {n} image(s) in "
                              "train/ and there is no validation/ folder: add images, or a "
                              "validation/ folder")
    return train, val


def _stratify(found: dict, seed: int, fractions: tuple, too_few: str) -> tuple:
    """(train, val, test): per class a seeded shuffle, then the validation and test fractions
    (each >= 1 image where its fraction is not 0), the rest for training."""
    rng = random.Random(seed)
    parts = ([], [], [])
    for label, name in enumerate(sorted(found)):
        files = list(found[name])
        if len(files) < 1 + sum(1 for f in fractions if f):
            raise DataError(too_few.format(name=name, n=len(files)))
        rng.shuffle(files)
        n_val, n_test = (max(1, round(len(files) * f)) if f else 0 for f in fractions)
        cut = (files[n_val + n_test:], files[:n_val], files[n_val:n_val + n_test])
        for part, chunk in zip(parts, cut):
            part.extend((p, label) for p in chunk)
    return parts


def discover(data, seed: int = 0) -> Splits:
    """Read DATA as train/validation[/test] class folders (validation carved out of train/
    when absent), or class folders split here."""
    root = Path(data).resolve()
    if not root.is_dir():
        raise DataError(f"data folder {data} does not exist: pass a folder of class folders")
    train_dir = _split_dir(root, "train")
    if train_dir is None and (_split_dir(root, "val") or _split_dir(root, "test")):
        raise DataError(f"{root} has validation/test folders but no train/: add {root}/train")
    only_train = train_dir is not None and not (_split_dir(root, "val") or
                                                 _split_dir(root, "test"))
    if train_dir is None or only_train:           # all the labelled data: split it here
        ignored, where = [], train_dir or root
        found = _class_folders(where, ignored)
        _enough_classes(found, where)
        return Splits(sorted(found), *stratified_split(found, seed),
                      "auto-split" + (" of train/" if only_train else ""), str(root), ignored)
    return _from_split_folders(root, train_dir, seed)


def _from_split_folders(root: Path, train_dir: Path, seed: int) -> Splits:
    ignored, seen = [], set()
    val_dir, test_dir = _split_dir(root, "val"), _split_dir(root, "test")
    found = _class_folders(train_dir, ignored, seen)
    _enough_classes(found, train_dir)
    classes = sorted(found)
    test = _labelled(_class_folders(test_dir, ignored, seen), classes, test_dir) \
        if test_dir else []
    if val_dir is None:
        train, val = carve_validation(found, seed)
        source = f"folders, validation carved from train/ ({CARVED_VAL:.0%}, seed {seed})"
    else:
        train, source = _labelled(found, classes, train_dir), "folders"
        val = _labelled(_class_folders(val_dir, ignored, seen), classes, val_dir)
        if not val:
            raise DataError(f"{val_dir} holds no class folders with images: put one folder of "
                            "images per class there")
    return Splits(classes, train, val, test, source, str(root), ignored)


def _enough_classes(found: dict, where: Path) -> None:
    if len(found) < 2:
        raise DataError(f"{where} has {len(found)} class folder(s): a classifier needs at least "
                        "2 (one sub-folder of images per class)")


def check_out_apart(data, out) -> None:
    """A run folder never lies inside its data folder (its train/ would become a class or a
    split), nor the data inside a stage folder of the run (which --overwrite replaces)."""
    data, out = Path(data).resolve(), Path(out).resolve()
    stages = [out / name for name in ("train", "export", "bench")]
    if out == data or data in out.parents:
        raise DataError(f"--out {out} is inside the data folder {data}: choose a run folder "
                        "outside it (its train/ and export/ would be read as data)")
    if any(s == data or s in data.parents for s in stages):
        raise DataError(f"the data folder {data} is inside a stage folder of --out {out}: "
                        "choose another --out")


def follow_data(split_path, root: str) -> None:
    """Record a moved data folder (same files, new place) in split.json."""
    record = read_json(split_path)
    if record["root"] != root:
        write_json(split_path, {**record, "root": root,
                                "root_from_split": _from_split(root, split_path)})


def save_split(path, splits: Splits, fingerprint: dict) -> None:
    """split.json: the split, the fingerprint of the data folder it was made from, and where
    that folder lies relative to split.json (so a run moved with its data still finds it)."""
    write_json(path, {**splits.manifest(), "fingerprint": fingerprint,
                      "root_from_split": _from_split(splits.root, path)})


def _from_split(root: str, split_path) -> str:          # the data folder, seen from split.json
    return os.path.relpath(root, Path(split_path).resolve().parent)


def load_split(path, root=None) -> Splits:
    """The recorded split; paths resolve against `root` (default: the recorded data root or,
    when that is gone, the data folder at the same place relative to the run: a run copied or
    moved together with its data)."""
    d = read_json(path)
    base = Path(root or d["root"])
    beside = d.get("root_from_split")
    if root is None and not base.is_dir() and beside:
        base = (Path(path).resolve().parent / beside).resolve()
    absolute = lambda rel: str(base / rel)
    return Splits(d["classes"], *[[(absolute(p), y) for p, y in d[s]]
                                  for s in ("train", "val", "test")],
                  d["source"], str(base), [absolute(p) for p in d.get("ignored", [])],
                  d.get("skipped", []))
