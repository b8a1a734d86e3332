"""The fine-tuning defaults chosen on validation: k-fold over train + validation (stratified, 3
folds: clothing-small's 3,409 images all become validation images once, so one image is 0.03
point instead of the single split's 0.3), never the test split.

Every candidate recipe trains with the edgetl epoch loop (edgetl.training.trial) on one cache of
the frozen part (3 views per image: the eval view and two augmented ones; a fold's validation
images use their eval view). Recipes that train fewer units read the same cache run through the
units they keep frozen, once. Recorded per candidate: pooled k-fold top-1 with its interval, the
paired difference against the best candidate (lost/gained, exact McNemar), the best epochs,
the training seconds per fold and which images it got right ("correct": one 0/1 character per
image of train + validation in discover's order, so questions on the same folds pair up).
The rule: the fastest candidate whose pooled top-1 is within RULE_POINTS of the best
candidate's and not worse by McNemar (p >= 0.05).

--question recipe (epochs, trained units; fp32 steps) writes results/choose_defaults.json;
--question precision (fp32 against bf16 training steps, the defaults' recipe) writes
results/choose_precision.json; --question views (cached views per training image, 3 or 2: a
candidate with fewer reads the first ones of the same cache, and its seconds add its share of
the measured cache pass) writes results/choose_views.json; --question tier (the accuracy
tier: EfficientNet-Lite2 at its native 260 px, trained units and epochs) writes
results/choose_tier.json."""
import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_path, save  # noqa: E402

from edgetl.core.intervals import paired, top1  # noqa: E402
from edgetl.models import create_model  # noqa: E402
from edgetl.training import features, precision, strategy, trial  # noqa: E402
from edgetl.training.config import TrainConfig  # noqa: E402
from edgetl.training.data import discover  # noqa: E402
from edgetl.training.transforms import eval_transform, train_transform  # noqa: E402

FP32 = {"train_precision": "fp32"}
LITE2 = {"model": "efficientnet_lite2"}
QUESTIONS = {     # question -> (result file, base overrides, {name: overrides of the base})
    "recipe": ("choose_defaults", {}, {      # decided in fp32, before bf16 steps existed
        "20 epochs, top 5 units (earlier default)": {"epochs": 20, "unfreeze": 5, **FP32},
        "12 epochs, top 5 units": {"epochs": 12, "unfreeze": 5, **FP32},
        "8 epochs, top 5 units": {"epochs": 8, "unfreeze": 5, **FP32},
        "12 epochs, top 3 units": {"epochs": 12, "unfreeze": 3, **FP32},
        "8 epochs, top 3 units": {"epochs": 8, "unfreeze": 3, **FP32}}),
    "precision": ("choose_precision", {}, {  # the chosen recipe's steps in either format
        "fp32 steps": FP32,
        "bf16 steps (depthwise fp32)": {"train_precision": "bf16"}}),
    "views": ("choose_views", {}, {          # the cache pass is a third of the main job's
        "3 views (1 plain, 2 augmented)": {"cache_views": 3},       # training: fewer views
        "2 views (1 plain, 1 augmented)": {"cache_views": 2}}),     # cost less to cache
    "tier": ("choose_tier", LITE2, {         # Lite2 @260: 23 units, the top 7 all at 9x9
        "12 epochs, top 5 units (the recipe before)": {"epochs": 12, "unfreeze": 5},
        "12 epochs, top 7 units (the whole stride-32 stage)": {"epochs": 12, "unfreeze": 7}}),
}
FOLDS, VIEWS, RULE_POINTS = 3, 3, 0.3


def pool_cache(data, out: Path, cfg, configs: dict) -> tuple:
    """(features [N, VIEWS, ...] of features[:unit] for train + validation, labels, classes,
    the candidates' units, model) with the widest candidate's unit."""
    splits = discover(data, cfg.seed)
    samples = splits.train + splits.val
    model, spec = create_model(cfg.model, len(splits.classes), cfg.weights, cfg.dropout)
    spec = spec.with_size(spec.img_size).with_labels(splits.classes)
    units = {strategy.cache_unit(c, len(model.features)) for c in configs.values()}
    unit = min(units)
    views = [eval_transform(spec)] + [train_transform(spec, cfg)] * (VIEWS - 1)
    frozen = features.FrozenPart(model, unit, spec.img_size, len(samples) * VIEWS)
    t0 = time.time()
    feats, ok, _, hit = features.cached(
        out / "pool.safetensors", features.cache_key(samples=samples, unit=unit, views=VIEWS,
                                                     model=cfg.model, seed=cfg.seed),
        run=frozen, samples=samples, transforms=views, decode={
            "draft_size": spec.resize_size, "batch_size": 64, "workers": 2, "skip_bad": False},
        desc="cache train+val")
    labels = torch.tensor([y for _, y in samples])
    seconds = time.time() - t0
    print(f"cache: {len(samples)} images x {VIEWS} views in {seconds:.0f} s"
          f"{' (hit)' if hit else ''}")
    if hit:
        sys.exit(f"{out / 'pool.safetensors'} was cached by an earlier run, so the cache pass was "
                 "not timed: choose another --out")
    return feats[ok], labels[ok], splits.classes, units, model, seconds


@torch.no_grad()
def deeper(feats, model, unit: int, to_unit: int) -> torch.Tensor:
    """The cache run on through the units a recipe keeps frozen (eval mode), once."""
    units = model.features[unit:to_unit].eval()
    out = []
    for b in range(0, len(feats), 256):
        x = feats[b:b + 256].flatten(0, 1).float().contiguous(memory_format=torch.channels_last)
        out.append(units(x).to(torch.float16).unflatten(0, (len(x) // VIEWS, VIEWS)))
    return torch.cat(out)


def evaluate(name, cfg, overrides, n_units, caches, labels, classes, folds, log,
             cache_seconds) -> dict:
    """A candidate over the folds; its seconds: training, plus its views' share of the cache
    pass (each fold trains on two thirds of the images)."""
    unit = strategy.cache_unit(cfg, n_units)
    views = cfg.cache_views
    correct = torch.zeros(len(labels), dtype=torch.bool)
    per_fold = []
    for k, (tr, va) in enumerate(folds):
        inputs = {"train": (caches[unit][tr][:, :views], labels[tr]),
                  "val": (caches[unit][va], labels[va])}
        with tempfile.TemporaryDirectory() as work:
            r = trial.run(cfg, inputs, classes, unit, work, log)
        correct[va] = r["correct"]
        per_fold.append({k2: r[k2] for k2 in ("best_epoch", "epochs_run", "val_top1", "val_n",
                                              "seconds")})
        print(f"{name} fold {k + 1}: val {r['val_top1']:.4f} best epoch {r['best_epoch']} "
              f"in {r['seconds']} s")
    caching = cache_seconds * views / VIEWS * (FOLDS - 1)
    return {"overrides": overrides, "unit": unit, "pooled": top1(int(correct.sum()), len(labels)),
            "folds": per_fold, "cache_share_seconds": round(caching, 1),
            "seconds": round(sum(f["seconds"] for f in per_fold) + caching, 1),
            "correct": correct.tolist()}


def choose(results: dict) -> tuple:
    best = max(results, key=lambda n: results[n]["pooled"]["top1"])
    for name, r in results.items():
        r["vs_best"] = {k: v for k, v in paired(results[best]["correct"], r["correct"]).items()}
    ok = [n for n, r in results.items() if r["vs_best"]["drop_points"] <= RULE_POINTS and
          r["vs_best"]["p_value"] >= 0.05]
    return best, min(ok, key=lambda n: results[n]["seconds"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/bench-defaults")
    ap.add_argument("--question", choices=tuple(QUESTIONS), default="recipe",
                    help="which defaults to choose: the recipe (epochs, trained units), the "
                    "training steps' number format or the accuracy tier's trained units")
    args = ap.parse_args()
    data, out = data_path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result_name, base, candidates = QUESTIONS[args.question]
    cfg = TrainConfig(**base)
    configs = {n: replace(cfg, **o).validate() for n, o in candidates.items()}
    feats, labels, classes, units, model, cache_seconds = pool_cache(data, out, cfg, configs)
    widest = min(units)
    caches = {u: feats if u == widest else deeper(feats, model, widest, u) for u in units}
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=cfg.seed)
                 .split(labels.numpy(), labels.numpy()))
    log = logging.getLogger("choose_defaults")
    log.addHandler(logging.StreamHandler())
    log.setLevel(logging.WARNING)
    results = {n: evaluate(n, c, {**base, **candidates[n]}, len(model.features), caches,
                           labels, classes, folds, log, cache_seconds)
               for n, c in configs.items()}
    best, chosen = choose(results)
    for r in results.values():     # per image, in train + validation order: paired later
        r["correct"] = "".join("1" if c else "0" for c in r["correct"])
    save(result_name, {
        "question": args.question, "bf16_path": precision.bf16_path(), "data": str(data),
        "images": len(labels), "folds": FOLDS, "views": VIEWS,
        "cache_seconds": round(cache_seconds, 1),
        "split_read": "train + validation only (the test split is never read)",
        "rule": f"the fastest candidate whose pooled k-fold top-1 is within {RULE_POINTS} "
                "points of the best candidate's and not worse by the exact McNemar test "
                "(p >= 0.05)", "best": best, "chosen": chosen, "candidates": results})
    for n, r in results.items():
        print(f"{n:45s} {r['pooled']['top1']:.4f}  {r['seconds']:7.1f} s  "
              f"lost/gained vs best {r['vs_best']['lost']}/{r['vs_best']['gained']}")
    print(f"best: {best}; chosen: {chosen}")


if __name__ == "__main__":
    main()
