"""The Quickstart's main job (`edgetl demo`: fine-tune -> QAT -> export -> bench on the
embedded digits, x86-cpu profile): records its stages, result table and wall time."""
import json
import subprocess
import sys
import time
from pathlib import Path

from common import save


def main():
    out = Path("runs/bench-demo")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "edgetl", "demo", "--out", str(out),
                           "--overwrite"], capture_output=True, text=True)
    wall = time.time() - t0
    print(proc.stdout)
    m = json.loads((out / "train" / "metrics.json").read_text())
    export = json.loads((out / "export" / "manifest.json").read_text())
    report = json.loads((out / "bench" / "report.json").read_text())
    save("demo", {"command": "edgetl demo", "exit_code": proc.returncode,
                  "wall_seconds": round(wall, 1), "train_wall_seconds": m["wall_seconds"],
                  "export_wall_seconds": export["wall_seconds"], "model": m["model"],
                  "img_size": m["img_size"], "val_top1": m["val"]["top1"],
                  "test_top1": m["test"]["top1"], "test_n": m["test"]["n"],
                  "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                  "reference_top1": export["reference_top1"],
                  "builds": {a["name"]: {"test_top1": a["test_top1"], "parity": a["parity"]}
                             for a in export["artifacts"]},
                  "bench": [{k: r.get(k) for k in ("build", "runtime", "status", "top1",
                                                    "held_out_top1", "latency_ms", "x_floor")}
                            for r in report["results"]],
                  "verdict": report.get("verdict"), "stdout": proc.stdout})


if __name__ == "__main__":
    main()
