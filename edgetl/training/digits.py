"""The demo data set: scikit-learn's handwritten digits (shipped inside the installed package),
written out as an RGB image folder, one class folder per digit."""
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(folder, size: int = 32) -> Path:
    """1,797 8x8 grayscale digits -> folder/<digit>/<i>.png, upscaled RGB (idempotent)."""
    from sklearn.datasets import load_digits
    folder = Path(folder)
    digits = load_digits()
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.png")) == len(digits.images):
        return folder
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        pixels = (255 - img * (255 / 16)).astype(np.uint8)   # dark ink on white, like paper
        out = folder / str(label) / f"{i:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").resize((size, size), Image.BICUBIC).convert("RGB").save(out)
    return folder
