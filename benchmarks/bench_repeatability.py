"""Two default `edgetl bench` runs of the same bundles in a row (default: the clothing_run.py
run): does every p50 agree within 5% between them, is every p50 interval within +-3% at the
default time budget, and what do the paired int8 speed-ups say (with their intervals)? Each
row's conditions (the speed probe's drift above all) are kept beside it."""
import argparse
import time
from pathlib import Path

from common import save
from edgetl import bench


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-clothing-run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--result", default="bench_repeatability")
    args = ap.parse_args(argv)
    run = Path(args.run)
    reports, seconds = [], []
    for i in range(2):
        t0 = time.time()
        reports.append(bench(run, threads=args.threads, out=run / f"bench-repeat{i}"))
        seconds.append(round(time.time() - t0, 1))
        print(f"bench {i}: {seconds[-1]:.0f} s", flush=True)
    key = lambda r: f"{r['build']} ({r['runtime']})"
    rows = [{key(r): r for r in rep["results"] if r["status"] == "ok"} for rep in reports]
    p50 = [{k: r["latency_ms"]["p50"] for k, r in rs.items()} for rs in rows]
    diff = {k: round(100 * abs(p50[0][k] - p50[1][k]) / min(p50[0][k], p50[1][k]), 2)
            for k in p50[0] if k in p50[1]}
    half = [{k: r["latency_ms"]["half_width_pct"] for k, r in rs.items()} for rs in rows]
    save(args.result, {
        "run": str(run), "threads": args.threads, "bench_seconds": seconds,
        "settings": reports[0]["settings"], "p50_ms": p50, "p50_diff_pct": diff,
        "max_p50_diff_pct": max(diff.values()), "within_5pct": all(v <= 5 for v in diff.values()),
        "half_width_pct": half, "max_half_width_pct": max(max(h.values()) for h in half),
        "trials": [{k: r["latency_ms"]["trials"] for k, r in rs.items()} for rs in rows],
        "noisy": [[k for k, r in rs.items() if r["latency_ms"]["noisy"]] for rs in rows],
        "int8_speedup_paired": [{k: r.get("int8_speedup_paired") for k, r in rs.items()
                                 if r.get("int8_speedup_paired")} for rs in rows],
        "end_to_end_p50_ms": [{k: (r.get("end_to_end_ms") or {}).get("p50")
                               for k, r in rs.items()} for rs in rows],
        "conditions": [{k: r.get("conditions_summary") for k, r in rs.items()} for rs in rows],
        "peak": reports[0]["machine"].get("peak"), "reports": [r["out"] for r in reports]})


if __name__ == "__main__":
    main()
