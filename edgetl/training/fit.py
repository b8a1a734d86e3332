"""The epoch loop: train per the strategy, early stopping on validation top-1, a resumable
state after every epoch; then the final metrics of the best epoch's weights."""
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..core.console import bar as progress
from ..core.errors import RunError
from ..core.files import atomic_write
from ..models.checkpoint import load_training_state, save_training_state
from . import distributed, loop, precision, schedule, strategy
from .metrics import summarize


def fit(job, inputs, resume) -> tuple:
    """Returns (best state dict, history, best epoch index)."""
    model, unit, splits, spec, cfg, files, world, log = job.model, job.unit, job.splits, \
        job.spec, job.cfg, job.files, job.world, job.log
    main = distributed.is_main()
    source = loop.CachedSource(inputs, cfg, world) if unit else \
        loop.StreamSource(splits, spec, cfg, world)
    opt = strategy.make_optimizer(model, cfg)
    state = {"epoch": 0, "step": 0, "best_top1": -1.0, "best_epoch": -1, "stale": 0,
             "history": []}
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if resume and files.resume_state.is_file():
        state = load_training_state(files.resume_state, model, opt)
        best_state = load_file(str(files.best_state))
        log.info("resuming at epoch %d (best val top-1 %.4f)", state["epoch"] + 1,
                 state["best_top1"])
    weight = class_weights(splits, cfg)
    total, warmup = cfg.epochs * source.steps, source.steps
    rng = np.random.default_rng(cfg.seed + state["epoch"])
    ran_in = precision.resolve(cfg.train_precision)[0]
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        first = strategy.trainable_from(cfg, len(model.features), epoch)
        strategy.set_trainable(model, first, strategy.updates_bn(cfg))
        tail = loop.wrap(model, unit, world)
        loss_sum = correct = seen = 0
        bar = progress(source.train_batches(epoch), total=source.steps, disable=not main,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for x, y, soft in bar:
            schedule.set_lr(opt, schedule.cosine(state["step"], total, warmup))
            xm, targets = loop.mix(x, y, cfg, rng)
            with precision.training_steps(model, ran_in):
                logits = tail(xm).float()
            loss = loop.distilled_loss(logits, loop.mixed_loss(logits, targets, weight,
                                                               cfg.label_smoothing), soft, cfg)
            if not math.isfinite(loss.item()):
                raise RunError(f"the training loss became {loss.item()} in epoch {epoch + 1}: "
                               "lower --lr (or --weight-decay) and start again")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            refresh=False)
        val_logits, val_y = loop.predict(loop.Tail(model, unit), source.eval_batches("val"))
        val_loss = F.cross_entropy(val_logits, val_y).item()
        val_top1 = (val_logits.argmax(-1) == val_y).float().mean().item()
        state["history"].append({"epoch": epoch, "train_loss": loss_sum / max(seen, 1),
                                 "train_top1": correct / max(seen, 1), "val_loss": val_loss,
                                 "val_top1": val_top1, "trainable_from_unit": first,
                                 "lr": opt.param_groups[0]["lr"],
                                 "seconds": round(time.time() - t0, 2)})
        improved = val_top1 > state["best_top1"]
        if improved:
            state.update(best_top1=val_top1, best_epoch=epoch, stale=0)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            state["stale"] += 1
        state["epoch"] = epoch + 1
        log.info("epoch %d/%d  loss %.4f  train %.4f  val %.4f%s  (%.1f s)", epoch + 1,
                 cfg.epochs, loss_sum / max(seen, 1), correct / max(seen, 1), val_top1,
                 "  *best*" if improved else "", time.time() - t0)
        if main:
            if improved:
                atomic_write(files.best_state, lambda p: save_file(best_state, str(p)))
            save_training_state(files.resume_state, model, opt, state)
        stop = cfg.patience and state["stale"] >= cfg.patience and epoch >= cfg.warmup_epochs
        if stop and epoch + 1 < cfg.epochs:
            log.info("early stop: no val improvement for %d epochs", cfg.patience)
            break
    return best_state, state["history"], state["best_epoch"]


def class_weights(splits, cfg):
    if cfg.class_weights != "balanced":
        return None
    counts = torch.bincount(torch.tensor([y for _, y in splits.train]),
                            minlength=len(splits.classes)).float()
    return counts.sum() / (len(counts) * counts.clamp(min=1))


def final_metrics(job, inputs, history, best_epoch, skipped, start) -> dict:
    model, unit, splits, spec, cfg = job.model, job.unit, job.splits, job.spec, job.cfg
    source = loop.CachedSource(inputs, cfg, 1) if unit else \
        loop.StreamSource(splits, spec, cfg, 1)
    tail = loop.Tail(model, unit)
    val_logits, val_labels = loop.predict(tail, source.eval_batches("val"))
    val = summarize(val_logits, val_labels, splits.classes)
    test = summarize(*loop.predict(tail, source.eval_batches("test")), splits.classes) \
        if splits.test else {"top1": None, "n": 0, "ci95": None, "per_class": {},
                             "confusion_matrix": []}
    report = test if splits.test else val
    return {"model": cfg.model, "img_size": spec.img_size, "strategy": cfg.strategy,
            "classes": splits.classes, "split_source": splits.source,
            "n": {"train": len(splits.train), "val": val["n"], "test": test["n"]},
            "val": {k: val[k] for k in ("top1", "n", "ci95")},
            "test": {k: test[k] for k in ("top1", "n", "ci95")},
            "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"],
            "per_class_split": "test" if splits.test else "val",
            "best_epoch": best_epoch + 1, "epochs_run": len(history),
            "skipped_images": {"count": len(skipped), "files": skipped},
            "ignored_files": [str(p) for p in splits.ignored],
            "cached_from_unit": unit, "history": history,
            "train_precision": dict(zip(("ran", "why"), precision.resolve(cfg.train_precision))),
            "val_errors": worst_errors(val_logits, val_labels, splits, skipped),
            "wall_seconds": round(time.time() - start, 1)}


def worst_errors(logits, labels, splits, skipped, keep: int = 12) -> list:
    """The validation images the model gets wrong most confidently (path relative to the data
    root, true and predicted class, the predicted class's probability)."""
    gone = {s["path"] for s in skipped}
    paths = [p for p, _ in splits.val if p not in gone]
    if len(paths) != len(labels):
        return []
    prob = torch.softmax(logits, -1)
    conf, pred = prob.max(-1)
    wrong = [i for i in torch.argsort(conf, descending=True).tolist() if pred[i] != labels[i]]
    return [{"path": os.path.relpath(paths[i], splits.root) if splits.root else paths[i],
             "label": splits.classes[int(labels[i])], "predicted": splits.classes[int(pred[i])],
             "confidence": round(float(conf[i]), 4)} for i in wrong[:keep]]
