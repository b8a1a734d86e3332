"""The test suite's wall time as CI runs it (`python -m pytest -q`, device groups required,
pyproject.toml's 2 pytest-xdist workers), with the slowest tests and the machine it ran on.
CI's budget is 30 minutes on 2 cores, install included; the install is not timed here.

  python benchmarks/suite_time.py [--workers N]   (N=0: one process, no xdist)

Writes results/suite_time.json: wall seconds, passed/failed counts, each failure's line (test
and message, pytest's short summary), the 40 slowest phases, and each xdist worker's busy
seconds (the sum of its tests' phases: wall minus busy is the time that worker sat idle)."""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, save  # noqa: E402

DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)$", re.M)
WORKER = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] \w+ (\S+)", re.M)
SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None,
                    help="pytest-xdist workers (default: pyproject.toml's; 0: one process)")
    args = ap.parse_args()
    extra = [] if args.workers is None else ["-n", str(args.workers)]
    # CI runs -q; -v changes only the output: each test's line names its worker
    command = [sys.executable, "-m", "pytest", "-v", "--durations=0", *extra]
    t0 = time.time()
    res = subprocess.run(command, cwd=CODE, capture_output=True, text=True,
                         env={**os.environ, "EDGETL_REQUIRE_DEVICE_TESTS": "1"})
    wall = time.time() - t0
    tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    print(res.stdout[-4000:])
    phases = [{"seconds": float(s), "phase": p, "test": t}
              for s, p, t in DURATION.findall(res.stdout)]
    save("suite_time", {
        "commit": commit(CODE), "command": " ".join(["python", *command[1:]]),
        "exit_code": res.returncode, "wall_seconds": round(wall, 1),
        "counts": {kind: int(n) for n, kind in SUMMARY.findall(tail)},
        "summary_line": tail,
        "failures": [line for line in res.stdout.splitlines()
                     if line.startswith(("FAILED ", "ERROR "))],
        "failure_lines": [line[:400] for line in res.stdout.splitlines()   # pytest's "E" lines
                          if line.startswith("E ")][:80],
        "slowest": sorted(phases, key=lambda r: -r["seconds"])[:40],
        "worker_busy_seconds": busy_by_worker(res.stdout, phases)})
    sys.exit(res.returncode)


def busy_by_worker(stdout: str, phases: list) -> dict:
    """{worker: seconds of test phases it ran} from `-v`'s "[gwN] [ n%] PASSED test" lines."""
    worker_of = dict((test, w) for w, test in WORKER.findall(stdout))
    busy = {}
    for r in phases:
        w = worker_of.get(r["test"], "unknown")
        busy[w] = round(busy.get(w, 0.0) + r["seconds"], 1)
    return dict(sorted(busy.items()))


if __name__ == "__main__":
    main()
