"""Check 1 of the fine-tuning issue: `edgetl train` on clothing-small with efficientnet_lite0 at
224 px and the default strategy; records test top-1 and the whole command's wall time."""
import argparse
import json
from pathlib import Path

from common import data_path, save, timed_cli

ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--out", default="runs/bench-clothing")
args = ap.parse_args()

wall, rc = timed_cli(["train", str(data_path(args.data)), "--model", "efficientnet_lite0",
                      "--img-size", "224", "--out", args.out, "--overwrite"])
metrics = json.loads((Path(args.out) / "train" / "metrics.json").read_text()) if rc == 0 else {}
save("clothing_finetune", {
    "command": f"edgetl train clothing-small --model efficientnet_lite0 --img-size 224",
    "exit_code": rc, "wall_seconds": round(wall, 1),
    "test_top1": metrics.get("test", {}).get("top1"), "val_top1": metrics.get("val", {}).get("top1"),
    "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
    "per_class": metrics.get("per_class"), "history": metrics.get("history")})
