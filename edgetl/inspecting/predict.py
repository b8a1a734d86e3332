"""`edgetl predict RUN|BUNDLE IMAGE|FOLDER...`: photos classified by one build in its own
runtime, through the bundle's own image path (bundle_runner: decode, resize, crop, normalize,
quantize), so a prediction here is what run.py gives on the device. Folders are read with
training's image rules; an image inside a folder named after one of the model's classes counts
toward an accuracy with its interval."""
import json
from pathlib import Path

import numpy as np

from .. import bundle_runner
from ..core.console import bar as progress
from ..core.errors import DataError, RunError, RuntimeUnavailable
from ..core.folders import images_in
from ..core.intervals import top1

PREFERRED = ("tflite-int8", "onnx-int8", "executorch-int8", "tflite-fp32", "onnx-fp32")


def bundle_folder(path, build=None) -> Path:
    """A bundle folder, or RUN/export/BUILD of a run (default: the first of PREFERRED there)."""
    path = Path(path)
    if (path / "manifest.json").is_file() and (path / "run.py").is_file():
        if build:
            raise RunError(f"{path} is one bundle: drop --build, or pass its run folder")
        return path
    manifest = path / "export" / "manifest.json"
    if not manifest.is_file():
        raise RunError(f"{path}: neither a bundle folder (manifest.json + run.py) nor a run with "
                       "an export (RUN/export/manifest.json): run edgetl export first")
    names = [a["name"] for a in json.loads(manifest.read_text())["artifacts"]]
    if build and build not in names:
        raise RunError(f"--build {build}: {path} has no such build; choose one of "
                       f"{', '.join(names)}")
    chosen = build or next((b for b in PREFERRED if b in names), names[0] if names else None)
    if chosen is None:
        raise RunError(f"{path}/export holds no build: export again")
    return path / "export" / chosen


def predict(path, images, build=None, top_k: int = 3, runtime=None, threads=None) -> dict:
    """Every image file in IMAGES (files and folders) classified; returns the predictions, the
    skipped and ignored files, and the accuracy where folder names give the labels."""
    folder = bundle_folder(path, build)
    files, ignored = _files(images)
    try:
        manifest = bundle_runner.load_manifest(folder)
        bundle_runner.verify(manifest, folder)
        model = bundle_runner.open_model(manifest, folder, threads=threads, runtime=runtime)
    except bundle_runner.RuntimeMissing as e:
        raise RuntimeUnavailable(f"{folder}: {e}") from None
    except bundle_runner.BundleError as e:
        raise RunError(f"{folder}: {e}") from None
    labels = manifest["labels"]
    rows, skipped = [], []
    for f in progress(files, desc=f"predict ({Path(folder).name})", unit="img"):
        try:
            crop = bundle_runner.load_image(f, manifest)
        except (OSError, ValueError, SyntaxError) as e:
            skipped.append({"image": str(f), "reason": f"{e.__class__.__name__}: {e}"})
            continue
        rows.append(_row(f, bundle_runner.predict(model, crop[None], manifest)[0], labels, top_k))
    known = [r for r in rows if "true_label" in r]
    return {"bundle": str(folder), "build": Path(folder).name, "format": manifest["format"],
            "precision": manifest["precision"], "runtime": model.runtime,
            "runtime_version": model.version, "predictions": rows, "skipped": skipped,
            "ignored": [str(p) for p in ignored],
            "accuracy": top1(sum(r["correct"] for r in known), len(known)) if known else None,
            "export_held_out_top1": manifest.get("held_out_top1")}


def _files(images) -> tuple:
    missing = [str(p) for p in images if not Path(p).exists()]
    if missing:
        raise DataError(f"{missing[0]}: no such image or folder; pass image files or folders")
    files, ignored = images_in(images)
    if not files:
        raise DataError(f"no image files in {', '.join(map(str, images))} ({len(ignored)} other "
                        "file(s)): pass .jpg/.png/... files or folders holding them")
    return files, ignored


def _row(path: Path, logits: np.ndarray, labels: list, top_k: int) -> dict:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    # stable: tied scores (int8 outputs often tie) rank in class order, so the label is the
    # argmax that export, bench and the bundles report
    order = np.argsort(-p, kind="stable")[:max(1, min(top_k, len(labels)))]
    row = {"image": str(path), "label": labels[order[0]], "probability": float(p[order[0]]),
           "top": [[labels[i], float(p[i])] for i in order]}
    if path.parent.name in labels:
        row.update(true_label=path.parent.name, correct=path.parent.name == row["label"])
    return row


def predict_table(result: dict, limit: int = 100) -> str:
    """The terminal's table: one line per image (the first `limit`), then the accuracy."""
    rows = result["predictions"]
    width = min(60, max([len(Path(r["image"]).name) for r in rows] + [5]))
    lines = [f"{result['build']} in {result['runtime']} {result['runtime_version']}",
             f"{'image':{width}}  {'prediction':24}  {'also':34}  true"]
    for r in rows[:limit]:
        also = ", ".join(f"{label} {p:.2f}" for label, p in r["top"][1:])
        said = f"{r['label']} {r['probability']:.2f}"
        mark = "" if "true_label" not in r else \
            "ok" if r["correct"] else f"WRONG ({r['true_label']})"
        lines.append(f"{Path(r['image']).name[-width:]:{width}}  {said:24}  {also[:34]:34}  "
                     f"{mark}")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more (all of them: --json FILE)")
    for s in result["skipped"]:
        lines.append(f"skipped {s['image']}: {s['reason']}")
    if result["ignored"]:
        lines.append(f"ignored {len(result['ignored'])} file(s) without an image extension")
    acc = result["accuracy"]
    if acc:
        lo, hi = acc["ci95"]
        lines.append(f"top-1 {acc['top1']:.3f} [{lo:.3f}, {hi:.3f}] on the {acc['n']} image(s) "
                     "in folders named after a class")
    return "\n".join(lines)
