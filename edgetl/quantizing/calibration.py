"""Calibration sets: class-balanced, seeded subsets of the training split, recorded as a manifest
of paths and sha256 hashes so the same calibration can be replayed (and checked) later."""
import random
from pathlib import Path

from ..core.errors import DataError
from ..core.files import read_json, sha256, write_json


def select(samples: list, size: int, n_classes: int, seed: int = 0) -> list:
    """Round-robin over classes (shuffled per class) until `size` samples are chosen."""
    if size > len(samples):
        raise DataError(f"calibration set of {size} images asked for, but the training split "
                        f"has only {len(samples)}: pass --calib-size {len(samples)} or less")
    rng = random.Random(seed)
    by_class = [[s for s in samples if s[1] == c] for c in range(n_classes)]
    for group in by_class:
        rng.shuffle(group)
    chosen, i = [], 0
    while len(chosen) < size:
        for group in by_class:
            if i < len(group) and len(chosen) < size:
                chosen.append(group[i])
        i += 1
    return chosen


def write_manifest(path, samples: list, seed: int, observer: str) -> dict:
    manifest = {"seed": seed, "observer": observer, "size": len(samples),
                "files": [{"path": p, "label": y, "sha256": sha256(p)} for p, y in samples]}
    write_json(path, manifest)
    return manifest


def replay(path) -> list:
    """Samples of a recorded calibration set, refusing files that changed since."""
    manifest = read_json(path)
    for f in manifest["files"]:
        if not Path(f["path"]).is_file() or sha256(f["path"]) != f["sha256"]:
            raise DataError(f"{f['path']} changed or vanished since calibration set {path} was "
                            "recorded: restore it or calibrate anew")
    return [(f["path"], f["label"]) for f in manifest["files"]]
