"""Checks 1, 3, 4, 5 of the export issue: export every build of the clothing-small run (QAT),
then record accuracy, parity, sizes, the int8 TFLite operator inventory, the QDQ ONNX
TensorRT-readiness and the export time without QAT training."""
import argparse
import json
import time
from pathlib import Path

from common import save
import edgetl
from edgetl.exporting import onnx as onnx_export
from edgetl.exporting import tflite_graph


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-clothing",
                    help="a run trained by clothing_finetune.py")
    ap.add_argument("--qat-epochs", type=float, default=0.3)
    args = ap.parse_args()
    run = Path(args.run)
    t0 = time.time()
    try:
        manifest = edgetl.export(run, qat_epochs=args.qat_epochs, overwrite=True)
        error = None
    except edgetl.EdgetlError as e:
        manifest, error = json.loads((run / "export" / "manifest.json").read_text()), str(e)
    wall = time.time() - t0
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    train_top1 = json.loads((run / "train" / "metrics.json").read_text())["test"]["top1"]
    inventory = tflite_graph.op_inventory((run / by_name["tflite-int8"]["path"]).read_bytes())
    qdq = (run / by_name["onnx-int8"]["path"]).read_bytes()
    save("clothing_export", {
        "run": str(run), "error": error, "export_wall_seconds": round(wall, 1),
        "qat_seconds": manifest["quantization"]["seconds"],
        "export_seconds_without_qat": round(wall - manifest["quantization"]["seconds"], 1),
        "fp32_checkpoint_test_top1": train_top1, "reference_top1": manifest["reference_top1"],
        "builds": {n: {"test_top1": a["test_top1"], "size_bytes": a["size_bytes"],
                       "parity": a["parity"]} for n, a in by_name.items()},
        "int8_vs_fp32_points": {n: round(100 * (by_name[n]["test_top1"] - train_top1), 2)
                                for n in ("tflite-int8", "onnx-int8")},
        "tflite_int8_size_ratio": round(by_name["tflite-int8"]["size_bytes"]
                                        / by_name["tflite-fp32"]["size_bytes"], 3),
        "tflite_int8_ops": inventory,
        "tflite_int8_integer_violations": tflite_graph.integer_violations(inventory, True),
        "qdq_onnx_tensorrt_problems": onnx_export.tensorrt_readiness(qdq)})


if __name__ == "__main__":
    main()
