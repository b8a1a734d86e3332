"""`edgetl run DATA --target x86-cpu` (train + export + bench) with the earlier code and with this
code, back to back on one machine, in fresh processes, default settings both: wall seconds, the
time per stage (train, export and its int8 decision, the rest: the bench and the device check)
from each run's own files, the bench's trials per row and why they stopped, validation top-1
of fp32 and of the shipped int8 graph (the splits the defaults and the int8 decision are
judged on; val_top1 is fp32's), and the held-out top-1 each run reports.

The earlier code is a checkout given by --before (default commit: 7a5b4b2, where the issue
measured about 26 minutes on a Xeon):
  git worktree add /tmp/before 7a5b4b2
  python benchmarks/run_speed.py --before /tmp/before
--rounds N alternates before/after N times. Writes results/run_speed.json."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, save  # noqa: E402
from train_speed import side_by_side  # noqa: E402



def run(code: Path, data: Path, target: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "edgetl", "run", str(data), "--target", target,
                          "--out", str(out), "--overwrite"], env=env, cwd=code)
    wall = time.time() - t0
    if not (out / "bench" / "report.json").is_file():
        sys.exit(f"edgetl run with {code} exited {rc} without a bench report")
    train = json.loads((out / "train" / "metrics.json").read_text())
    export = json.loads((out / "export" / "manifest.json").read_text())
    bench = json.loads((out / "bench" / "report.json").read_text())
    q = export["quantization"]
    stages = {"train": train["wall_seconds"], "export": export["wall_seconds"]}
    return {"exit_code": rc, "wall_seconds": round(wall, 1), "stages_seconds": {
        **stages, "int8_decision (in export)": q["seconds"],
        "bench and the rest": round(wall - sum(stages.values()), 1)},
        "builds": [a["name"] for a in export["artifacts"]],
        "val_top1": train["val"]["top1"], "val_n": train["val"]["n"],
        "val_int8_top1": q.get("val_int8_top1"), "int8_shipped": q.get("shipped_step", "base"),
        "float_blocks": q.get("float_blocks"),
        "bench_trials": {r["build"]: len(r.get("trial_conditions") or []) for r in
                         bench["results"]},
        "bench_stopped": bench.get("trials_stopped"),
        "held_out_top1": {a["name"]: a.get("test_top1") for a in export["artifacts"]}}


def main():
    args, data, before, rounds = side_by_side(
        lambda code, data, out, args: run(code, data, args.target, out), "runs/bench-run-speed",
        target="x86-cpu")
    save("run_speed", {"data": str(data), "target": args.target,
                       "before_commit": commit(before), "after_commit": commit(CODE),
                       "rounds": rounds})


if __name__ == "__main__":
    main()
