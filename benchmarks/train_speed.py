"""`edgetl train DATA` with the earlier code and with this code, back to back on one machine, in
fresh processes, default settings both: wall seconds, the time per phase (the cache pass per
split, the epochs, the rest) read from each run's own log and metrics, and validation top-1
(the split the defaults are judged on; test top-1 is recorded as the runs report it).

The earlier code is a checkout given by --before (default commit: 7a5b4b2, where the issue
measured 753 s on a Xeon):
  git worktree add /tmp/before 7a5b4b2
  python benchmarks/train_speed.py --before /tmp/before
--rounds N alternates before/after N times (the machine's speed drifts: the pairs show by how
much). Writes results/train_speed.json."""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, data_path, save  # noqa: E402

CACHE_LINE = re.compile(r"cached (\w+): .* in (\d+) s")


def train(code: Path, data: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "edgetl", "train", str(data), "--out", str(out),
                          "--overwrite"], env=env, cwd=code)
    wall = time.time() - t0
    if rc:
        sys.exit(f"edgetl train with {code} exited {rc}")
    r = trained_run(out)
    return {"wall_seconds": round(wall, 1), "phases_seconds": {
        "cache": r["cache_seconds"], "epochs": r["epochs_seconds"],
        "other": round(wall - r["epochs_seconds"] - sum(r["cache_seconds"].values()), 1)},
        **{k: r[k] for k in ("epochs_run", "best_epoch", "val_top1", "val_n", "test_top1",
                             "train_precision")},
        "settings": {k: v for k, v in json.loads(
            (out / "train" / "config.json").read_text()).items() if k != "spec"}}


def trained_run(out: Path) -> dict:
    """What a finished `edgetl train --out OUT` reports: its cache passes (from its log), its
    epochs' seconds, the steps' number format (fp32 before the option existed), best epoch,
    validation and test top-1."""
    m = json.loads((out / "train" / "metrics.json").read_text())
    log = (out / "train" / "train.log").read_text()
    return {"cache_seconds": {s: int(t) for s, t in CACHE_LINE.findall(log)},
            "epochs_seconds": round(sum(h["seconds"] for h in m["history"]), 1),
            "train_precision": m.get("train_precision", "fp32"),
            "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
            "val_top1": m["val"]["top1"], "val_n": m["val"]["n"],
            "test_top1": m["test"]["top1"], "test_n": m["test"]["n"]}


def side_by_side(measure, default_out: str, **extra_args) -> tuple:
    """Parse --data/--before/--out/--rounds (and `extra_args`: name -> default), then run
    measure(code, data, out_folder, args) with the earlier code and this code, alternating,
    --rounds times. Returns (args, data, before, rounds with speed-up and validation images
    gained)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--before", default="/tmp/before", help="checkout of the earlier code")
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--rounds", type=int, default=1)
    for name, default in extra_args.items():
        ap.add_argument(f"--{name}", default=default)
    args = ap.parse_args()
    data, before, out = data_path(args.data), Path(args.before).resolve(), Path(args.out).resolve()
    if not (before / "edgetl" / "__init__.py").is_file():
        sys.exit(f"{before} is no edgetl checkout: git worktree add {before} 7a5b4b2")
    rounds = []
    for r in range(args.rounds):
        rounds.append({name: measure(code, data, out / f"{name}{r}", args) for name, code in
                       (("before", before), ("after", CODE))})
        b, a = rounds[-1]["before"], rounds[-1]["after"]
        rounds[-1]["speed_up"] = round(b["wall_seconds"] / a["wall_seconds"], 3)
        rounds[-1]["val_images_gained"] = round((a["val_top1"] - b["val_top1"]) * a["val_n"])
        print(f"round {r + 1}: before {b['wall_seconds']} s, after {a['wall_seconds']} s, "
              f"{rounds[-1]['speed_up']}x; val {b['val_top1']:.4f} -> {a['val_top1']:.4f}")
    return args, data, before, rounds


def main():
    _, data, before, rounds = side_by_side(lambda code, data, out, _: train(code, data, out),
                                           "runs/bench-train-speed")
    save("train_speed", {"data": str(data), "before_commit": commit(before),
                         "after_commit": commit(CODE), "rounds": rounds})


if __name__ == "__main__":
    main()
