"""The frozen part of the network runs once: its outputs are cached and training reads them.

A cache holds, for each image, `views` outputs of `features[:unit]`: view 0 from the eval
transform, the others from random training augmentations. Epochs then pick a view per image and
flip feature maps, so augmentation survives caching at no extra backbone cost. That one pass
runs in onnxruntime when the job is big enough (see FrozenPart).
"""
import hashlib
import json
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..core.console import bar as progress
from ..core.files import atomic_write, sha256
from . import distributed
from .images import views_loader
from .fingerprint import stats
from .transforms import eval_transform, train_transform

# onnxruntime's threads sleep between calls instead of spinning: the image decoders (and, in QAT,
# PyTorch) get the cores back. The cache pass over 640 training photos x 3 views 1.10-1.13x
# faster (3 rounds, 2-core AMD EPYC), the features bit for bit the same (ort_spinning.json).
ORT_ALLOW_SPINNING = "0"
# Image-views at 224 px from which onnxruntime pays: its export takes ~10 s, and it saves about
# 45 ms per 224-px image over eager PyTorch on a 2-core CPU (benchmarks/cache_speed.py).
ONNX_MIN_WORK = 500


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Prefix(torch.nn.Module):
    """The frozen part: features[:unit], pooled if the whole trunk is frozen."""

    def __init__(self, model, unit):
        super().__init__()
        self.trunk = model.features[:unit]
        self.pool = model.pool if unit >= len(model.features) else None

    def forward(self, x):
        x = self.trunk(x)
        return self.pool(x).flatten(1) if self.pool is not None else x


class FrozenPart:
    """The frozen part as a callable on float batches, in the engine that suits the job.

    "onnxruntime" exports it on first use (~10 s), then caches 4x faster than eager PyTorch on
    a 2-core CPU, decoding included (benchmarks/cache_speed.py); "torch" runs it eagerly,
    channels-last.
    "auto" picks onnxruntime once the job is big enough for the export to pay for itself.
    """

    def __init__(self, model, unit, img_size: int, n_images: int, engine: str = "auto",
                 module: torch.nn.Module = None):
        """`module`: run that instead of features[:unit] (a teacher's whole model)."""
        self.prefix = (module or Prefix(model, unit)).eval()
        self.img_size = img_size
        work = n_images * (img_size / 224) ** 2
        self.engine = engine if engine != "auto" else \
            "onnxruntime" if work >= ONNX_MIN_WORK else "torch"
        self._session = None

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.engine == "torch":
            return self.prefix(x.contiguous(memory_format=torch.channels_last))
        if self._session is None:
            self._session = self._export()
        return torch.from_numpy(self._session.run(None, {"input": x.numpy()})[0])

    def _export(self):
        import onnxruntime as ort

        from ..models.onnx_graph import to_proto
        example = torch.zeros(2, 3, self.img_size, self.img_size)
        proto = to_proto(self.prefix, example, "features")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         ORT_ALLOW_SPINNING)
        return ort.InferenceSession(proto.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])


class Teacher:
    """A finished run's model on the student's views: the same image tensors, renormalized from
    the student's mean/std to the teacher's, at the student's size; in onnxruntime, as the
    frozen part, once the job is big enough (eager PyTorch ran Lite2 at ~15 views/s)."""

    def __init__(self, run_folder, student_spec, n_views: int):
        from ..core.errors import ConfigError
        from ..core.layout import RunLayout
        from ..models import load_checkpoint
        path = RunLayout(run_folder).train.checkpoint
        self.model, spec, _ = load_checkpoint(path)
        if tuple(spec.labels) != tuple(student_spec.labels):
            raise ConfigError(f"--teacher {run_folder}: its classes ({', '.join(spec.labels)}) "
                              "are not the student's; train the teacher on the same data")
        shape = (1, 3, 1, 1)
        s_mean, s_std, t_mean, t_std = (torch.tensor(v).view(shape) for v in (
            student_spec.mean, student_spec.std, spec.mean, spec.std))
        self.renormalized = Renormalized(self.model, s_std / t_std, (s_mean - t_mean) / t_std)
        self.sha256, self.model_name = sha256(path), spec.model
        self.run = FrozenPart(None, None, student_spec.img_size, n_views, module=self.renormalized)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


class Renormalized(torch.nn.Module):
    """A model fed tensors normalized with another mean/std: x * scale + shift first."""

    def __init__(self, model, scale, shift):
        super().__init__()
        self.model = model
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x):
        return self.model(x * self.scale + self.shift)


def compute(run: FrozenPart, samples, transforms, decode: dict, desc, disable=False,
            teacher: Teacher = None) -> tuple:
    """(features [N, V, ...] float16, ok mask [N], teacher logits [N, V, C] or None): `run` (and
    the teacher) on every transform of every sample, each image decoded once for all its
    views. `decode`: the loader's draft_size, batch_size, workers, skip_bad and seed (view v
    of sample i is the same wherever and however it is decoded)."""
    ok = torch.ones(len(samples), dtype=torch.bool)
    out = soft = None
    seeds = [decode.get("seed", 0) * 1000 + v for v in range(len(transforms))]
    bar = progress(total=len(samples) * len(transforms), desc=f"{desc} ({run.engine})",
                   unit="img", disable=disable)
    for views, labels, idx in views_loader(samples, transforms, seeds, decode["draft_size"],
                                           decode["batch_size"], decode["workers"],
                                           skip_bad=decode["skip_bad"]):      # in order
        ok[idx[labels < 0]] = False
        for v in range(views.shape[1]):
            x = views[:, v].contiguous()
            y = run(x).to(torch.float16).contiguous()
            if out is None:
                out = torch.zeros((len(samples), len(transforms), *y.shape[1:]), dtype=y.dtype)
            out[idx, v] = y
            if teacher is not None:
                t = teacher(x)
                if soft is None:
                    soft = torch.zeros((len(samples), len(transforms), t.shape[1]))
                soft[idx, v] = t
        bar.update(len(idx) * len(transforms))
    bar.close()
    return out, ok, soft


def save(path, feats, ok, key, soft=None) -> None:
    tensors = {"features": feats, "ok": ok, **({"teacher": soft} if soft is not None else {})}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"key": key}))


def load(path, key):
    """(features, ok, teacher logits or None) if `path` holds the cache for `key`, else None."""
    if not Path(path).is_file():
        return None
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        soft = f.get_tensor("teacher") if "teacher" in f.keys() else None
        return f.get_tensor("features"), f.get_tensor("ok"), soft


def cached(path, key, **compute_args) -> tuple:
    """(features, ok, teacher logits, hit): read from `path` if it holds `key`, else computed
    and saved there."""
    hit = load(path, key)
    if hit is not None:
        return (*hit, True)
    feats, ok, soft = compute(**compute_args)
    if path is not None:
        os.makedirs(Path(path).parent, exist_ok=True)
        save(path, feats, ok, key, soft)
    return feats, ok, soft, False


def augment(batch: torch.Tensor, hflip: bool, generator=None) -> torch.Tensor:
    """Random horizontal flip of cached feature maps (a flip commutes with the convolutions
    up to padding, so this stands in for flipping the image)."""
    if not hflip or batch.ndim != 4:
        return batch
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = batch.clone()
    batch[flip] = batch[flip].flip(-1)
    return batch


def build_inputs(job, rank) -> dict:
    """The frozen part's outputs for every split, cached in the run's cache folder (keyed on
    the model, the samples and their file sizes and times); none when the whole network
    trains."""
    model, unit, spec, splits, cfg, world, log = job.model, job.unit, job.spec, job.splits, \
        job.cfg, job.world, job.log
    cache_dir = job.files.cache
    if unit == 0:
        return {"skipped": []}
    workers = cfg.workers or min(4, max(1, torch.get_num_threads()))
    base = dict(model=cfg.model, weights=cfg.weights if cfg.weights in ("imagenet", "none")
                else sha256(cfg.weights), unit=unit, spec=spec.to_dict(), seed=cfg.seed)
    out, skipped = {"skipped": []}, []
    n_images = (len(splits.train) * cfg.cache_views + len(splits.val) + len(splits.test)) / world
    frozen = FrozenPart(model, unit, spec.img_size, n_images)
    teacher = Teacher(cfg.teacher, spec, len(splits.train) * cfg.cache_views / world) \
        if cfg.teacher else None
    if teacher:
        log.info("distilling from %s (%s): its logits cached with every training view",
                 cfg.teacher, teacher.model_name)
    for name in ("train", "val", "test"):
        samples = getattr(splits, name)
        idx = torch.arange(rank, len(samples), world)
        mine = [samples[i] for i in idx]
        views = [eval_transform(spec)]
        if name == "train":
            views += [train_transform(spec, cfg)] * (cfg.cache_views - 1)
        taught = teacher if name == "train" else None
        key = cache_key(**base, split=name, samples=mine, files=stats(mine), views=len(views),
                        aug=[cfg.crop_scale, cfg.hflip, cfg.color_jitter, cfg.rotation],
                        **({"teacher": teacher.sha256} if taught else {}))
        suffix = f".rank{rank}of{world}" if world > 1 else ""
        t0 = time.time()
        feats, ok, soft, hit = cached(
            cache_dir / f"{name}{suffix}.safetensors", key, run=frozen, samples=mine,
            transforms=views, decode={"draft_size": spec.resize_size, "batch_size":
                                      cfg.batch_size, "workers": workers,
                                      "skip_bad": cfg.skip_bad_images, "seed": cfg.seed},
            desc=f"cache {name}", disable=not distributed.is_main(), teacher=taught) \
            if mine else (torch.zeros(0), torch.zeros(0, dtype=torch.bool), None, False)
        labels = torch.tensor([y for _, y in mine], dtype=torch.long)
        skipped += [{"path": mine[i][0], "split": name, "reason": "failed to decode"}
                    for i in torch.nonzero(~ok).flatten().tolist()]
        if name != "train" and world > 1:
            feats, ok = (distributed.gather_rows(t, idx, len(samples)) for t in (feats, ok))
            labels = torch.tensor([y for _, y in samples], dtype=torch.long)
        out[name] = (feats[ok], labels[ok]) + ((soft[ok],) if soft is not None else ())
        log.info("cached %s: %d images x %d view(s) %s in %.0f s (%s)", name, int(ok.sum()),
                 len(views), tuple(feats.shape[2:]), time.time() - t0,
                 "cache hit" if hit else frozen.engine)
    out["skipped"] = skipped
    return out
