"""The whole chain on clothing-small with the x86-cpu profile, as a user runs it:
`edgetl run DATA --target x86-cpu` (fine-tune -> QAT -> export -> bench). Records each stage's
wall time, the int8 decision (validation drop, mitigation, float blocks), every build's held-out
top-1 and drop against fp32, the bench rows with their int8 speed-ups, and this CPU."""
import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_path, save, timed_cli  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/bench-clothing-run")
    ap.add_argument("--target", default="x86-cpu")
    ap.add_argument("--result", default="clothing_run")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    wall, rc = timed_cli(["run", str(data_path(args.data)), "--target", args.target,
                          "--out", args.out])
    out = Path(args.out)
    report = json.loads((out / "bench" / "report.json").read_text())
    export = json.loads((out / "export" / "manifest.json").read_text())
    train = json.loads((out / "train" / "metrics.json").read_text())
    fp32 = export["reference_top1"]["fp32"]
    rows = [{k: r.get(k) for k in ("build", "runtime", "status", "top1", "n", "top1_record",
                                    "held_out_top1", "top1_agreement", "latency_ms",
                                    "end_to_end_ms", "x_floor", "int8_speedup",
                                    "int8_speedup_paired", "conditions_summary", "size_bytes")}
            for r in report["results"]]
    q = export["quantization"]
    save(args.result, {
        "command": f"edgetl run DATA --target {args.target} --out {args.out}", "exit_code": rc,
        "wall_seconds": round(wall, 1), "train_wall_seconds": train["wall_seconds"],
        "export_wall_seconds": export["wall_seconds"], "int8_decision_seconds": q["seconds"],
        "fp32_val_top1": train["val"]["top1"], "fp32_test_top1": train["test"]["top1"],
        "held_out_top1": {a["name"]: a["test_top1"] for a in export["artifacts"]},
        "int8_minus_fp32_points_held_out": {
            a["name"]: round(100 * (a["test_top1"] - fp32), 2) for a in export["artifacts"]
            if a["precision"] == "int8" and a["test_top1"] is not None},
        "parity": {a["name"]: a["parity"] for a in export["artifacts"]},
        "held_out_top1_ci95": {a["name"]: (a.get("top1") or {}).get("ci95")
                               for a in export["artifacts"]},
        "held_out_paired_vs_fp32": {a["name"]: a.get("paired") for a in export["artifacts"]
                                    if a.get("paired")},
        "int8": {k: q.get(k) for k in ("method", "qat_epochs", "weight_range", "val_fp32_top1",
                                       "val_int8_top1", "val_n", "val_drop_points", "paired",
                                       "budget", "shipped_step", "mitigation", "float_blocks",
                                       "rule")},
        "verdict": report.get("verdict"), "machine_peak": report["machine"].get("peak"),
        "bench_settings": report["settings"], "flips": report.get("flips"), "rows": rows})


if __name__ == "__main__":
    main()
