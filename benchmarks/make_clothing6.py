"""A second real data set in another layout: six clothing-small classes pooled from its splits
into flat class folders (edgetl splits them itself), made imbalanced on purpose (40 to all of
a class's photos). Deterministic; the photos are CC0 (see clothing-small's LICENSE)."""
import argparse
import random
import shutil
from pathlib import Path

from common import data_path


def main():
    COUNTS = {"dress": 40, "hat": 60, "longsleeve": 400, "pants": 150, "shoes": 250, "t-shirt": 600}

    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/data/clothing6-imbalanced")
    args = ap.parse_args()
    src, out = data_path(args.data), Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rng = random.Random(0)
    for name, count in COUNTS.items():
        photos = sorted(p for split in ("train", "validation", "test")
                        for p in (src / split / name).glob("*.jpg"))
        rng.shuffle(photos)
        (out / name).mkdir(parents=True)
        for p in photos[:count]:
            shutil.copy2(p, out / name / p.name)
        print(name, min(count, len(photos)))


if __name__ == "__main__":
    main()
