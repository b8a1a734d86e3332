"""The whole chain on clothing-small with the x86-cpu profile, as a user runs it:
`edgetl run DATA --target x86-cpu` (fine-tune -> QAT -> export -> bench). Records each stage's
wall time, the int8 decision (validation drop, mitigation, float blocks), every build's held-out
top-1 and drop against fp32, the bench rows with their int8 speed-ups, and this CPU. Then, as a
user checks the result: `edgetl predict` of the test photos with the int8 TFLite build (its
top-1 against the export's), a second `edgetl bench` and `edgetl compare` of the two benches
and of fp32 against int8, and a screenshot of RUN/report.html in headless Chromium
(results/clothing_run_page.png)."""
import argparse
import json
import shutil
import subprocess
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
        "bench_settings": report["settings"], "flips": report.get("flips"), "rows": rows,
        "after": user_checks(out, data_path(args.data), export)})


def _json_of(args: list, path: Path) -> dict:
    wall, rc = timed_cli([*args, "--json", str(path)])
    return {"command": "edgetl " + " ".join(args[:2]) + " ...", "exit_code": rc,
            "wall_seconds": round(wall, 1), **json.loads(path.read_text())}


def user_checks(out: Path, data: Path, export: dict) -> dict:
    predicted = _json_of(["predict", str(out), str(data / "test"), "--build", "tflite-int8"],
                         out / "predict.json")
    measured = next(a for a in export["artifacts"] if a["name"] == "tflite-int8")
    _, rc = timed_cli(["bench", str(out), "--out", str(out / "bench-again")])
    again = _json_of(["compare", str(out), str(out / "bench-again")], out / "compare.json")
    int8 = _json_of(["compare", str(out), str(out), "--build-a", "tflite-fp32", "--build-b",
                     "tflite-int8"], out / "compare-int8.json")
    shot = Path(__file__).resolve().parent / "results" / "clothing_run_page.png"
    chromium = shutil.which("chromium")
    if chromium:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1280,5600",
                        f"--screenshot={shot}", (out / "report.html").resolve().as_uri()],
                       capture_output=True, timeout=120)
    return {"predict_tflite_int8": {"accuracy": predicted["accuracy"],
                                    "images": len(predicted["predictions"]),
                                    "export_held_out_top1": measured["test_top1"],
                                    "images_apart": round(abs(predicted["accuracy"]["top1"] -
                                                              measured["test_top1"]) *
                                                          len(predicted["predictions"]), 2)},
            "second_bench_exit_code": rc,
            "compare_two_benches": {r["a"]: r["latency"] for r in again["rows"]},
            "compare_warnings": again["warnings"],
            "compare_fp32_vs_int8": int8["rows"][0]["latency"],
            "page_screenshot": str(shot.name) if chromium and shot.is_file() else None}


if __name__ == "__main__":
    main()
