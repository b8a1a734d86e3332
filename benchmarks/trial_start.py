"""What one bench trial costs besides the model: the bundle runner of an earlier commit and of
this code, alternating, each a fresh process as `edgetl bench` starts it for a trial (no
scoring, one trial of --iters timed runs), on every build of an exported run: wall seconds of
the process, the runner's load_ms (opening the runtime and the model) and its p50.

  python benchmarks/trial_start.py --run runs/bench-clothing-run --before 7a5b4b2
Writes results/trial_start.json."""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, save  # noqa: E402

from edgetl.bundle_runner import load_manifest, runtimes_for  # noqa: E402

CPU_FORMATS = ("onnx", "tflite", "executorch")        # what a CPU trial runs here


def trial(runner: Path, bundle: Path, runtime: str, iters: int) -> dict:
    cmd = [sys.executable, str(runner), "--bundle", str(bundle), "--bench", "--runtime",
           runtime, "--threads", "2", "--trials", "1", "--iters", str(iters), "--wait-idle",
           "0", "--no-score"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    result = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    return {"wall_s": wall, "load_ms": result["load_ms"], "p50_ms": result["latency_ms"]["p50"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="an exported run (RUN/export)")
    ap.add_argument("--before", default="7a5b4b2", help="commit of the earlier runner")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=100)
    args = ap.parse_args()
    export = Path(args.run) / "export"
    formats = {p.name: load_manifest(p)["format"] for p in export.iterdir()
               if (p / "run.py").is_file()}
    builds = sorted(b for b, fmt in formats.items() if fmt in CPU_FORMATS)
    old = Path(tempfile.mkdtemp()) / "run_before.py"
    old.write_text(subprocess.run(["git", "-C", str(CODE), "show",
                                   f"{args.before}:edgetl/bundle_runner.py"],
                                  capture_output=True, text=True, check=True).stdout)
    runners = {"before": old, "after": CODE / "edgetl" / "bundle_runner.py"}
    got = {b: {k: [] for k in runners} for b in builds}
    for r in range(args.rounds):
        for b in builds:
            for name, runner in runners.items():
                got[b][name].append(trial(runner, export / b, runtimes_for(formats[b])[0],
                                          args.iters))
        print(f"round {r + 1} of {args.rounds} done")
    median = lambda rows, key: round(statistics.median(t[key] for t in rows), 3)
    summary = {b: {name: {k: median(rows, k) for k in ("wall_s", "load_ms", "p50_ms")}
                   for name, rows in got[b].items()} for b in builds}
    for b, s in summary.items():
        print(f"{b:22s} trial {s['before']['wall_s']:.2f} -> {s['after']['wall_s']:.2f} s")
    save("trial_start", {"run": str(args.run), "before_commit": args.before,
                         "after_commit": commit(CODE), "rounds": args.rounds,
                         "iters": args.iters, "median": summary, "trials": got})


if __name__ == "__main__":
    main()
