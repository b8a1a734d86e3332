"""Checks 2 and 3 of the bench issue on an exported run (default: the clothing_run.py run):
int8 vs fp32 p50 for LiteRT and onnxruntime with each row's distance from the roofline floor,
and two `edgetl bench` runs of the same bundles agreeing within 10% on every p50."""
import argparse
import time
from pathlib import Path

from common import save
from edgetl import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-clothing-run")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    run = Path(args.run)
    reports = []
    for i in range(2):
        t0 = time.time()
        r = bench(run, threads=args.threads, warmup=20, iters=100, trials=5,
                  out=run / f"bench-repeat{i}")
        reports.append(r)
        print(f"bench {i}: {time.time() - t0:.0f} s", flush=True)
    key = lambda r: f"{r['build']} ({r['runtime']})"
    p50 = [{key(r): r["latency_ms"]["p50"] for r in rep["results"] if r["status"] == "ok"}
           for rep in reports]
    diff = {k: round(100 * abs(p50[0][k] - p50[1][k]) / min(p50[0][k], p50[1][k]), 2)
            for k in p50[0] if k in p50[1]}
    first = {key(r): r for r in reports[0]["results"] if r["status"] == "ok"}
    pairs = {rt: {"fp32_p50_ms": first[f"{fmt}-fp32 ({rt})"]["latency_ms"]["p50"],
                  "int8_p50_ms": first[f"{fmt}-int8 ({rt})"]["latency_ms"]["p50"]}
             for fmt, rt in (("tflite", "litert"), ("onnx", "onnxruntime"))}
    for v in pairs.values():
        v["int8_not_slower"] = v["int8_p50_ms"] <= v["fp32_p50_ms"]
    save("bench_repeatability", {
        "run": str(run), "threads": args.threads, "int8_vs_fp32": pairs,
        "p50_ms": p50, "p50_diff_pct": diff, "max_p50_diff_pct": max(diff.values()),
        "within_10pct": all(v <= 10 for v in diff.values()),
        "x_floor": {key(r): r.get("x_floor") for r in reports[0]["results"]},
        "trial_spread_pct": {key(r): r["latency_ms"]["trial_spread_pct"]
                             for r in reports[0]["results"] if r["status"] == "ok"},
        "peak": reports[0]["machine"].get("peak"), "reports": [r["out"] for r in reports]})


if __name__ == "__main__":
    main()
