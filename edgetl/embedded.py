"""Embedded default: scikit-learn's handwritten digits (shipped inside the installed package),
written as an RGB image folder and run through the pipeline."""
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_SETTINGS = dict(model="efficientnet_lite0", img_size=64, epochs=12, warmup_epochs=2,
                     cache_views=3, batch_size=64, rotation=0.0, hflip=False)


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


DEMO_EXPORT = dict(qat_epochs=1.0, bundle_size=100)
DEMO_BENCH = dict(iters=50, trials=3)


def demo(out, target="x86-cpu", overwrite=False, **overrides) -> dict:
    """The main job on the digits: fine-tune efficientnet_lite0 at 64 px, QAT, export the
    target's builds, benchmark them; returns {"train", "export", "bench", "skipped"}."""
    from .main_job import run
    data = write_digits(Path(out) / "data" / "digits")
    settings = {**DEMO_SETTINGS, **overrides}
    return run(data, target, out, model=settings.pop("model"), img_size=settings.pop("img_size"),
               overwrite=overwrite, train_options=settings, export_options=DEMO_EXPORT,
               bench_options=DEMO_BENCH)
