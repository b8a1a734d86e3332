"""Check 1 of the fine-tuning issue: `edgetl train` on clothing-small with efficientnet_lite0 at
224 px and the default strategy; records test top-1 and the whole command's wall time.
Extra options make a variant: `--result clothing_finetune_unfreeze5 --unfreeze 5`."""
import argparse
import json
from pathlib import Path

from common import data_path, save, timed_cli


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/bench-clothing")
    ap.add_argument("--result", default="clothing_finetune", help="results/NAME.json")
    args, extra = ap.parse_known_args()   # anything else goes to `edgetl train` (a variant)

    wall, rc = timed_cli(["train", str(data_path(args.data)), "--model", "efficientnet_lite0",
                          "--img-size", "224", "--out", args.out, "--overwrite", *extra])
    metrics = json.loads((Path(args.out) / "train" / "metrics.json").read_text()) if rc == 0 else {}
    save(args.result, {
        "command": " ".join(["edgetl train clothing-small --model efficientnet_lite0 "
                             "--img-size 224", *extra]),
        "exit_code": rc, "wall_seconds": round(wall, 1),
        "test_top1": metrics.get("test", {}).get("top1"),
        "val_top1": metrics.get("val", {}).get("top1"),
        "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
        "per_class": metrics.get("per_class"), "history": metrics.get("history")})


if __name__ == "__main__":
    main()
