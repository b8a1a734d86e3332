"""How fast the frozen part of the network runs over real images when its outputs are cached:
eager PyTorch (channels-last) against onnxruntime, on the same images, decoding and augmentation
(EfficientNet-Lite0 at 224 px, cut where the default fine-tune strategy caches).
Records images/s of each, the one-off export time and the largest difference in the features."""
import argparse
import time

import torch

from common import data_path, save
from edgetl.training import features, strategy
from edgetl.training.config import TrainConfig
from edgetl.training.data import discover
from edgetl.training.transforms import train_transform
from edgetl.models import create_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--images", type=int, default=768)
    args = ap.parse_args()
    cfg = TrainConfig()
    splits = discover(data_path(args.data))
    samples = splits.train[:args.images]
    model, spec = create_model(cfg.model, len(splits.classes))
    unit = strategy.cache_unit(cfg, len(model.features))
    result, outputs = {}, {}
    for engine in ("torch", "onnxruntime"):
        run = features.FrozenPart(model, unit, spec.img_size, len(samples), engine)
        t0 = time.time()
        run(torch.zeros(2, 3, spec.img_size, spec.img_size))   # onnxruntime: the export
        setup = time.time() - t0
        torch.manual_seed(0)   # the same augmentations for both engines
        t0 = time.time()
        decode = {"draft_size": spec.resize_size, "batch_size": cfg.batch_size, "workers": 2,
                  "skip_bad": False}
        outputs[engine], _, _ = features.compute(run, samples, [train_transform(spec, cfg)],
                                                 decode, engine)
        seconds = time.time() - t0
        result[engine] = {"setup_seconds": round(setup, 1), "seconds": round(seconds, 1),
                          "images_per_second": round(len(samples) / seconds, 1)}
        print(engine, result[engine])
    diff = (outputs["torch"].float() - outputs["onnxruntime"].float()).abs()
    save("cache_speed", {
        "setting": {"model": cfg.model, "img_size": spec.img_size, "cached_from_unit": unit,
                    "images": len(samples), "transform": "train augmentation", "decoders": 2},
        **result,
        "speedup": round(result["torch"]["seconds"] / result["onnxruntime"]["seconds"], 2),
        "max_abs_difference": float(diff.max()),
        "max_abs_feature": float(outputs["torch"].abs().max())})


if __name__ == "__main__":
    main()
