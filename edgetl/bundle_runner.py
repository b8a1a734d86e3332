#!/usr/bin/env python3
"""Standalone runner of an edgetl deployment bundle (copied into every bundle as run.py).

Needs only numpy and the bundle's runtime (ai-edge-litert or tflite-runtime for .tflite,
onnxruntime for .onnx); Pillow only to classify image files. No torch, no edgetl.

  python run.py                 evaluate the bundled set (eval.npz), print one JSON object
  python run.py --json out.json ...and write it to a file too
  python run.py photo1.jpg ...  classify images (needs Pillow)
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load_manifest(folder=HERE) -> dict:
    with open(os.path.join(folder, "manifest.json")) as f:
        return json.load(f)


def _tflite_interpreter():
    try:
        from ai_edge_litert import interpreter as mod
        import ai_edge_litert as pkg
        return mod.Interpreter, "litert", getattr(pkg, "__version__", "unknown")
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod
        import tflite_runtime as pkg
        return mod.Interpreter, "tflite-runtime", getattr(pkg, "__version__", "unknown")
    except ImportError:
        raise SystemExit("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime)")


class TFLiteModel:
    def __init__(self, path, threads=None, prefer=None):
        cls, self.runtime, self.version = _tflite_interpreter() if prefer is None else prefer
        self.interpreter = cls(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(x.shape[0]):
            self.interpreter.set_tensor(self.inp["index"], x[i:i + 1])
            self.interpreter.invoke()
            outs.append(self.interpreter.get_tensor(self.out["index"]).copy())
        return np.concatenate(outs)


class OnnxModel:
    def __init__(self, path, threads=None):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.runtime, self.version = "onnxruntime", ort.__version__

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: x})[0]


def open_model(manifest: dict, folder=HERE, threads=None):
    path = os.path.join(folder, manifest["model_file"])
    if manifest["format"] == "tflite":
        return TFLiteModel(path, threads)
    if manifest["format"] == "onnx":
        return OnnxModel(path, threads)
    raise SystemExit(f"format {manifest['format']} has no standalone runner: see README.md")


def to_input(images_uint8: np.ndarray, manifest: dict) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB crops -> the model's input tensor (layout, dtype, quantization)."""
    spec, inp = manifest["preprocessing"], manifest["input"]
    x = (images_uint8.astype(np.float32) / 255.0 - np.array(spec["mean"], np.float32)) \
        / np.array(spec["std"], np.float32)
    if inp["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    q = inp.get("quantization")
    if q:
        info = np.iinfo(np.dtype(inp["dtype"]))
        x = np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max)
    return np.ascontiguousarray(x.astype(inp["dtype"]))


def to_logits(y: np.ndarray, manifest: dict) -> np.ndarray:
    q = manifest["output"].get("quantization")
    y = y.astype(np.float32)
    return (y - q["zero_point"]) * q["scale"] if q else y


def predict(model, images_uint8, manifest) -> np.ndarray:
    return to_logits(model(to_input(images_uint8, manifest)), manifest)


def load_image(path, manifest) -> np.ndarray:
    """Resize the shorter side, centre-crop: the same preprocessing as training."""
    from PIL import Image
    spec = manifest["preprocessing"]
    img = Image.open(path)
    img = img.convert("RGBA") if img.mode in ("P", "LA", "RGBA") else img
    if img.mode == "RGBA":
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, img)
    img = img.convert("RGB")
    w, h = img.size
    scale = spec["resize_size"] / min(w, h)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                     Image.BICUBIC if spec["interpolation"] == "bicubic" else Image.BILINEAR)
    w, h = img.size
    c = spec["img_size"]
    left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
    return np.asarray(img.crop((left, top, left + c, top + c)), dtype=np.uint8)


def evaluate(model, manifest, folder=HERE) -> dict:
    data = np.load(os.path.join(folder, "eval.npz"))
    images, labels = data["images"], data["labels"]
    model(to_input(images[:1], manifest))                       # warm-up
    times, preds = [], []
    for i in range(len(images)):
        t0 = time.perf_counter()
        y = model(to_input(images[i:i + 1], manifest))
        times.append((time.perf_counter() - t0) * 1000)
        preds.append(int(np.argmax(to_logits(y, manifest), axis=-1)[0]))
    preds = np.array(preds)
    return {"top1": float((preds == labels).mean()), "n": int(len(labels)),
            "latency_ms": float(np.median(times)), "runtime": model.runtime,
            "runtime_version": model.version, "format": manifest["format"],
            "precision": manifest["precision"], "predictions": preds.tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", help="image files to classify")
    ap.add_argument("--json", help="also write the result to this file")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    manifest = load_manifest()
    model = open_model(manifest, threads=args.threads)
    if args.images:
        result = {"runtime": model.runtime, "runtime_version": model.version, "predictions": []}
        for path in args.images:
            logits = predict(model, load_image(path, manifest)[None], manifest)[0]
            k = int(np.argmax(logits))
            result["predictions"].append({"image": path, "label": manifest["labels"][k],
                                          "index": k})
    else:
        result = evaluate(model, manifest)
    text = json.dumps(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
