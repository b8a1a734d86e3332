"""Transfer-learning strategies as data: where to cache, what trains in each epoch, at what LR.

- feature-extract: the whole trunk frozen; only the head trains (pooled features cached).
- fine-tune: head warm-up, then the top `unfreeze` units train at lr * backbone_lr_mult.
- progressive: head warm-up, then one more top unit every `progressive_every` epochs.
- full: every layer trains (the choice for --weights none); nothing can be cached.
"""
import torch

# model -> top feature units fine-tune trains when --unfreeze is not given, each chosen by 3-fold
# validation: EfficientNet-Lite2 in benchmarks/results/choose_tier.json (top 7, its whole
# stride-32 stage: +0.59 points over top 5, p = 0.04), the rest in choose_defaults.json (Lite0)
UNFREEZE = {"efficientnet_lite2": 7}
UNFREEZE_OTHERS = 5


def units_trained(cfg) -> int:
    """--unfreeze, else the model's own from UNFREEZE."""
    return cfg.unfreeze or UNFREEZE.get(cfg.model, UNFREEZE_OTHERS)


def cache_unit(cfg, n_units: int) -> int:
    """First unit that ever trains: features[:unit] is frozen for the whole run."""
    if cfg.strategy == "feature-extract":
        return n_units
    if cfg.strategy == "full":
        return 0
    return n_units - min(units_trained(cfg), n_units)


def trainable_from(cfg, n_units: int, epoch: int) -> int:
    """In `epoch`, features[unit:] train; n_units means head only."""
    first = cache_unit(cfg, n_units)
    if cfg.strategy in ("feature-extract", "full"):
        return first
    if epoch < cfg.warmup_epochs:
        return n_units
    if cfg.strategy == "fine-tune":
        return first
    steps = 1 + (epoch - cfg.warmup_epochs) // cfg.progressive_every
    return max(first, n_units - steps)


def param_groups(model, cfg) -> list:
    """Head at lr; each feature unit at lr * backbone_lr_mult (from-scratch runs: all at lr)."""
    mult = 1.0 if cfg.weights == "none" else cfg.backbone_lr_mult
    head = [p for m in (model.neck, model.classifier) for p in m.parameters()]
    backbone = list(model.features.parameters())
    no_decay = lambda ps: [p for p in ps if p.ndim <= 1]
    decay = lambda ps: [p for p in ps if p.ndim > 1]
    return [{"params": decay(head), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": no_decay(head), "lr": cfg.lr, "weight_decay": 0.0},
            {"params": decay(backbone), "lr": cfg.lr * mult, "weight_decay": cfg.weight_decay},
            {"params": no_decay(backbone), "lr": cfg.lr * mult, "weight_decay": 0.0}]


def updates_bn(cfg) -> bool:
    """Pretrained BatchNorm statistics stay fixed unless asked (or there are none: scratch)."""
    return cfg.train_bn_stats or cfg.weights == "none"


def make_optimizer(model, cfg) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg))


def set_trainable(model, unit: int, update_bn: bool = True) -> None:
    """features[unit:] and the head train; everything before is frozen (eval). With
    update_bn False, BatchNorm layers in the trained units keep their running statistics."""
    for i, layer in enumerate(model.features):
        layer.requires_grad_(i >= unit)
        layer.train(i >= unit)
    if not update_bn:
        model.features.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
    for m in (model.neck, model.dropout, model.classifier):
        m.requires_grad_(True)
        m.train(True)
