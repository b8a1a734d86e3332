"""`--search SECONDS`: a small recipe search on the cached features, within the user's time
budget. The given recipe is trial 1; then recipes drawn (seeded, without repeats) from SPACE
while the next one is expected to fit in what is left. The trial with the highest validation
top-1 wins (ties: the earlier one); each trial's validation numbers, its paired difference
against trial 1 and its seconds are written to RUN/train/search.json. The test split is not
handed to any trial: it is read once, after the choice, by the final metrics."""
import dataclasses
import random
import tempfile
import time

from ..core.files import write_json
from ..core.intervals import paired, top1
from . import trial

# setting -> the values a trial may take (with the given recipe's own value)
SPACE = {"lr": (1e-3, 3e-3, 1e-2), "epochs": (8, 12, 20), "backbone_lr_mult": (0.1, 0.3),
         "label_smoothing": (0.0, 0.1), "dropout": (0.2, 0.4), "weight_decay": (1e-4, 1e-2)}
RULE = "highest validation top-1; ties: the earlier trial (the given recipe is trial 1)"


def recipes(cfg):
    """The given recipe, then every other combination of SPACE in a seeded random order."""
    base = {k: getattr(cfg, k) for k in SPACE}
    grid = [{}]
    for k, values in SPACE.items():
        grid = [{**g, k: v} for g in grid for v in sorted(set(values) | {base[k]})]
    others = [g for g in grid if g != base]
    random.Random(cfg.seed).shuffle(others)
    return [base] + others


def run(job, inputs, path, log) -> tuple:
    """Trials within job.cfg.search seconds on inputs' train and val; writes `path`.
    Returns (best state, the chosen TrainConfig, the chosen trial's history, best epoch)."""
    start, budget = time.time(), job.cfg.search
    seen = {k: inputs[k] for k in ("train", "val")}
    trials, results, per_epoch = [], [], None
    for settings in recipes(job.cfg):
        left = budget - (time.time() - start)
        if trials and per_epoch * settings["epochs"] > left:
            break
        cfg = dataclasses.replace(job.cfg, **settings)
        with tempfile.TemporaryDirectory(dir=job.files.dir) as work:
            r = trial.run(cfg, seen, job.splits.classes, job.unit, work, log)
        per_epoch = max(per_epoch or 0, r["seconds"] / max(1, r["epochs_run"]))
        results.append((cfg, r))
        trials.append(_record(settings, r, results[0][1]))
        log.info("search trial %d: %s  val %.4f  (%.0f s)", len(trials), _text(settings),
                 r["val_top1"], r["seconds"])
    chosen = max(range(len(results)), key=lambda i: (results[i][1]["val_top1"], -i))
    write_json(path, {"budget_seconds": budget, "seconds": round(time.time() - start, 1),
                      "rule": RULE, "space": SPACE, "chosen": chosen + 1,
                      "chosen_settings": trials[chosen]["settings"],
                      "test_split_read": False, "trials": trials})
    cfg, r = results[chosen]
    log.info("search: trial %d of %d chosen (%s), val %.4f; %s vs trial 1", chosen + 1,
             len(trials), _text(trials[chosen]["settings"]), r["val_top1"],
             _paired_text(trials[chosen]["vs_trial_1"]))
    return r["state"], cfg, r["history"], r["best_epoch"] - 1


def _record(settings, r, first) -> dict:
    return {"settings": settings, "val": top1(int(r["correct"].sum()), r["val_n"]),
            "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
            "seconds": r["seconds"], "vs_trial_1": paired(first["correct"].tolist(),
                                                          r["correct"].tolist())}


def _text(settings) -> str:
    return ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in settings.items())


def _paired_text(p) -> str:
    return f"{p['gained']} gained, {p['lost']} lost of {p['n']} validation images"
