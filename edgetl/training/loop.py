"""Epoch loop: batches from the feature cache (or streamed images), MixUp/CutMix, evaluation."""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import features
from .images import loader
from .transforms import eval_transform, train_transform


class Tail(torch.nn.Module):
    """The part of the model that runs on cached inputs (what DDP wraps)."""

    def __init__(self, model, unit):
        super().__init__()
        self.model, self.unit = model, unit

    def forward(self, x):
        return self.model.forward_from(x, self.unit)


def wrap(model, unit, world):
    tail = Tail(model, unit)
    return DistributedDataParallel(tail) if world > 1 else tail


class CachedSource:
    """Training batches drawn from cached features: a random view and flip per sample, with the
    teacher's logits of that view when the cache holds them (a flip leaves them as they are:
    the teacher's prediction does not change with a mirror image, to first order)."""

    def __init__(self, inputs, cfg, world):
        self.inputs, self.cfg = inputs, cfg
        self.steps = math.ceil(_max_over_ranks(len(inputs["train"][0]), world) / cfg.batch_size)

    def train_batches(self, epoch):
        feats, labels, *soft = self.inputs["train"]
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        need = self.steps * self.cfg.batch_size
        order = torch.cat([torch.randperm(len(feats), generator=g)
                           for _ in range(math.ceil(need / max(1, len(feats))))])[:need]
        for b in range(self.steps):
            idx = order[b * self.cfg.batch_size:(b + 1) * self.cfg.batch_size]
            views = torch.randint(feats.shape[1], (len(idx),), generator=g)
            x = feats[idx, views].float()
            yield (_channels_last(features.augment(x, self.cfg.hflip, g)), labels[idx],
                   soft[0][idx, views] if soft else None)

    def eval_batches(self, split):
        feats, labels = self.inputs[split][:2]
        for b in range(0, len(feats), 256):
            yield _channels_last(feats[b:b + 256, 0].float()), labels[b:b + 256]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Feature maps in NHWC: the trained units' convolutions run about 25% faster on CPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


class StreamSource:
    """Decoded images every epoch: the only choice when the whole network trains."""

    def __init__(self, splits, spec, cfg, world):
        self.splits, self.spec, self.cfg, self.world = splits, spec, cfg, world
        self.workers = cfg.workers or max(1, torch.get_num_threads())
        self.steps = math.ceil(math.ceil(len(splits.train) / world) / cfg.batch_size)

    def _loader(self, samples, transform, shuffle_seed=None, sampler=None):
        return loader(samples, transform, self.spec.resize_size, self.cfg.batch_size,
                      self.workers, shuffle_seed, self.cfg.skip_bad_images, sampler)

    def train_batches(self, epoch):
        sampler = None
        if self.world > 1:
            sampler = torch.utils.data.DistributedSampler(self.splits.train, seed=self.cfg.seed)
            sampler.set_epoch(epoch)
        seed = self.cfg.seed * 1000 + epoch
        torch.manual_seed(seed)
        batches = self._loader(self.splits.train, train_transform(self.spec, self.cfg),
                               shuffle_seed=seed, sampler=sampler)
        for x, y, _ in batches:
            keep = y >= 0
            if int(keep.sum()) > 1:        # BatchNorm in train mode needs two samples
                yield _channels_last(x[keep]), y[keep], None

    def eval_batches(self, split):
        for x, y, _ in self._loader(getattr(self.splits, split), eval_transform(self.spec)):
            keep = y >= 0
            yield _channels_last(x[keep]), y[keep]


def _max_over_ranks(n, world):
    if world == 1:
        return n
    t = torch.tensor([n])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def mix(x, y, cfg, rng: np.random.Generator):
    """MixUp or CutMix (opt-in): returns inputs, (y_a, y_b, lam)."""
    modes = [m for m, a in (("mixup", cfg.mixup), ("cutmix", cfg.cutmix)) if a > 0]
    if not modes or len(x) < 2:
        return x, (y, y, 1.0)
    mode = modes[rng.integers(len(modes))]
    alpha = cfg.mixup if mode == "mixup" else cfg.cutmix
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x)))
    if mode == "cutmix" and x.ndim == 4:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = rng.integers(h), rng.integers(w)
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, (y, y[perm], lam)


def mixed_loss(logits, targets, weight, smoothing):
    y_a, y_b, lam = targets
    loss = lambda y: F.cross_entropy(logits, y, weight=weight, label_smoothing=smoothing)
    return lam * loss(y_a) + (1 - lam) * loss(y_b) if lam < 1.0 else loss(y_a)


def distilled_loss(logits, loss, teacher_logits, cfg):
    """(1 - w) x the label loss + w x T^2 x KL(teacher || student) at temperature T (Hinton et
    al.; T^2 keeps the soft term's gradients on the label term's scale)."""
    if teacher_logits is None:
        return loss
    t, w = cfg.distill_temperature, cfg.distill_weight
    soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    reduction="batchmean", log_target=True)
    return (1 - w) * loss + w * t * t * soft


@torch.no_grad()
def predict(tail, batches) -> tuple:
    """(logits, labels) over all batches, in eval mode."""
    tail.eval()
    outs, ys = [], []
    for x, y in batches:
        outs.append(tail(x))
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)
