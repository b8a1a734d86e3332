"""The Quickstart's main job (`edgetl demo`): records its result table and wall time."""
import json
from pathlib import Path

from common import save, timed_cli

out = Path("runs/bench-demo")
wall, rc = timed_cli(["demo", "--out", str(out), "--overwrite"])
m = json.loads((out / "train" / "metrics.json").read_text())
save("demo", {"command": "edgetl demo", "exit_code": rc, "wall_seconds": round(wall, 1),
              "model": m["model"], "img_size": m["img_size"], "val_top1": m["val"]["top1"],
              "test_top1": m["test"]["top1"], "test_n": m["test"]["n"],
              "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"]})
