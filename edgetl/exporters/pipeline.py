"""RUN/train/ -> RUN/export/: quantize once (QAT or PTQ), build every requested format from the
same scales, check each build in its own runtime against its PyTorch reference, write bundles."""
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__, bundle_runner, calibration, qat
from ..checkpoint import load_checkpoint, sha256, write_json
from ..config import load_config, parse_names
from ..data import load_split
from ..errors import ConfigError, ParityError, RunError
from ..quantize import OBSERVERS, WEIGHT_RANGES, quant_params
from ..rundir import stage_logger
from . import onnx as onnx_export
from . import tensorrt, tflite
from .bundle import eval_images, write_bundle

FORMATS = ("onnx", "tflite", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
THRESHOLDS = {"fp32": 0.995, "fp16": 0.99, "int8": 0.99}
TIE_STEPS = 4          # int8: reference top-2 within this many output steps is a tie
DEFAULT_CALIB_SIZE = 256


@dataclass(frozen=True)
class Build:
    format: str
    precision: str
    variant: str = ""                   # "", "float-io" or "nhwc" (TFLite int8)

    @property
    def name(self) -> str:
        return "-".join(p for p in (self.format, self.precision, self.variant) if p)


def plan(formats, precisions) -> list:
    formats, precisions = parse_names(formats, FORMATS, "format"), parse_names(precisions, PRECISIONS,
                                                                      "precision")
    builds = []
    for f in formats:
        for p in precisions:
            if f == "tensorrt" and p == "fp32":
                continue                # a Jetson runs TensorRT at fp16 or int8
            builds.append(Build(f, p))
            if f == "tflite" and p == "int8":
                builds += [Build(f, p, "float-io"), Build(f, p, "nhwc")]
    return builds


def export(run, formats="onnx,tflite,tensorrt", precisions="fp32,fp16,int8", quant="qat",
           qat_epochs=0.3, calib_size=None, observer="minmax", weight_range="reduced",
           bundle_size=100, overwrite=False) -> dict:
    """Write RUN/export/ (built in a temporary folder, then moved into place); returns its
    manifest. Raises ParityError listing the builds whose parity fell below the threshold."""
    start = time.time()
    run = Path(run)
    builds = plan(formats, precisions)
    if quant not in ("qat", "ptq") or observer not in OBSERVERS or \
            weight_range not in WEIGHT_RANGES:
        raise ConfigError(f"--quant {quant} / --observer {observer} / --weight-range "
                          f"{weight_range}: use qat|ptq, {'|'.join(OBSERVERS)} and "
                          f"{'|'.join(WEIGHT_RANGES)}")
    ckpt = run / "train" / "model.safetensors"
    if not ckpt.is_file():
        raise RunError(f"{ckpt} not found: run 'edgetl train DATA --out {run}' first")
    final = run / "export"
    if final.exists() and not overwrite:
        raise RunError(f"{final} already exists: pass --overwrite to replace it")
    work = run / f".export.tmp{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        quant_opts = dict(quant=quant, qat_epochs=qat_epochs, calib_size=calib_size,
                          observer=observer, weight_range=weight_range)
        manifest = _export_into(work, run, ckpt, builds, quant_opts, bundle_size, start)
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [a for a in manifest["artifacts"] if a["parity"].get("passed") is False]
    if failed:
        raise ParityError("parity below threshold (written to the manifest): " + "; ".join(
            f"{a['name']}: agreement {a['parity']['decided_agreement']:.4f} "
            f"({a['parity'].get('ties', 0)} near-ties left out) < "
            f"{a['parity']['threshold']}" for a in failed), manifest)
    return manifest


def _export_into(work, run, ckpt, builds, quant_opts, bundle_size, start) -> dict:
    log = stage_logger(work / "export.log")
    model, spec, _ = load_checkpoint(ckpt)
    cfg = load_config(**{k: v for k, v in json.loads((run / "train/config.json").read_text())
                         .items() if k not in ("data", "world_size", "spec")})
    splits = load_split(run / "train" / "split.json")
    held_out = splits.test or splits.val
    images, labels = eval_images(held_out, spec)
    checkpoint_hash = sha256(ckpt)
    base_meta = {"edgetl_version": __version__, "source_checkpoint_sha256": checkpoint_hash,
                 "spec": spec.to_dict(), "macs": count_macs(model, spec.img_size)}
    ref = {"fp32": _torch_logits(model, images, spec)}
    converted, qinfo = None, None
    if any(b.precision == "int8" for b in builds):
        converted, qinfo = _quantize(model, spec, cfg, splits, work, log, **quant_opts)
        ref["int8"] = _torch_logits(converted, images, spec)
    ref["fp16"] = ref["fp32"]
    artifacts, converted_graphs = [], {}
    for build in builds:
        t0 = time.time()
        source = converted if build.precision == "int8" else model
        meta = {**base_meta, "format": build.format, "precision": build.precision,
                "variant": build.variant, "quantization": qinfo if build.precision == "int8"
                else None}
        artifact = _one_build(build, source, spec, meta, converted_graphs, images, labels, ref,
                              bundle_size, work)
        artifact["seconds"] = round(time.time() - t0, 1)
        log.info("%-24s top-1 %s  agreement %s  (%.0f s)", build.name, artifact["test_top1"],
                 artifact["parity"].get("top1_agreement"), artifact["seconds"])
        artifacts.append(artifact)
    manifest = {"run": str(run), "source_checkpoint_sha256": checkpoint_hash,
                "eval_split": "test" if splits.test else "val", "n": len(labels),
                "reference_top1": {k: _top1(v, labels) for k, v in ref.items()},
                "quantization": qinfo and {k: v for k, v in qinfo.items() if k != "params"},
                "artifacts": artifacts, "wall_seconds": round(time.time() - start, 1)}
    write_json(work / "manifest.json", manifest)
    return manifest


def _quantize(model, spec, cfg, splits, work, log, quant, qat_epochs, calib_size, observer,
              weight_range):
    t0 = time.time()
    size = calib_size or min(DEFAULT_CALIB_SIZE, len(splits.train))   # explicit: strict
    chosen = calibration.select(splits.train, size, len(spec.labels), cfg.seed)
    calibration.write_manifest(work / "calibration.json", chosen, cfg.seed,
                               "minmax" if quant == "qat" else observer)
    if quant == "qat":
        converted = qat.qat(model, spec, cfg, splits.train, chosen, qat_epochs, weight_range,
                            log=log)
        info = {"method": "qat", "qat_epochs": qat_epochs, "scales": "min-max over the "
                "calibration set, frozen before training", "calibration": "calibration.json"}
    else:
        converted = qat.ptq(model, spec, chosen, observer, weight_range, log=log)
        info = {"method": "ptq", "observer": observer, "calibration": "calibration.json"}
    info["calib_size"] = len(chosen)
    params = quant_params(converted, weight_range)
    write_json(work / "quant_params.json", params)
    return converted, {**info, "scheme": params["scheme"], "params": "quant_params.json",
                       "seconds": round(time.time() - t0, 1)}


def count_macs(model, img_size: int) -> int:
    """Multiply-accumulates of one image through the float model (the roofline's numerator)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, img_size, img_size))
    return int(counter.get_total_flops() // 2)


def _torch_logits(model, images, spec, batch=64) -> np.ndarray:
    manifest = {"preprocessing": {"mean": spec.mean, "std": spec.std},
                "input": {"layout": "NCHW", "dtype": "float32"}}
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(bundle_runner.to_input(images[i:i + batch], manifest))
            out.append(model(x).float().numpy())
    return np.concatenate(out)


def _top1(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).mean())


def _model_bytes(build, source, spec, meta, converted: dict) -> bytes:
    """Each graph converted once per (format, precision, layout); variants derive from it."""
    layout = "NHWC" if build.variant == "nhwc" else "NCHW"
    key = ("onnx" if build.format == "tensorrt" else build.format, build.precision, layout)
    if key not in converted:
        converted[key] = tflite.convert(source, build.precision, spec.img_size, layout) \
            if build.format == "tflite" else \
            onnx_export.build(source, build.precision, spec.img_size, metadata=meta)
    if build.format != "tflite":
        return converted[key]
    return tflite.finish(converted[key], "float" if build.variant == "float-io" else "int8",
                         meta)


def _one_build(build, source, spec, meta, converted, images, labels, ref, bundle_size, work):
    data = _model_bytes(build, source, spec, meta, converted)
    if build.format in ("onnx", "tensorrt") and build.precision == "int8":
        onnx_export.check_tensorrt_ready(data, f"{build.name} (QDQ ONNX)")
    reference = ref["int8" if build.precision == "int8" else "fp32"]
    runner_manifest = write_bundle(work / build.name, build, data, spec, meta, images, labels,
                                   reference.argmax(-1), bundle_size)
    model_file = runner_manifest["model_file"]
    artifact = {"name": build.name, "format": build.format, "precision": build.precision,
                "variant": build.variant, "path": str(Path("export") / build.name / model_file),
                "size_bytes": len(data), "sha256": runner_manifest["sha256"][model_file]}
    if build.format == "tensorrt":
        return {**artifact, "test_top1": None, "tensorrt_ready": True,
                "parity": {"reference": f"torch-{build.precision}",
                           "note": "engine built on the device with build_engine.py"
                           if not tensorrt.available() else "engine built here"}}
    model = bundle_runner.open_model(runner_manifest, str(work / build.name))
    logits = bundle_runner.predict(model, images, runner_manifest)
    same = logits.argmax(-1) == reference.argmax(-1)
    agreement = float(same.mean())
    decided = decided_samples(reference) if build.precision == "int8" else np.ones_like(same)
    decided_agreement = float(same[decided].mean()) if decided.any() else 1.0
    top1 = _top1(logits, labels)
    _record_eval_top1(work / build.name, runner_manifest, model, top1)
    return {**artifact, "test_top1": top1, "runtime": model.runtime,
            "runtime_version": model.version,
            "parity": {"reference": "torch-int8 (quantized)" if build.precision == "int8"
                       else "torch-fp32", "top1_agreement": agreement,
                       "max_abs_diff": float(np.abs(logits - reference).max()),
                       "ties": int((~decided).sum()),
                       "decided_agreement": decided_agreement,
                       "threshold": THRESHOLDS[build.precision],
                       "passed": decided_agreement >= THRESHOLDS[build.precision]}}


def decided_samples(reference: np.ndarray) -> np.ndarray:
    """Samples whose int8 reference top-1 wins by more than TIE_STEPS output quantization steps.
    The int8 logits lie on one grid (step = the output scale); two int8 runtimes round each
    layer differently, so a closer call may flip without either build being wrong."""
    grid = np.unique(np.round(reference.astype(np.float64), 6))
    steps = np.diff(grid)
    step = steps[steps > 1e-6].min() if (steps > 1e-6).any() else 0.0
    top2 = np.sort(reference, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > TIE_STEPS * step + 1e-6


def _record_eval_top1(folder, manifest, model, held_out_top1):
    """eval_top1 in the bundle manifest: this build's accuracy on the bundled set."""
    result = bundle_runner.evaluate(model, manifest, str(folder))
    manifest.update(eval_top1=result["top1"], eval_n=result["n"],
                    held_out_top1=held_out_top1)
    write_json(folder / "manifest.json", manifest)
