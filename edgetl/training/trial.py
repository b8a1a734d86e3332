"""One recipe trained on cached features and scored on a validation set: the unit that
`--search` and the k-fold choice of the defaults (benchmarks/choose_defaults.py) are made of.
It never sees a test split: its caller hands it train and validation features only."""
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from ..core.layout import TrainFiles
from ..models import create_model
from . import loop, strategy
from .fit import fit
from .job import Job


def run(cfg, inputs: dict, classes: list, unit: int, work_dir, log) -> dict:
    """Train a fresh model with `cfg` on inputs["train"] (features of features[:unit], views
    and labels) and score its best epoch on inputs["val"]. Returns the best epoch, validation
    top-1, the per-image correctness (for paired comparisons), the seconds and the state."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    model, spec = create_model(cfg.model, len(classes), cfg.weights, cfg.dropout)
    first = strategy.cache_unit(cfg, len(model.features))
    if first < unit:
        raise ValueError(f"the recipe trains from unit {first}, below the cache's unit {unit}")
    labels = inputs["train"][1].tolist()
    splits = SimpleNamespace(classes=classes, train=[(None, y) for y in labels])
    job = Job(model, unit, spec, splits, cfg, TrainFiles(Path(work_dir)), 1, log)
    best_state, history, best_epoch = fit(job, inputs, resume=False)
    model.load_state_dict(best_state)
    source = loop.CachedSource(inputs, cfg, 1)
    logits, y = loop.predict(loop.Tail(model, unit), source.eval_batches("val"))
    correct = (logits.argmax(-1) == y)
    for leftover in (job.files.resume_state, job.files.best_state):
        leftover.unlink(missing_ok=True)
    return {"best_epoch": best_epoch + 1, "epochs_run": len(history),
            "val_top1": correct.float().mean().item(), "val_n": len(y),
            "correct": correct, "seconds": round(time.time() - t0, 1), "state": best_state,
            "history": history}
