"""Check 3 of the fine-tuning issue: ImageNet-pretrained vs random initialisation under the same
budget (same model, resolution, epochs and strategy: every layer trains, images decoded and
augmented every epoch) on clothing-small; both test accuracies recorded."""
import argparse
import json
from pathlib import Path

from common import data_path, save, timed_cli


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default="runs/bench-scratch")
    args = ap.parse_args()
    data = data_path(args.data)

    rows = {}
    for weights, lr in (("imagenet", "1e-3"), ("none", "3e-3")):
        out = Path(args.out) / weights
        wall, rc = timed_cli(["train", str(data), "--out", str(out), "--overwrite", "--weights",
                              weights, "--strategy", "full", "--img-size", str(args.img_size),
                              "--epochs", str(args.epochs), "--lr", lr, "--backbone-lr-mult", "1.0",
                              "--warmup-epochs", "0", "--patience", "0"])
        m = json.loads((out / "train" / "metrics.json").read_text()) if rc == 0 else {}
        rows[weights] = {"lr": float(lr), "exit_code": rc, "wall_seconds": round(wall, 1),
                         "test_top1": m.get("test", {}).get("top1"),
                         "val_top1": m.get("val", {}).get("top1")}
        print(weights, rows[weights], flush=True)
    save("transfer_vs_scratch", {
        "setting": {"model": "efficientnet_lite0", "img_size": args.img_size, "epochs": args.epochs,
                    "strategy": "full (all layers train, same schedule)"},
        "pretrained": rows["imagenet"], "scratch": rows["none"],
        "gain_points": round(100 * (rows["imagenet"]["test_top1"] - rows["none"]["test_top1"]), 2)
        if rows["imagenet"]["test_top1"] is not None and rows["none"]["test_top1"] is not None
        else None})


if __name__ == "__main__":
    main()
