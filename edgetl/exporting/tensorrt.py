"""TensorRT target: a bundle holds the ONNX files its engine is built from, `build_engine.py`
(TensorRT builder API), `build_settings.json` and the equivalent `trtexec` lines, since an engine
is tied to the GPU and TensorRT version it is built on: the bundle runner builds it on the
device (once, cached).

Two TensorRT lines are in use, and a bundle builds on both, choosing by the installed version:
- TensorRT 10 (JetPack 6 on Jetsons): weak typing; precision from builder flags (FP16; INT8 with
  FP16), int8 from the QDQ ONNX (explicit quantization), layers without QDQ at fp16.
- TensorRT 11 (discrete GPUs): strong typing only; the flags and calibrators are gone, so each
  tensor runs at the type the ONNX file gives it. fp16 comes from the fp16 ONNX; int8 from a QDQ
  ONNX whose float parts (the float blocks of the int8 decision included) are fp16, made here
  with onnxconverter-common (fp32 input and output kept, opset 19 for fp16 Q/DQ scales).

Where TensorRT and a GPU exist at export, the export builds the engine as the device does and
checks its parity; elsewhere each ONNX file is checked in onnxruntime with the same gates."""
import json
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build_engine.py")
FP16_OPSET = 19                   # QuantizeLinear/DequantizeLinear take fp16 scales from 19
# onnxruntime's CPU provider folds fp16 QDQ weights wrongly (top-1 0.10 on clothing-small)
# unless this optimizer is off; the stand-in check of the fp16-parts file sets it.
ORT_FP16_QDQ_OPTIONS = {"always": {"optimization.disable_specified_optimizers":
                                   "WeightBiasQuantization"}}


def onnx_files(precision: str, model_name: str) -> dict:
    """The ONNX file each TensorRT line builds from (fp16: one fp16 file for both)."""
    strong = model_name.replace(".onnx", ".fp16.onnx") if precision == "int8" else model_name
    return {"10": model_name, "11": strong}


def trtexec_line(onnx_name: str, precision: str, img_size: int, max_batch: int,
                 strongly_typed: bool) -> str:
    flags = "" if strongly_typed else {"fp16": "--fp16", "int8": "--int8 --fp16"}[precision]
    shape = f"input:{{}}x3x{img_size}x{img_size}"
    return " ".join(p for p in (
        f"trtexec --onnx={onnx_name} --saveEngine=model.{precision}.plan", flags,
        f"--minShapes={shape.format(1)} --optShapes={shape.format(1)} "
        f"--maxShapes={shape.format(max_batch)}") if p)


def settings(precision: str, img_size: int, model_name: str, max_batch: int = 8,
             float_blocks=()) -> dict:
    """The engine's build settings, one entry per TensorRT line (its major version)."""
    files = onnx_files(precision, model_name)
    lines = {"10": {"onnx": files["10"], "strongly_typed": False,
                    "builder_flags": {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]},
             "11": {"onnx": files["11"], "strongly_typed": True, "builder_flags": []}}
    return {"precision": precision, "input": "input", "min_batch": 1, "opt_batch": 1,
            "max_batch": max_batch, "img_size": img_size, "workspace_mb": 1024,
            "explicit_quantization": precision == "int8",
            "float_blocks": list(float_blocks) if precision == "int8" else [],
            "tensorrt": lines}


def fp16_float_parts(qdq: bytes) -> bytes:
    """The QDQ ONNX with every float tensor (activations, scales, biases, float blocks) at
    fp16 and fp32 input and output: int8 with fp16 elsewhere under strong typing."""
    import onnx
    from onnxconverter_common import float16
    model = float16.convert_float_to_float16(onnx.load_from_string(qdq), keep_io_types=True)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, FP16_OPSET)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def available() -> bool:
    """TensorRT and a CUDA GPU are here."""
    import importlib.util

    from ..bundle_runner import cuda_devices
    return importlib.util.find_spec("tensorrt") is not None and cuda_devices() > 0


def write_bundle_files(folder: Path, onnx_name: str, precision: str, img_size: int,
                       float_blocks=()) -> dict:
    """The strongly typed ONNX file (int8), build_engine.py, build_settings.json and trtexec.sh
    (both lines); returns the settings."""
    conf = settings(precision, img_size, onnx_name, float_blocks=float_blocks)
    lines = conf["tensorrt"]
    if lines["11"]["onnx"] != onnx_name:
        from .onnx import check_tensorrt_ready
        data = fp16_float_parts((folder / onnx_name).read_bytes())
        check_tensorrt_ready(data, f"{folder.name} ({lines['11']['onnx']})")
        (folder / lines["11"]["onnx"]).write_bytes(data)
    (folder / "build_engine.py").write_text(BUILD_SCRIPT.read_text())
    (folder / "build_settings.json").write_text(json.dumps(conf, indent=2) + "\n")
    line = {v: trtexec_line(lines[v]["onnx"], precision, img_size, conf["max_batch"],
                            lines[v]["strongly_typed"]) for v in lines}
    (folder / "trtexec.sh").write_text(
        "#!/bin/sh\n# The engine by hand: sh trtexec.sh [TENSORRT_MAJOR]; without it, the major\n"
        "# version of the tensorrt Python package. 11 and later are strongly typed: the\n"
        "# precision comes from the ONNX file's types, not from flags.\n"
        "major=${1:-$(python3 -c 'import tensorrt; print(tensorrt.__version__.split(\".\")[0])'"
        " 2>/dev/null)}\n"
        'case "$major" in\n'
        f'  ""|?|10) exec {line["10"]} ;;\n'
        f'  *) exec {line["11"]} ;;\n'
        "esac\n")
    return conf


def stand_ins(bundle: dict, ort_options: dict) -> list:
    """(ONNX file, runner manifest) for each file a TensorRT bundle builds from, to check in
    onnxruntime where TensorRT is not here: the manifest as the file is fed, with
    `ort_options` (the session entries edgetl's own ONNX builds of this precision carry)."""
    lines = bundle["tensorrt"]["tensorrt"]
    checks = []
    for name in dict.fromkeys(line["onnx"] for line in lines.values()):
        fp16_parts = name != bundle["model_file"]
        options = {**ort_options, **(ORT_FP16_QDQ_OPTIONS if fp16_parts else {})}
        checks.append((name, {**bundle, "format": "onnx", "model_file": name,
                              "runtime_options": {"onnxruntime": options}}))
    return checks
