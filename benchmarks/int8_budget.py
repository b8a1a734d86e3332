"""Issue: int8 that keeps its accuracy. On each data set: fine-tune once (defaults), then export
fp32 and int8 three ways: PTQ (min-max), QAT (0.3 epoch of distillation, no budget) and QAT with
the default budget (0.5 point on validation) and mitigation. Per int8 build, held-out top-1 and
drop against fp32 in onnxruntime, LiteRT and tflite-runtime 2.14 (a separate venv, as on a Pi),
agreement with the int8 reference, the validation drop the decision saw, what mitigation did,
the export's wall time, and the report's most sensitive blocks.

  python benchmarks/int8_budget.py --data clothing=../shared/datasets/clothing-small \\
      --data digits=demo --data clothing6=runs/data/clothing6-imbalanced
Data sets are NAME=FOLDER; FOLDER 'demo' is the embedded digits at the demo's settings.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import held_out_predictions, runtime_python, save  # noqa: E402

import edgetl  # noqa: E402
from edgetl.pipeline import DEMO_TRAIN  # noqa: E402
from edgetl.training.digits import write_digits  # noqa: E402

VARIANTS = {"ptq": dict(quant="ptq", max_int8_drop=None),
            "qat": dict(quant="qat", max_int8_drop=None),
            "qat+budget": dict(quant="qat"),        # the default: budget 0.5, mitigation on
            "qat-7bit": dict(quant="qat", max_int8_drop=None, weight_range="reduced")}


def train(name, folder, root) -> Path:
    run = root / name / "base"
    if (run / "train" / "metrics.json").is_file():
        return run
    if folder == "demo":
        edgetl.train(write_digits(root / name / "digits"), run, img_size=64, **DEMO_TRAIN)
    else:
        edgetl.train(folder, run)
    return run


def variant(base: Path, name: str, options: dict, tflite_runtime) -> dict:
    run = base.parent / name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base / "train", run / "train")
    t0 = time.time()
    try:
        m = edgetl.export(run, formats="onnx,tflite", precisions="fp32,int8", **options)
        missed = None
    except edgetl.ParityError as e:
        m, missed = e.manifest, str(e)
    wall = time.time() - t0
    split = json.loads((run / "train" / "split.json").read_text())
    files = [str(Path(split["root"]) / p) for p, _ in (split["test"] or split["val"])]
    labels = [y for _, y in (split["test"] or split["val"])]
    fp32 = m["reference_top1"]["fp32"]
    ref = m["reference_predictions"]["int8"]
    builds = {}
    for a in m["artifacts"]:
        if a["precision"] == "int8" and a["variant"] == "":
            builds[f"{a['name']} ({a['runtime']})"] = _row(a["held_out_predictions"], labels,
                                                         ref, fp32)
    tfl = held_out_predictions(tflite_runtime, run / "export" / "tflite-int8", files)
    builds["tflite-int8 (tflite-runtime 2.14)"] = _row(tfl, labels, ref, fp32)
    q = m["quantization"]
    report = json.loads((run / "export" / "quant_report.json").read_text())
    return {"export_wall_seconds": round(wall, 1), "budget_missed": missed,
            "fp32_held_out_top1": fp32, "int8_reference_held_out_top1":
            m["reference_top1"]["int8"], "val_drop_points": q["val_drop_points"],
            "mitigation": [s["step"] for s in q["mitigation"]], "float_blocks":
            q["float_blocks"], "builds": builds,
            "most_sensitive": report["sensitivity"][:3], "output_sqnr_db":
            report["output"]["sqnr_db"]}


def _row(pred, labels, ref, fp32) -> dict:
    top1 = sum(p == y for p, y in zip(pred, labels)) / len(labels)
    return {"held_out_top1": top1, "drop_points": round(100 * (fp32 - top1), 2),
            "agreement_with_int8_reference": sum(p == r for p, r in zip(pred, ref)) / len(ref)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", action="append", required=True, help="NAME=FOLDER")
    ap.add_argument("--root", default="runs/int8-budget")
    ap.add_argument("--variants", default="ptq,qat,qat+budget")
    ap.add_argument("--result", default="int8_budget")
    args = ap.parse_args()
    tflite_runtime = runtime_python("tflite-runtime", ["numpy<2", "tflite-runtime==2.14.0",
                                                      "pillow"])
    result = {"variants": {k: VARIANTS[k] for k in args.variants.split(",")}, "datasets": {}}
    for spec in args.data:
        name, folder = spec.split("=", 1)
        base = train(name, folder, Path(args.root))
        metrics = json.loads((base / "train" / "metrics.json").read_text())
        result["datasets"][name] = {"data": folder, "classes": len(metrics["classes"]),
                                    "n": metrics["n"], "fp32_val_top1": metrics["val"]["top1"],
                                    "variants": {}}
        for v in args.variants.split(","):
            result["datasets"][name]["variants"][v] = variant(base, v, VARIANTS[v],
                                                              tflite_runtime)
            save(args.result, result)                  # partial results survive a crash
            print(name, v, json.dumps(result["datasets"][name]["variants"][v]["builds"]))


if __name__ == "__main__":
    main()
