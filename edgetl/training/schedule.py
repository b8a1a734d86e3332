"""The learning-rate schedule every training loop uses (fine-tuning and QAT): linear warm-up,
then cosine decay to zero."""
import math


def cosine(step: int, total: int, warmup: int = 0) -> float:
    """LR factor at `step` of `total` (the first `warmup` steps ramp up linearly)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer, factor: float) -> None:
    """Every parameter group at its base LR times `factor`."""
    for g in optimizer.param_groups:
        g["lr"] = g.setdefault("base_lr", g["lr"]) * factor
