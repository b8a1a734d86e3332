"""Fine-tuning stage: an image folder -> RUN/train/ (checkpoint, config, metrics, curves, log)."""
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import distributed, features, loop, strategy
from .checkpoint import (atomic_write, load_training_state, load_weights, save_checkpoint,
                         save_training_state, sha256, write_json)
from .config import load_config
from .data import discover, eval_transform, find_bad_images, load_split, save_split, \
    train_transform
from .errors import DataError, RunError
from .metrics import summarize
from .models import create_model
from .plots import training_curves
from .progress import bar as progress
from .rundir import prepare_stage_dir, stage_logger

STATE = "resume.safetensors"


def train(data, out, *, config=None, overwrite=False, resume=False, **options) -> dict:
    """Fine-tune a pretrained model on DATA and write RUN/train/; returns the run's metrics."""
    start = time.time()
    rank, world = distributed.init()
    run_dir = Path(out) / "train"
    given = {k: v for k, v in options.items() if v is not None}
    cfg = load_config(config, **{**(_saved_settings(run_dir) if resume else {}), **given})
    if distributed.is_main():
        prepare_stage_dir(run_dir, overwrite=overwrite, resume=resume)
    distributed.barrier()
    log = stage_logger(run_dir / "train.log", enabled=distributed.is_main())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    splits = load_split(run_dir / "split.json") if resume else discover(data, cfg.seed)
    skipped = _drop_bad_images(splits, cfg, log)
    model, spec = create_model(cfg.model, len(splits.classes), cfg.weights, cfg.dropout)
    spec = spec.with_size(cfg.img_size or spec.img_size)
    spec = spec.__class__(**{**spec.to_dict(), "labels": tuple(splits.classes)})
    if cfg.weights not in ("imagenet", "none"):
        load_weights(model, cfg.weights, expect_model=cfg.model)
    if distributed.is_main():
        save_split(run_dir / "split.json", splits)
        write_json(run_dir / "config.json", {"data": str(data), "world_size": world,
                                              **cfg.to_dict(), "spec": spec.to_dict()})
    log.info("model %s @%d px, %d classes, strategy %s, train/val/test %d/%d/%d (%s)",
             cfg.model, spec.img_size, len(splits.classes), cfg.strategy, len(splits.train),
             len(splits.val), len(splits.test), splits.source)

    unit = strategy.cache_unit(cfg, len(model.features))
    inputs = _build_inputs(model, unit, spec, splits, cfg, run_dir, rank, world, log)
    skipped += inputs.pop("skipped")
    best_state, history, best_epoch = _fit(model, unit, inputs, splits, spec, cfg, run_dir,
                                           resume, world, log)
    model.load_state_dict(best_state)
    metrics = _final_metrics(model, unit, inputs, splits, spec, cfg, history, best_epoch,
                             skipped, start)
    if distributed.is_main():
        extra = {"dropout": cfg.dropout, "val_top1": metrics["val"]["top1"],
                 "weights": cfg.weights, "img_size": spec.img_size}
        save_checkpoint(run_dir / "model.safetensors", model, spec, extra)
        metrics["checkpoint_sha256"] = sha256(run_dir / "model.safetensors")
        write_json(run_dir / "metrics.json", metrics)
        training_curves(history, run_dir / "curves.png")
        for leftover in (STATE, "best.safetensors"):
            (run_dir / leftover).unlink(missing_ok=True)
        log.info("val top-1 %.4f  test top-1 %s  in %.0f s", metrics["val"]["top1"],
                 metrics["test"]["top1"], metrics["wall_seconds"])
    distributed.barrier()
    distributed.shutdown()
    return metrics


def _saved_settings(run_dir) -> dict:
    """The settings an interrupted run started with, so --resume needs no options repeated."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunError(f"nothing to resume in {run_dir}: start the run without --resume")
    saved = json.loads(path.read_text())
    return {k: v for k, v in saved.items() if k not in ("data", "world_size", "spec")}


def _drop_bad_images(splits, cfg, log) -> list:
    skipped = []
    for name in ("train", "val", "test"):
        samples = getattr(splits, name)
        bad = dict(find_bad_images(samples))
        if bad and not cfg.skip_bad_images:
            path, why = next(iter(bad.items()))
            raise DataError(f"{path}: {why} ({len(bad)} bad file(s) in {name}); remove "
                            "them or pass --skip-bad-images to skip and count them")
        setattr(splits, name, [s for s in samples if s[0] not in bad])
        skipped += [{"path": p, "split": name, "reason": r} for p, r in bad.items()]
    for s in skipped:
        log.warning("skipped %s: %s", s["path"], s["reason"])
    return skipped


def _build_inputs(model, unit, spec, splits, cfg, run_dir, rank, world, log) -> dict:
    """Cached frozen-part outputs (unit > 0) for every split; None where images stream."""
    if unit == 0:
        return {"skipped": []}
    workers = cfg.workers or min(4, max(1, torch.get_num_threads()))
    base = dict(model=cfg.model, weights=cfg.weights if cfg.weights in ("imagenet", "none")
                else sha256(cfg.weights), unit=unit, spec=spec.to_dict(), seed=cfg.seed)
    out, skipped = {"skipped": []}, []
    n_images = (len(splits.train) * cfg.cache_views + len(splits.val) + len(splits.test)) / world
    frozen = features.FrozenPart(model, unit, spec.img_size, n_images)
    for name in ("train", "val", "test"):
        samples = getattr(splits, name)
        idx = torch.arange(rank, len(samples), world)
        mine = [samples[i] for i in idx]
        views = [eval_transform(spec)]
        if name == "train":
            views += [train_transform(spec, cfg)] * (cfg.cache_views - 1)
        key = features.cache_key(**base, split=name, samples=mine, views=len(views),
                                 aug=[cfg.crop_scale, cfg.hflip, cfg.color_jitter, cfg.rotation])
        suffix = f".rank{rank}of{world}" if world > 1 else ""
        t0 = time.time()
        feats, ok, hit = features.cached(
            run_dir / "cache" / f"{name}{suffix}.safetensors", key, run=frozen, samples=mine,
            transforms=views, draft_size=spec.resize_size, batch_size=cfg.batch_size,
            workers=workers, desc=f"cache {name}", skip_bad=cfg.skip_bad_images,
            disable=not distributed.is_main()) \
            if mine else (torch.zeros(0), torch.zeros(0, dtype=torch.bool), False)
        labels = torch.tensor([y for _, y in mine], dtype=torch.long)
        skipped += [{"path": mine[i][0], "split": name, "reason": "failed to decode"}
                    for i in torch.nonzero(~ok).flatten().tolist()]
        if name != "train" and world > 1:
            feats, ok = (distributed.gather_rows(t, idx, len(samples)) for t in (feats, ok))
            labels = torch.tensor([y for _, y in samples], dtype=torch.long)
        out[name] = (feats[ok], labels[ok])
        log.info("cached %s: %d images x %d view(s) %s in %.0f s (%s)", name, int(ok.sum()),
                 len(views), tuple(feats.shape[2:]), time.time() - t0,
                 "cache hit" if hit else frozen.engine)
    out["skipped"] = skipped
    return out


def _fit(model, unit, inputs, splits, spec, cfg, run_dir, resume, world, log) -> tuple:
    """Train per the strategy with early stopping; returns (best state dict, history)."""
    main = distributed.is_main()
    source = loop.CachedSource(inputs, cfg, world) if unit else \
        loop.StreamSource(splits, spec, cfg, world)
    opt = strategy.make_optimizer(model, cfg)
    state = {"epoch": 0, "step": 0, "best_top1": -1.0, "best_epoch": -1, "stale": 0,
             "history": []}
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if resume and (run_dir / STATE).is_file():
        state = load_training_state(run_dir / STATE, model, opt)
        best_state = load_file(str(run_dir / "best.safetensors"))
        log.info("resuming at epoch %d (best val top-1 %.4f)", state["epoch"] + 1,
                 state["best_top1"])
    weight = _class_weights(splits, cfg)
    total, warmup = cfg.epochs * source.steps, source.steps
    rng = np.random.default_rng(cfg.seed + state["epoch"])
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        first = strategy.trainable_from(cfg, len(model.features), epoch)
        strategy.set_trainable(model, first, strategy.updates_bn(cfg))
        tail = loop.wrap(model, unit, world)
        loss_sum = correct = seen = 0
        bar = progress(source.train_batches(epoch), total=source.steps, disable=not main,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for x, y in bar:
            strategy.set_lr(opt, strategy.lr_factor(state["step"], total, warmup))
            xm, targets = loop.mix(x, y, cfg, rng)
            logits = tail(xm)
            loss = loop.mixed_loss(logits, targets, weight, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(-1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
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
                atomic_write(run_dir / "best.safetensors",
                             lambda p: save_file(best_state, str(p)))
            save_training_state(run_dir / STATE, model, opt, state)
        if cfg.patience and state["stale"] >= cfg.patience and epoch >= cfg.warmup_epochs:
            log.info("early stop: no val improvement for %d epochs", cfg.patience)
            break
    return best_state, state["history"], state["best_epoch"]


def _class_weights(splits, cfg):
    if cfg.class_weights != "balanced":
        return None
    counts = torch.bincount(torch.tensor([y for _, y in splits.train]),
                            minlength=len(splits.classes)).float()
    return counts.sum() / (len(counts) * counts.clamp(min=1))


def _final_metrics(model, unit, inputs, splits, spec, cfg, history, best_epoch, skipped,
                   start) -> dict:
    source = loop.CachedSource(inputs, cfg, 1) if unit else \
        loop.StreamSource(splits, spec, cfg, 1)
    tail = loop.Tail(model, unit)
    val = summarize(*loop.predict(tail, source.eval_batches("val")), splits.classes)
    test = summarize(*loop.predict(tail, source.eval_batches("test")), splits.classes) \
        if splits.test else {"top1": None, "n": 0, "per_class": {}, "confusion_matrix": []}
    report = test if splits.test else val
    return {"model": cfg.model, "img_size": spec.img_size, "strategy": cfg.strategy,
            "classes": splits.classes, "split_source": splits.source,
            "n": {"train": len(splits.train), "val": val["n"], "test": test["n"]},
            "val": {"top1": val["top1"], "n": val["n"]},
            "test": {"top1": test["top1"], "n": test["n"]},
            "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"],
            "per_class_split": "test" if splits.test else "val",
            "best_epoch": best_epoch + 1, "epochs_run": len(history),
            "skipped_images": {"count": len(skipped), "files": skipped},
            "cached_from_unit": unit, "history": history,
            "wall_seconds": round(time.time() - start, 1)}
