"""The int8 budget's decision rule on real data sets: per data set, one fine-tune (defaults, or
a finished run reused), then `edgetl export --formats onnx` with the default budget (0.5 point)
and mitigation. Records, per step, the paired validation evidence (images lost and gained
against fp32, the exact one-sided McNemar p, what the split can resolve) and the verdict of the
rule (met / within noise / missed), whether the earlier point-estimate rule would have
mitigated, the step shipped, and the shipped onnx-int8 build's paired counts on the test split
(reported, never decided on).

  python benchmarks/int8_decision.py --data digits=demo \\
      --data clothing=runs/bench-clothing-run --data clothing6=runs/data/clothing6-imbalanced
NAME=FOLDER: an image folder (fine-tuned here), 'demo' (the embedded digits at the demo's
settings) or a finished run folder (its train/ is reused). `--variant poor-calibration` exports
with PTQ calibrated on 2 images instead: a real loss, to see the rule mitigate it.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

import edgetl  # noqa: E402
from edgetl.core.intervals import paired  # noqa: E402
from edgetl.pipeline import DEMO_TRAIN  # noqa: E402
from edgetl.training.digits import write_digits  # noqa: E402


def trained(name: str, folder: str, root: Path) -> Path:
    if (Path(folder) / "train" / "metrics.json").is_file():
        return Path(folder)
    run = root / name / "base"
    if not (run / "train" / "metrics.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        if folder == "demo":
            edgetl.train(write_digits(root / name / "digits"), run, img_size=64, **DEMO_TRAIN)
        else:
            edgetl.train(folder, run)
    return run


VARIANTS = {"defaults": {}, "poor-calibration": {"quant": "ptq", "calib_size": 2}}


def decide(base: Path, run: Path, options: dict) -> dict:
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base / "train", run / "train")
    t0 = time.time()
    try:
        m, missed = edgetl.export(run, formats="onnx", precisions="fp32,int8", **options), None
    except edgetl.ParityError as e:
        m, missed = e.manifest, str(e)
    q = m["quantization"]
    steps = json.loads((run / "export" / "quant_report.json").read_text())["decision"]["steps"]
    labels = [y for _, y in _held_out(run)]
    fp32 = m["reference_predictions"]["fp32"]
    int8 = next(a for a in m["artifacts"] if a["name"] == "onnx-int8")
    test = paired([p == y for p, y in zip(fp32, labels)],
                  [p == y for p, y in zip(int8["held_out_predictions"], labels)])
    return {"options": options, "export_wall_seconds": round(time.time() - t0, 1),
            "budget_missed": missed,
            "max_int8_drop": q["max_int8_drop"], "rule": q["rule"],
            "steps": [{k: s[k] for k in ("step", "float_blocks", "val_n", "val_drop_points",
                                         "paired", "budget", "flips")} for s in steps],
            "earlier_rule_would_mitigate": steps[0]["val_drop_points"] > q["max_int8_drop"],
            "shipped_step": q["shipped_step"], "shipped_budget": q["budget"],
            "shipped_float_blocks": q["float_blocks"],
            "held_out_split": m["eval_split"], "held_out_paired_onnx_int8": test}


def _held_out(run: Path) -> list:
    split = json.loads((run / "train" / "split.json").read_text())
    return split["test"] or split["val"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", action="append", required=True, help="NAME=FOLDER")
    ap.add_argument("--root", default="runs/int8-decision")
    ap.add_argument("--variant", choices=VARIANTS, default="defaults")
    ap.add_argument("--result", default=None, help="default: int8_decision[_VARIANT]")
    args = ap.parse_args(argv)
    result_name = args.result or "int8_decision" + (
        "" if args.variant == "defaults" else "_" + args.variant.replace("-", "_"))
    result = {"variant": args.variant, "datasets": {}}
    for spec in args.data:
        name, folder = spec.split("=", 1)
        base = trained(name, folder, Path(args.root))
        metrics = json.loads((base / "train" / "metrics.json").read_text())
        result["datasets"][name] = {"data": folder, "classes": len(metrics["classes"]),
                                    "n": metrics["n"], "fp32_val": metrics["val"],
                                    "fp32_test": metrics["test"],
                                    **decide(base, Path(args.root) / name / args.variant,
                                             VARIANTS[args.variant])}
        save(result_name, result)                      # partial results survive a crash
        print(name, json.dumps(result["datasets"][name]["steps"]))


if __name__ == "__main__":
    main()
