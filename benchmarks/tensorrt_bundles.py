"""TensorRT bundles of the clothing-small run, checked as far as a machine without TensorRT
allows: the clothing run's train/ copied into a run of its own, `edgetl export --formats
tensorrt,executorch --precision fp16,int8`, and per TensorRT build the file each TensorRT line
builds from (10: precision flags; 11: strongly typed), each file's parity in onnxruntime
(agreement with the PyTorch reference, held-out top-1 with its n), the fp16 file's tensor
types and `tensorrt_ready`; beside them the ExecuTorch builds' parity and delegation. No engine
is built: TensorRT is not installed here."""
import argparse
import collections
import json
import shutil
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, timed_cli  # noqa: E402


def _types(path: Path) -> dict:
    """How many initializers of each type the file holds, and its opset."""
    model = onnx.load(str(path))
    kinds = collections.Counter(onnx.TensorProto.DataType.Name(i.data_type)
                                for i in model.graph.initializer)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"initializers": dict(kinds), "opset": opset, "nodes": len(model.graph.node)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="runs/bench-clothing-run",
                    help="a finished run whose train/ is exported")
    ap.add_argument("--out", default="runs/bench-tensorrt")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(Path(args.source) / "train", out / "train")
    wall, rc = timed_cli(["export", str(out), "--formats", "tensorrt,executorch",
                          "--precision", "fp16,int8"])
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    builds = {}
    for a in manifest["artifacts"]:
        entry = {k: a.get(k) for k in ("size_bytes", "test_top1", "top1", "runtime",
                                        "tensorrt_ready", "delegation", "seconds")}
        entry["parity"] = {k: v for k, v in a["parity"].items() if k != "files"}
        if a["format"] == "tensorrt":
            folder = out / "export" / a["name"]
            lines = json.loads((folder / "build_settings.json").read_text())["tensorrt"]
            entry["lines"] = lines
            entry["files"] = {name: {**{k: f[k] for k in ("top1_agreement", "decided_agreement",
                                                          "ties", "images", "held_out_top1",
                                                          "max_abs_diff", "passed")},
                                     **_types(folder / name)}
                              for name, f in a["parity"]["files"].items()}
        builds[a["name"]] = entry
    save("tensorrt_bundles", {
        "command": f"edgetl export {out} --formats tensorrt,executorch --precision fp16,int8",
        "exit_code": rc, "wall_seconds": round(wall, 1), "eval_split": manifest["eval_split"],
        "n": manifest["n"], "reference_top1": manifest["reference_top1"],
        "int8": {k: manifest["quantization"].get(k) for k in
                 ("method", "val_drop_points", "budget", "float_blocks", "shipped_step")},
        "never_executed": "TensorRT itself: no engine was built or run (not installed here)",
        "builds": builds, "failed": manifest["failed"]})


if __name__ == "__main__":
    main()
