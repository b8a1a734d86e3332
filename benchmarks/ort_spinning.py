"""The training cache's pass over real images with onnxruntime's threads spinning between calls
(its default, as edgetl ran up to 1687344) and sleeping (`features.ORT_ALLOW_SPINNING`),
alternating in one process: EfficientNet-Lite0's frozen part at 224 px, the default cut, the
train split's 3 views (one clean, two augmented), the default 2 decoder processes and 2 threads,
the features compared bit for bit. Writes results/ort_spinning.json."""
import argparse
import time

import torch

from common import CODE, commit, data_path, save
from edgetl.models import create_model
from edgetl.training import features, strategy
from edgetl.training.config import TrainConfig
from edgetl.training.data import discover
from edgetl.training.transforms import eval_transform, train_transform


def cache_pass(model, unit, spec, cfg, samples, spin: str) -> tuple:
    own, features.ORT_ALLOW_SPINNING = features.ORT_ALLOW_SPINNING, spin
    try:
        run = features.FrozenPart(model, unit, spec.img_size, 10 ** 6, "onnxruntime")
        run(torch.zeros(2, 3, spec.img_size, spec.img_size))       # exported, not timed
    finally:
        features.ORT_ALLOW_SPINNING = own
    views = [eval_transform(spec)] + [train_transform(spec, cfg)] * (cfg.cache_views - 1)
    decode = {"draft_size": spec.resize_size, "batch_size": cfg.batch_size, "workers": 2,
              "skip_bad": False, "seed": cfg.seed}
    t0 = time.perf_counter()
    out, _, _ = features.compute(run, samples, views, decode, "cache", disable=True)
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = TrainConfig()
    splits = discover(data_path(args.data))
    samples = splits.train[:args.images]
    model, spec = create_model(cfg.model, len(splits.classes))
    model.eval()
    unit = strategy.cache_unit(cfg, len(model.features))
    rounds, same = [], True
    for _ in range(args.rounds):
        row = {}
        for name, spin in (("spinning", "1"), ("sleeping", "0")):
            row[f"{name}_s"], out = cache_pass(model, unit, spec, cfg, samples, spin)
            row[f"{name}_s"] = round(row[f"{name}_s"], 2)
            if name == "spinning":
                reference = out
            else:
                same = same and torch.equal(out, reference)
        row["speed_up"] = round(row["spinning_s"] / row["sleeping_s"], 3)
        rounds.append(row)
        print(row)
    save("ort_spinning", {"code": commit(CODE), "data": str(data_path(args.data)),
                          "images": len(samples),
                          "views": cfg.cache_views, "unit": unit, "threads": 2, "decoders": 2,
                          "rounds": rounds, "features_bit_for_bit_equal": same})


if __name__ == "__main__":
    main()
