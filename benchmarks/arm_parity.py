"""Issue: an ARM edge device in every test run. Every fp32/int8 build of a run, run by its own
run.py on the emulated arm64 device (Debian 12 userland under qemu, tflite-runtime 2.14 and
onnxruntime as a Raspberry Pi has them) on the bundle's evaluation set, against the same bundle
on this x86 machine (LiteRT, tflite-runtime 2.14 in its own venv, onnxruntime) and against the
export-time reference; then `edgetl bench RUN --target raspberry-pi-5-emulated`.

  python benchmarks/arm_parity.py --run runs/bench-clothing-run
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import runtime_python, save  # noqa: E402

from edgetl.benchmarking import emulated  # noqa: E402

BUILDS = {"tflite-fp32": "tflite-runtime", "tflite-int8": "tflite-runtime",
          "tflite-int8-nhwc": "tflite-runtime", "onnx-fp32": "onnxruntime",
          "onnx-int8": "onnxruntime"}


def predictions(python, bundle: Path, runtime: str) -> tuple:
    t0 = time.time()
    out = subprocess.run([str(python), "run.py", "--runtime", runtime], cwd=bundle,
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return np.array(r["predictions"]), r["top1"], r["runtime_version"], time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--result", default="arm_parity")
    args = ap.parse_args()
    run = Path(args.run)
    arm = emulated.build(runtimes=["tflite-runtime", "onnxruntime"])
    x86_tfl = runtime_python("tflite-runtime", ["numpy<2", "tflite-runtime==2.14.0", "pillow"])
    rows = {}
    for name, runtime in BUILDS.items():
        bundle = run / "export" / name
        if not bundle.is_dir():
            continue
        ref = np.load(bundle / "eval.npz")["reference"]
        row = {"runtime_on_arm": runtime}
        arm_pred, row["arm_top1"], row["arm_version"], row["arm_seconds"] = \
            predictions(arm, bundle, runtime)
        row["arm_agreement_with_reference"] = float((arm_pred == ref).mean())
        x86 = {"litert" if runtime == "tflite-runtime" else "onnxruntime": sys.executable}
        if runtime == "tflite-runtime":
            x86["tflite-runtime"] = x86_tfl
        for rt, py in x86.items():
            pred, top1, version, _ = predictions(py, bundle, rt)
            row[f"x86_{rt}"] = {"version": version, "top1": top1,
                                "agreement_with_reference": float((pred == ref).mean()),
                                "agreement_with_arm": float((pred == arm_pred).mean())}
        row["n"] = int(len(ref))
        rows[name] = row
        print(name, json.dumps(row))
    t0 = time.time()
    bench = subprocess.run([sys.executable, "-m", "edgetl", "bench", str(run), "--target",
                            "raspberry-pi-5-emulated", "--out", str(run / "bench-arm")],
                           capture_output=True, text=True)
    report = json.loads((run / "bench-arm" / "report.json").read_text())
    save(args.result, {"run": str(run), "builds": rows, "bench_exit_code": bench.returncode,
                       "bench_seconds": round(time.time() - t0, 1),
                       "bench_verdict": report.get("verdict"), "bench_rows": [
                           {k: r.get(k) for k in ("build", "runtime", "status", "emulated",
                                                   "top1", "top1_agreement",
                                                   "predicted_floor_ms", "floor_peak")}
                           for r in report["results"]]})
    print(bench.stdout)


if __name__ == "__main__":
    main()
