"""Small real images on disk: classes that differ in colour and shape, learnable in seconds."""
import random
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

COLOURS = [(220, 40, 40), (40, 60, 220), (40, 180, 60), (230, 200, 30)]
FAST = dict(model="efficientnet_lite0", img_size=32, epochs=3, warmup_epochs=1, cache_views=2,
            batch_size=16, patience=0, workers=1)


def draw(label: int, rng: random.Random, size: int = 40) -> Image.Image:
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    x, y = rng.randint(2, 10), rng.randint(2, 10)
    w = rng.randint(18, 26)
    colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[label])
    (d.ellipse if label % 2 else d.rectangle)([x, y, x + w, y + w], fill=colour)
    return img


def make_folder(root: Path, classes=2, per_class=12, splits=("train", "validation", "test"),
                seed=0) -> Path:
    """root/<split>/<class>/<i>.jpg (or root/<class>/ when splits is empty)."""
    rng = random.Random(seed)
    for split in splits or ("",):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                draw(c, rng).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def python():
    return sys.executable
