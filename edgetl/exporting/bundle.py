"""Deployment bundles: model file + manifest (everything needed to feed it) + a small evaluation
set + the standalone runner, one folder per build. The manifest holds the sha256 of every file
the bundle ships, which the runner checks before it runs anything."""
from pathlib import Path

import numpy as np

from ..core.files import sha256, write_json
from ..training.data import loader
from ..training.transforms import crop_transform
from . import tensorrt
from .calibration import select

RUNNER = Path(__file__).resolve().parent.parent / "bundle_runner.py"
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "tensorrt": ".onnx"}
# x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 pairs into saturating int16; with
# full-range int8 weights onnxruntime's default kernels overflow there. This option makes it use
# exact u8 x u8 kernels (tests/test_emulated_cpu.py shows both on an emulated Haswell); on CPUs
# with VNNI it only slows int8 down, so the runner sets it where the CPU lacks VNNI. Anyone
# loading the .onnx with their own code on such a CPU must set it too.
ORT_INT8_OPTIONS = {"x86_without_vnni": {"session.x64quantprecision": "1"}}


def eval_images(samples: list, spec) -> tuple:
    """uint8 [N, H, W, 3] crops (the training evaluation crop) and int labels."""
    images, labels = [], []
    for x, y, _ in loader(samples, crop_transform(spec), spec.resize_size, 64, workers=2):
        images.append(x.permute(0, 2, 3, 1).numpy())
        labels.append(y.numpy())
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


def io_details(build, model_path: Path, spec) -> tuple:
    """(input, output) sections of the bundle manifest, read from the model file itself."""
    layout = "NHWC" if build.variant == "nhwc" else "NCHW"
    if build.format == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_path=str(model_path))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        section = lambda d: {"name": d["name"], "shape": d["shape"].tolist(),
                             "dtype": np.dtype(d["dtype"]).name,
                             "quantization": {"scale": float(d["quantization"][0]),
                                              "zero_point": int(d["quantization"][1])}
                             if d["quantization"][0] else None}
        return {**section(inp), "layout": layout}, section(out)
    dtype = "float16" if build.precision == "fp16" else "float32"
    shape = ["batch", 3, spec.img_size, spec.img_size]
    return ({"name": "input", "shape": shape, "dtype": dtype, "layout": "NCHW",
             "quantization": None},
            {"name": "logits", "shape": ["batch", len(spec.labels)], "dtype": dtype,
             "quantization": None})


def model_file_name(build) -> str:
    return ("model" if build.format != "tensorrt" else f"model.{build.precision}") + \
        SUFFIX[build.format]


def write_bundle(folder: Path, build, data: bytes, spec, meta: dict, images, labels,
                 reference, bundle_size: int) -> dict:
    """`reference`: the PyTorch reference's predictions on `images` (agreement on the device)."""
    folder.mkdir(parents=True)
    model_file = model_file_name(build)
    (folder / model_file).write_bytes(data)
    keep = _balanced(labels, bundle_size)
    np.savez_compressed(folder / "eval.npz", images=images[keep], labels=labels[keep],
                        reference=reference[keep])
    (folder / "run.py").write_text(RUNNER.read_text())
    inp, out = io_details(build, folder / model_file, spec)
    manifest = {"format": build.format, "precision": build.precision, "variant": build.variant,
                "model_file": model_file, "labels": list(spec.labels),
                "preprocessing": {"img_size": spec.img_size, "resize_size": spec.resize_size,
                                  "interpolation": spec.interpolation,
                                  "policy": "EXIF upright, resize shorter side, centre crop",
                                  "mean": list(spec.mean), "std": list(spec.std),
                                  "color": "RGB", "scale": "pixels / 255"},
                "input": inp, "output": out, "quantization": meta.get("quantization"),
                "macs": meta.get("macs"),
                "source_checkpoint_sha256": meta["source_checkpoint_sha256"],
                "edgetl_version": meta["edgetl_version"]}
    if build.format == "onnx" and build.precision == "int8":
        manifest["runtime_options"] = {"onnxruntime": ORT_INT8_OPTIONS}
    if build.format == "tensorrt":
        floats = (meta.get("quantization") or {}).get("float_blocks", [])
        manifest["tensorrt"] = tensorrt.write_bundle_files(folder, model_file, build.precision,
                                                           spec.img_size, floats)
    seal(folder, manifest)
    return manifest


def seal(folder: Path, manifest: dict) -> None:
    """Record the sha256 of every file in the bundle (but the manifest) and write it."""
    manifest["sha256"] = {f.name: sha256(f) for f in sorted(folder.iterdir())
                          if f.is_file() and f.name != "manifest.json"}
    write_json(folder / "manifest.json", manifest)


def _balanced(labels, size: int) -> np.ndarray:
    if size >= len(labels):
        return np.arange(len(labels))
    picked = select([(i, int(y)) for i, y in enumerate(labels)], size, int(labels.max()) + 1)
    return np.array(sorted(i for i, _ in picked))
