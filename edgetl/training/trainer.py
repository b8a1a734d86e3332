"""Fine-tuning stage: an image folder -> RUN/train/ (checkpoint, config, split, metrics,
curves, log). Holds the run's lock; writes every file atomically; an interrupted run resumes."""
import contextlib
import time

import torch

from ..core import console
from ..core.errors import ConfigError, DataError, RunError
from ..core.files import read_json, sha256, write_json
from .. import page
from ..core.layout import RunLayout, RunLock, prepare_stage_dir
from ..models import create_model, load_weights, save_checkpoint
from . import distributed, features, precision, search, strategy, threads
from .config import load_config, resume_settings, save_run_config
from .data import check_out_apart, discover, load_split, save_split
from .images import find_bad_images
from .fingerprint import changes, fingerprint
from .fit import final_metrics, fit
from .job import Job
from .plots import training_curves


def train(data, out, *, config=None, overwrite=False, resume=False, **options) -> dict:
    """Fine-tune a pretrained model on DATA and write RUN/train/; returns the run's metrics."""
    start = time.time()
    rank, world = distributed.init()
    files = RunLayout(out).train
    given = {k: v for k, v in options.items() if v is not None}
    if resume and overwrite:
        raise RunError("--resume and --overwrite contradict each other: pass one of them")
    check_out_apart(data, out)
    cfg = load_config(config, **(resume_settings(files, given) if resume else given))
    main = distributed.is_main()
    with RunLock(out) if main else contextlib.nullcontext():
        if main and not resume:
            prepare_stage_dir(files.dir, "train", overwrite=overwrite)
        distributed.barrier()
        with console.stage_output(files.log):
            return _train(data, files, cfg, resume, rank, world, start)


def _train(data, files, cfg, resume, rank, world, start) -> dict:
    log = console.stage_logger(files.log, enabled=distributed.is_main())
    threads.set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    splits = _splits(data, files, cfg, resume, log)
    model, spec = create_model(cfg.model, len(splits.classes), cfg.weights, cfg.dropout)
    spec = spec.with_size(cfg.img_size or spec.img_size).with_labels(splits.classes)
    cfg.img_size = spec.img_size                # recorded as resolved: runs compare by value
    if cfg.weights not in ("imagenet", "none"):
        load_weights(model, cfg.weights, expect_model=cfg.model)
    if distributed.is_main():
        save_run_config(files.config, splits.root, world, cfg, spec.to_dict())
    log.info("model %s @%d px, %d classes, strategy %s, train/val/test %d/%d/%d (%s)",
             cfg.model, spec.img_size, len(splits.classes), cfg.strategy, len(splits.train),
             len(splits.val), len(splits.test), splits.source)
    log.info("training steps in %s (%s)", *precision.resolve(cfg.train_precision))
    unit = strategy.cache_unit(cfg, len(model.features))
    job = Job(model, unit, spec, splits, cfg, files, world, log)
    inputs = features.build_inputs(job, rank)
    skipped = splits.skipped + inputs.pop("skipped")
    if cfg.search and world > 1:
        raise ConfigError("--search runs its trials in one process: start it without torchrun")
    if cfg.search:
        best_state, job.cfg, history, best_epoch = search.run(job, inputs, files.search, log)
        cfg = job.cfg
    else:
        best_state, history, best_epoch = fit(job, inputs, resume)
    model.load_state_dict(best_state)
    metrics = final_metrics(job, inputs, history, best_epoch, skipped, start)
    if cfg.search:
        metrics["search"] = read_json(files.search)["chosen_settings"]
    if distributed.is_main():
        extra = {"dropout": cfg.dropout, "val_top1": metrics["val"]["top1"],
                 "weights": cfg.weights, "img_size": spec.img_size}
        save_checkpoint(files.checkpoint, model, spec, extra)
        metrics["checkpoint_sha256"] = sha256(files.checkpoint)
        training_curves(history, files.curves)
        write_json(files.metrics, metrics)          # last: its presence means "finished"
        page.refresh_or_warn(files.dir.parent, log)
        for leftover in (files.resume_state, files.best_state):
            leftover.unlink(missing_ok=True)
        log.info("val top-1 %.4f  test top-1 %s  in %.0f s", metrics["val"]["top1"],
                 metrics["test"]["top1"], metrics["wall_seconds"])
    distributed.barrier()
    distributed.shutdown()
    return metrics


def _splits(data, files, cfg, resume, log):
    """The split to train on: discovered and checked (new run), or the recorded one when
    resuming, refused if the data changed since the run started."""
    found = discover(data, cfg.seed)
    record = fingerprint(found)
    if resume:
        what = changes(read_json(files.split)["fingerprint"], record)
        if what:
            raise RunError(f"{data} changed since {files.dir} started ({what}): start a new run "
                           "(--overwrite, or another --out)")
        return load_split(files.split, root=found.root)
    found.skipped = _drop_bad_images(found, cfg, log)
    if distributed.is_main():
        save_split(files.split, found, record)
    return found


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
        if samples and not getattr(splits, name):
            raise DataError(f"every image of the {name} split is unreadable (e.g. {samples[0][0]}"
                            "): fix the data folder")
    for s in skipped:
        log.warning("skipped %s: %s", s["path"], s["reason"])
    if splits.ignored:
        log.info("ignored %d file(s) without an image extension (e.g. %s)", len(splits.ignored),
                 splits.ignored[0])
    return skipped
