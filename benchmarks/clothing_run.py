"""Check 1 of the bench issue: the main job on clothing-small with the x86-cpu profile
(fine-tune -> QAT -> export -> bench), its wall time, and its report's int8 vs fp32 rows."""
import argparse
import json
import shutil
import time
from pathlib import Path

from common import data_path, save, timed_cli

ap = argparse.ArgumentParser()
ap.add_argument("--data")
ap.add_argument("--out", default="runs/bench-clothing-run")
ap.add_argument("--target", default="x86-cpu")
args = ap.parse_args()
shutil.rmtree(args.out, ignore_errors=True)
wall, rc = timed_cli(["run", str(data_path(args.data)), "--target", args.target,
                      "--out", args.out])
out = Path(args.out)
report = json.loads((out / "bench" / "report.json").read_text())
export = json.loads((out / "export" / "manifest.json").read_text())
fp32 = json.loads((out / "train" / "metrics.json").read_text())
rows = [{k: r.get(k) for k in ("build", "runtime", "status", "top1", "held_out_top1",
                                "top1_agreement", "latency_ms", "x_floor", "size_bytes")}
        for r in report["results"]]
held = {r["build"]: r["held_out_top1"] for r in rows}
save("clothing_run", {
    "command": f"edgetl run DATA --target {args.target} --out {args.out}", "exit_code": rc,
    "wall_seconds": round(wall, 1), "train_wall_seconds": fp32["wall_seconds"],
    "export_wall_seconds": export["wall_seconds"],
    "fp32_checkpoint_test_top1": fp32["test"]["top1"],
    "int8_minus_fp32_points_held_out": {b: round(100 * (held[b] - held[b.replace("int8", "fp32")]),
                                                 2) for b in held if b.endswith("int8")},
    "verdict": report.get("verdict"), "machine_peak": report["machine"].get("peak"),
    "rows": rows})
