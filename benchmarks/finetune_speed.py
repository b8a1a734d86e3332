"""Check 2 of the fine-tuning issue: the same head trained the naive way (frozen backbone run
again every epoch, as most tutorials do) against edgetl's cached way; same epochs, same model
code, same image decoding, channels-last in both. Records wall time and test top-1 of each."""
import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import data_path, save, timed_cli
from edgetl.training.config import TrainConfig
from edgetl.training.data import discover
from edgetl.training.images import ImageDataset
from edgetl.training.transforms import eval_transform, train_transform
from edgetl.models import create_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", default="runs/bench-speed")
    args = ap.parse_args()
    data = data_path(args.data)
    cfg = TrainConfig(img_size=args.img_size, epochs=args.epochs, strategy="feature-extract",
                      cache_views=1, patience=0)


    def naive() -> dict:
        """Tutorial-style: requires_grad=False backbone, full forward of every image every epoch."""
        t0 = time.time()
        torch.manual_seed(cfg.seed)
        splits = discover(data)
        model, spec = create_model(cfg.model, len(splits.classes), "imagenet", cfg.dropout)
        spec = spec.with_size(cfg.img_size)
        model.features.requires_grad_(False)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.classifier.parameters(), lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
        loader = lambda samples, tf, shuffle: torch.utils.data.DataLoader(
            ImageDataset(samples, tf, spec.resize_size), batch_size=cfg.batch_size, shuffle=shuffle,
            num_workers=2)
        steps = args.epochs * len(loader(splits.train, None, False))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)

        def evaluate(samples):
            model.eval()
            right = n = 0
            with torch.no_grad():
                for x, y, _ in loader(samples, eval_transform(spec), False):
                    right += (model(x.contiguous(memory_format=torch.channels_last)).argmax(-1)
                              == y).sum().item()
                    n += len(y)
            return right / n

        history = []
        for epoch in range(args.epochs):
            model.train()
            model.features.eval()
            for x, y, _ in loader(splits.train, train_transform(spec, cfg), True):
                loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y,
                                       label_smoothing=cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            history.append({"epoch": epoch, "val_top1": evaluate(splits.val),
                            "seconds": round(time.time() - t0, 1)})
            print(history[-1], flush=True)
        return {"wall_seconds": round(time.time() - t0, 1), "test_top1": evaluate(splits.test),
                "history": history}


    def edgetl_way() -> dict:
        wall, rc = timed_cli(["train", str(data), "--out", args.out, "--overwrite",
                              "--strategy", "feature-extract", "--img-size", str(args.img_size),
                              "--epochs", str(args.epochs), "--cache-views", "1",
                              "--patience", "0"])
        m = json.loads((Path(args.out) / "train" / "metrics.json").read_text())
        return {"wall_seconds": round(wall, 1), "exit_code": rc, "test_top1": m["test"]["top1"]}


    ours = edgetl_way()
    theirs = naive()
    save("finetune_speed", {
        "setting": {"model": cfg.model, "img_size": args.img_size, "epochs": args.epochs,
                    "strategy": "feature-extract (frozen backbone, head only)"},
        "naive": theirs, "edgetl": ours,
        "speedup": round(theirs["wall_seconds"] / ours["wall_seconds"], 2),
        "top1_difference_points": round(100 * (ours["test_top1"] - theirs["test_top1"]), 2)})


if __name__ == "__main__":
    main()
