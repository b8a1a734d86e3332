"""TensorRT target: a bundle holds the QDQ (or fp16) ONNX file, `build_engine.py` (TensorRT
builder API), `build_settings.json` and the equivalent `trtexec` line, since an engine is tied to
the GPU and TensorRT version it is built on: the bundle runner builds it on the device (once,
cached). Where TensorRT and a GPU exist at export, the export builds the engine the same way and
checks its parity like every other build's."""
import json
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build_engine.py")


def trtexec_line(onnx_name: str, precision: str, img_size: int, max_batch: int) -> str:
    flags = {"fp16": "--fp16", "int8": "--int8 --fp16"}.get(precision, "")
    shape = f"input:{{}}x3x{img_size}x{img_size}"
    return (f"trtexec --onnx={onnx_name} --saveEngine=model.{precision}.plan {flags} "
            f"--minShapes={shape.format(1)} --optShapes={shape.format(1)} "
            f"--maxShapes={shape.format(max_batch)}").replace("  ", " ")


def settings(precision: str, img_size: int, max_batch: int = 8, float_blocks=()) -> dict:
    """The engine's build settings. int8: explicit quantization, so the QDQ placement decides
    each layer's precision; layers without QDQ (the float blocks) run at fp16."""
    return {"precision": precision, "input": "input", "min_batch": 1, "opt_batch": 1,
            "max_batch": max_batch, "img_size": img_size, "workspace_mb": 1024,
            "explicit_quantization": precision == "int8",
            "float_blocks": list(float_blocks) if precision == "int8" else [],
            "builder_flags": {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}.get(precision, [])}


def available() -> bool:
    """TensorRT and a CUDA GPU are here."""
    try:
        import tensorrt  # noqa: F401
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def write_bundle_files(folder: Path, onnx_name: str, precision: str, img_size: int,
                       float_blocks=()) -> dict:
    """build_engine.py, build_settings.json and the trtexec line; returns the settings."""
    conf = settings(precision, img_size, float_blocks=float_blocks)
    (folder / "build_engine.py").write_text(BUILD_SCRIPT.read_text())
    (folder / "build_settings.json").write_text(json.dumps(conf, indent=2) + "\n")
    (folder / "trtexec.sh").write_text("#!/bin/sh\n" + trtexec_line(
        onnx_name, precision, img_size, conf["max_batch"]) + "\n")
    return conf
