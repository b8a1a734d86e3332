"""Check 2 of the export issue: PTQ (min-max and histogram observers) against QAT for the same
fine-tuned run, side by side, measured with the int8 TFLite build in LiteRT on the test split."""
import argparse
import json
import shutil
from pathlib import Path

from common import save
import edgetl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-clothing")
    ap.add_argument("--qat-epochs", type=float, default=0.3)
    args = ap.parse_args()
    source = Path(args.run)
    rows = {}
    for name, opts in {"ptq-minmax": dict(quant="ptq", observer="minmax"),
                       "ptq-histogram": dict(quant="ptq", observer="histogram"),
                       "qat": dict(quant="qat", qat_epochs=args.qat_epochs)}.items():
        work = source.parent / f"{source.name}-{name}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source / "train", work / "train")
        try:
            m = edgetl.export(work, formats="tflite", precisions="int8", bundle_size=20, **opts)
            err = None
        except edgetl.EdgetlError as e:
            m, err = json.loads((work / "export" / "manifest.json").read_text()), str(e)
        a = next(x for x in m["artifacts"] if x["name"] == "tflite-int8")
        rows[name] = {"tflite_int8_test_top1": a["test_top1"],
                      "torch_int8_top1": m["reference_top1"]["int8"],
                      "agreement": a["parity"]["top1_agreement"], "error": err,
                      "quantize_seconds": m["quantization"]["seconds"]}
        print(name, rows[name], flush=True)
    fp32 = json.loads((source / "train" / "metrics.json").read_text())["test"]["top1"]
    save("ptq_vs_qat", {"run": str(source), "fp32_test_top1": fp32, "results": rows})


if __name__ == "__main__":
    main()
