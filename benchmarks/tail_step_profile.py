"""One training step of the part that trains on cached maps (default fine-tune: Lite0 @224,
features[13:] + head on 7x7 maps, batch 64, pretrained BatchNorm statistics kept), as the epoch
loop runs it: fp32 against bf16 autocast (oneDNN; AVX512-BF16 / AMX where the CPU has them),
alternating in one process, and the fp32 step's per-operator CPU time (torch.profiler).
Random maps: the time of a step does not depend on their values. Writes
results/tail_step_profile.json."""
import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, save  # noqa: E402

from edgetl.models import create_model  # noqa: E402
from edgetl.training import loop, strategy  # noqa: E402
from edgetl.training.config import load_config  # noqa: E402


def make_step(model, unit, cfg, feats, labels):
    """The epoch loop's pieces: its optimizer and the Tail it trains."""
    opt, tail = strategy.make_optimizer(model, cfg), loop.Tail(model, unit)

    def step(bf16: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(
                tail(feats).float(), labels, label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def ms_per_step(step, bf16, n) -> float:
    for _ in range(2):
        step(bf16)
    t0 = time.perf_counter()
    for _ in range(n):
        step(bf16)
    return round((time.perf_counter() - t0) / n * 1000, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    cfg = load_config(None)
    model, spec = create_model(cfg.model, 10, "imagenet", cfg.dropout)
    unit = strategy.cache_unit(cfg, len(model.features))
    with torch.no_grad():
        shape = model.features[:unit](torch.zeros(1, 3, spec.img_size, spec.img_size)).shape
    strategy.set_trainable(model, unit, strategy.updates_bn(cfg))
    feats = torch.randn(cfg.batch_size, *shape[1:]).contiguous(
        memory_format=torch.channels_last)
    step = make_step(model, unit, cfg, feats, torch.randint(10, (cfg.batch_size,)))
    rounds = [{"fp32_ms": ms_per_step(step, False, args.steps),
               "bf16_autocast_ms": ms_per_step(step, True, args.steps)}
              for _ in range(args.rounds)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step(False)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    save("tail_step_profile", {
        "code": commit(CODE), "model": cfg.model, "img_size": spec.img_size,
        "trained_from_unit": unit, "of_units": len(model.features),
        "map_shape": list(shape[1:]), "batch_size": cfg.batch_size,
        "steps_per_timing": args.steps, "rounds": rounds,
        "fp32_step_self_cpu_share": {e.key: round(e.self_cpu_time_total / total, 3)
                                     for e in ops[:8]}})


if __name__ == "__main__":
    main()
