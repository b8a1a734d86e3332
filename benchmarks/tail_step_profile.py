"""One training step of the part that trains on cached maps (default fine-tune: Lite0 @224,
features[13:] + head on 7x7 maps, batch 64, pretrained BatchNorm statistics kept), as the epoch
loop runs it: fp32, bf16 autocast of every operator, and bf16 as edgetl trains
(`precision.training_steps`: depthwise convolutions kept fp32; oneDNN, AVX512-BF16 / AMX where
the CPU has them), alternating in one process; each step's per-operator CPU time
(torch.profiler).
Random maps: the time of a step does not depend on their values. Writes
results/tail_step_profile.json."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CODE, commit, op_shares, save, seconds_per_call,  # noqa: E402
                    step_timing_args)

from edgetl.models import create_model  # noqa: E402
from edgetl.training import loop, precision, strategy  # noqa: E402
from edgetl.training.config import load_config  # noqa: E402


# mode -> the context a step runs in
MODES = {"fp32": lambda model: precision.training_steps(model, "fp32"),
         "bf16_autocast": lambda model: torch.autocast("cpu", dtype=torch.bfloat16),
         "bf16_depthwise_fp32": lambda model: precision.training_steps(model, "bf16")}


def make_step(model, unit, cfg, feats, labels):
    """The epoch loop's pieces: its optimizer and the Tail it trains."""
    opt, tail = strategy.make_optimizer(model, cfg), loop.Tail(model, unit)

    def step(mode: str):
        with MODES[mode](model):
            loss = torch.nn.functional.cross_entropy(
                tail(feats).float(), labels, label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main():
    args = step_timing_args(steps=10)
    cfg = load_config(None)
    model, spec = create_model(cfg.model, 10, "imagenet", cfg.dropout)
    unit = strategy.cache_unit(cfg, len(model.features))
    with torch.no_grad():
        shape = model.features[:unit](torch.zeros(1, 3, spec.img_size, spec.img_size)).shape
    strategy.set_trainable(model, unit, strategy.updates_bn(cfg))
    feats = torch.randn(cfg.batch_size, *shape[1:]).contiguous(
        memory_format=torch.channels_last)
    step = make_step(model, unit, cfg, feats, torch.randint(10, (cfg.batch_size,)))
    rounds = [{f"{mode}_ms": round(seconds_per_call(lambda: step(mode), args.steps,
                                                    warmup=2) * 1000, 1) for mode in MODES}
              for _ in range(args.rounds)]
    save("tail_step_profile", {
        "code": commit(CODE), "model": cfg.model, "img_size": spec.img_size,
        "trained_from_unit": unit, "of_units": len(model.features),
        "map_shape": list(shape[1:]), "batch_size": cfg.batch_size,
        "bf16_path": precision.bf16_path(), "auto_runs": precision.resolve("auto")[0],
        "steps_per_timing": args.steps, "rounds": rounds,
        "self_cpu_share": {mode: op_shares(lambda: step(mode), calls=5, top=8)
                           for mode in MODES}})


if __name__ == "__main__":
    main()
