"""Why onnxruntime int8's trial p50s jump between two levels: rounds of fresh processes, each
round timing a fixed single-core GEMM probe on each usable CPU, then the int8 build with the
runner's session settings and with each candidate fix (no thread spinning, denormals as zero,
no CPU pinning, one thread), then the fp32 build. A cause inside onnxruntime moves only the
int8 rows that lack its fix; a machine-wide cause moves the probe and every row together."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

CHILD = r'''
import json, os, sys, time
import numpy as np, onnxruntime as ort
path, cfg = sys.argv[1], json.loads(sys.argv[2])
if cfg.pop("pin", True):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
o = ort.SessionOptions()
o.intra_op_num_threads = cfg.pop("threads", 2)
for k, v in cfg.items():
    o.add_session_config_entry(k, v)
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
x = np.random.rand(1, 3, 224, 224).astype(np.float32)
for _ in range(10):
    s.run(None, {name: x})
ts = []
for _ in range(150):
    t0 = time.perf_counter(); s.run(None, {name: x}); ts.append((time.perf_counter() - t0) * 1e3)
print(json.dumps(float(np.median(ts))))
'''

PROBE = r'''
import json, os, time
import numpy as np
out = []
for cpu in sorted(os.sched_getaffinity(0))[:2]:
    os.sched_setaffinity(0, [cpu])
    a = np.random.rand(300, 300).astype(np.float32)
    best = 1e9
    for _ in range(50):
        t0 = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t0)
    out.append(best * 1e6)
print(json.dumps(out))
'''

VARIANTS = {"int8": ("onnx-int8", {}),
            "int8 no spinning": ("onnx-int8", {"session.intra_op.allow_spinning": "0"}),
            "int8 denormals as zero": ("onnx-int8", {"session.set_denormal_as_zero": "1"}),
            "int8 unpinned": ("onnx-int8", {"pin": False}),
            "int8 one thread": ("onnx-int8", {"threads": 1}),
            "fp32": ("onnx-fp32", {})}


def _json(cmd: list):
    return json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-clothing-run")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--result", default="ort_bimodality")
    args = ap.parse_args(argv)
    export = Path(args.run) / "export"
    rounds = []
    for r in range(args.rounds):
        row = {"probe_us": _json([sys.executable, "-c", PROBE])}
        for name, (build, cfg) in VARIANTS.items():
            row[name] = _json([sys.executable, "-c", CHILD, str(export / build / "model.onnx"),
                               json.dumps(cfg)])
        rounds.append(row)
        print(json.dumps(row), flush=True)
    probe = np.array([np.mean(r["probe_us"]) for r in rounds])
    summary = {}
    for name in VARIANTS:
        v = np.array([r[name] for r in rounds])
        summary[name] = {"min_ms": float(v.min()), "max_ms": float(v.max()),
                         "spread_pct": float((v.max() - v.min()) / np.median(v) * 100),
                         "correlation_with_probe": float(np.corrcoef(v, probe)[0, 1])}
    ratio = np.array([r["fp32"] / r["int8"] for r in rounds])
    save(args.result, {"run": args.run, "rounds": rounds, "summary": summary,
                       "probe_us": {"min": float(probe.min()), "max": float(probe.max()),
                                    "spread_pct": float((probe.max() - probe.min())
                                                        / np.median(probe) * 100)},
                       "fp32_over_int8_same_round": {
                           "min": float(ratio.min()), "max": float(ratio.max()),
                           "median": float(np.median(ratio))}})


if __name__ == "__main__":
    main()
