"""RUN/train/ -> RUN/export/: quantize once (QAT or PTQ), build every requested format from the
same scales, check each build in its own runtime against its PyTorch reference, write bundles.

The export is built in `.export.tmpPID` and moved into place at the end (the previous export is
renamed aside first, and removed only once the new one is in place), so an interrupt leaves
either the old export or the new one, never half of either."""
import os
import shutil
import time

import numpy as np
import torch

from .. import bundle_runner
from ..core import VERSION, console, documents, intervals
from .. import page
from ..core.errors import DataError, ParityError, RunError
from ..core.files import read_json, sha256, write_json
from ..core.layout import RunLayout, RunLock, clean_stale_work, is_marked, mark
from ..core.options import make
from ..models import load_checkpoint
from ..training.config import TrainConfig, saved_settings
from ..training.data import load_split
from ..training.fingerprint import changed_files
from ..training.threads import set_threads
from ..quantizing import calibration, decision, quant_report
from ..quantizing.graph import load_graph
from ..quantizing.references import top1, torch_logits
from . import parity
from .bundle import HeldOut, eval_images, write_bundle
from . import formats
from .conversions import Conversions
from .formats import FORMATS
from .options import ExportOptions
from .records import BuildResult


def export(run, overwrite=False, **options) -> dict:
    """Write RUN/export/; returns its manifest. `options`: see ExportOptions. Raises
    ParityError listing the builds whose parity fell below the threshold (the export is
    written all the same)."""
    start = time.time()
    layout = RunLayout(run)
    opts = make(ExportOptions, options, "export options").validate()
    if not layout.train.checkpoint.is_file():
        raise RunError(f"{layout.train.checkpoint} not found: run 'edgetl train DATA --out "
                       f"{run}' first")
    with RunLock(run):
        clean_stale_work(layout.root)
        final = layout.export.dir
        if final.exists() and not overwrite:
            raise RunError(f"{final} already exists: pass --overwrite to replace it")
        if final.exists() and not is_marked(final):
            raise RunError(f"{final} was not written by edgetl: not replacing it; choose "
                           "another run folder or remove it yourself")
        work = layout.export_work()
        shutil.rmtree(work.dir, ignore_errors=True)
        work.dir.mkdir(parents=True)
        try:
            with console.stage_output(work.log):
                manifest = _export_into(work, layout, opts, start)
            mark(work.dir, "export")
            _move_into_place(work.dir, final, layout.export_aside())
        finally:
            shutil.rmtree(work.dir, ignore_errors=True)
        page.refresh_or_warn(layout.root)
    failed = manifest["failed"]
    if failed:
        raise ParityError("; ".join(failed), manifest)
    return manifest


def _move_into_place(work, final, aside) -> None:
    """work -> final; an existing final is renamed aside first and removed last."""
    if final.exists():
        os.replace(final, aside)
    os.replace(work, final)
    shutil.rmtree(aside, ignore_errors=True)


def _export_into(work, layout, opts, start) -> dict:
    log = console.stage_logger(work.log)
    set_threads()
    ckpt = layout.train.checkpoint
    model, spec, _ = load_checkpoint(ckpt)
    cfg = TrainConfig(**saved_settings(layout.train.config))       # as trained; not re-checked
    splits = load_split(layout.train.split)
    changed = changed_files(read_json(layout.train.split)["fingerprint"], splits.root)
    if changed:
        raise RunError(f"{len(changed)} image(s) the run was trained on changed or vanished under "
                       f"{splits.root} (e.g. {changed[0]}): restore them, or train again "
                       "(--overwrite)")
    _check_int8_options(opts, model, splits)      # before minutes of reference work
    held_out = splits.test or splits.val
    images, labels = eval_images(held_out, spec)
    checkpoint_hash = sha256(ckpt)
    base_meta = {"edgetl_version": VERSION, "source_checkpoint_sha256": checkpoint_hash,
                 "spec": spec.to_dict(), "macs": count_macs(model, spec.img_size)}
    ref = {"fp32": torch_logits(model, images, spec)}
    builds, int8 = opts.builds(), None
    # the validation split: where the int8 decision is made and, beside a test split, more
    # images for agreement (it needs no labels; never the training images calibration and QAT
    # saw). Without a test split it is the held-out split itself.
    val_images, val_labels = eval_images(splits.val, spec) if splits.test else (images, labels)
    val_ref = {"fp32": torch_logits(model, val_images, spec)} if splits.test else ref
    if any(b.precision == "int8" for b in builds):
        int8 = decision.quantize(model, spec, cfg, splits, work, log, opts,
                                 (val_images, val_labels, val_ref["fp32"]))
        val_ref["int8"] = int8.val_logits           # the decision's own, computed once
        if splits.test:
            ref["int8"] = torch_logits(int8.converted, images, spec)
    ref["fp16"], val_ref["fp16"] = ref["fp32"], val_ref["fp32"]
    agreement_set = (val_images, val_ref) if splits.test else None
    qinfo = int8 and int8.info
    budget_miss = decision.misses_budget(int8) if int8 else ""
    metas = {b: {**base_meta, "format": b.format, "precision": b.precision, "variant": b.variant,
                 "quantization": qinfo if b.precision == "int8" else None} for b in builds}
    jobs = {}                               # each graph once, from its first build's metadata
    for b in builds:
        jobs.setdefault(formats.graph_key(b), (formats.convert, _source(b), (b, spec, metas[b])))
    sources = {"fp32": model, "int8": int8 and int8.converted}
    on_disk = (saved_sources, (str(ckpt), str(work.int8_graph) if int8 else None))
    checked_on = (images, labels, ref, [p for p, _ in held_out], agreement_set)
    artifacts, pending = {}, list(builds)
    with Conversions(jobs, sources, on_disk) as graphs:
        while pending:
            console.check_stop()
            build = pending.pop(graphs.next_of([formats.graph_key(b) for b in pending]))
            t0 = time.time()
            data = formats.finish(build, graphs.get(formats.graph_key(build)), metas[build])
            result = _one_build(build, data, spec, metas[build], checked_on, opts.bundle_size,
                                work, max(1, torch.get_num_threads() - graphs.cores_converting()))
            result.seconds = round(time.time() - t0, 1)
            artifacts[build] = _scored(result, build, labels, ref["fp32"])
            log.info("%-24s top-1 %s  agreement %s  (%.0f s)", build.name,
                     _fmt(result.test_top1), _fmt(result.parity.get("top1_agreement")),
                     result.seconds)
    artifacts = [artifacts[b] for b in builds]          # the export's order, however made
    manifest = {"run": str(layout.root), "source_checkpoint_sha256": checkpoint_hash,
                "settings": opts.record(), "eval_split": "test" if splits.test else "val",
                "n": len(labels), "reference_top1": {k: top1(v, labels)
                                                     for k, v in ref.items()},
                "reference_top1_ci95": {k: intervals.top1(int((v.argmax(-1) == labels).sum()),
                                                          len(labels))["ci95"]
                                        for k, v in ref.items()},
                "reference_predictions": {k: ref[k].argmax(-1).tolist() for k in ("fp32", "int8")
                                          if k in ref},
                "quantization": qinfo, "artifacts": artifacts,
                "failed": _failures(artifacts) + ([budget_miss] if budget_miss else []),
                "wall_seconds": round(time.time() - start, 1)}
    documents.write(work.manifest, "export", manifest)
    return manifest


def _source(build) -> str:
    """Which model a build is made from and checked against: the int8 graph or the float one."""
    return "int8" if build.precision == "int8" else "fp32"


def saved_sources(checkpoint, int8_graph) -> dict:
    """The sources of the builds rebuilt from the export's files (the conversion worker's)."""
    model, spec, _ = load_checkpoint(checkpoint)
    return {"fp32": model, "int8": int8_graph and load_graph(int8_graph, model, spec)}


def _scored(result, build, labels, fp32_logits) -> dict:
    """The build's record, with its held-out top-1 interval and (int8) its pairing with fp32."""
    if result.held_out_predictions is not None:
        correct = np.array(result.held_out_predictions) == labels
        result.top1 = intervals.top1(int(correct.sum()), len(labels))
        if build.precision == "int8":
            result.paired = intervals.paired(fp32_logits.argmax(-1) == labels, correct)
            result.drop_points = round(result.paired["drop_points"], 2)
    return result.to_json()


def _check_int8_options(opts, model, splits) -> None:
    """Options that need the model or the split: one line, before any work."""
    decision.check_blocks(model, opts.float_blocks)
    if opts.calib_size and opts.calib_size > len(splits.train):
        raise DataError(f"--calib-size {opts.calib_size}: the training split holds only "
                          f"{len(splits.train)} images; use at most that many")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _failures(artifacts) -> list:
    return [f"{a['name']}: agreement {a['parity']['decided_agreement']:.4f} "
            f"({a['parity'].get('ties', 0)} near-ties left out) < {a['parity']['threshold']}"
            for a in artifacts if a["parity"].get("passed") is False]


def count_macs(model, img_size: int) -> int:
    """Multiply-accumulates of one image through the float model (the roofline's numerator)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, img_size, img_size))
    return int(counter.get_total_flops() // 2)


def _one_build(build, data, spec, meta, held_out, bundle_size, work, threads):
    """Bundle one build's file (`data`) and check it on `threads` runtime threads; `held_out`:
    (images, labels, reference logits by precision, files, agreement set: more images and
    their reference logits by precision, on which parity is checked too, or None)."""
    images, labels, ref, paths, _ = held_out
    reference = ref[_source(build)]
    folder = work.bundle(build.name)
    bundle = write_bundle(folder, build, data, spec, meta, HeldOut(
        images, labels, reference.argmax(-1), ref["fp32"], paths), bundle_size)
    result = BuildResult(build.name, build.format, build.precision, build.variant,
                         f"export/{build.name}/{bundle['model_file']}", len(data),
                         bundle["sha256"][bundle["model_file"]],
                         delegation=bundle.get("executorch"))
    fmt = FORMATS[build.format]
    if not fmt.runs_here():
        return _stand_in_checks(result, fmt, bundle, folder, held_out, threads) \
            if fmt.stand_ins else _unchecked(result)
    model = _open(bundle, folder, build.name, threads)
    logits, result.parity = _parity(model, bundle, held_out, build.precision)
    held_out_top1 = top1(logits[:len(labels)], labels)
    on_bundle_set = bundle_runner.evaluate(model, bundle, str(folder))
    bundle.update(eval_top1=on_bundle_set["top1"], eval_n=on_bundle_set["n"],
                  held_out_top1=held_out_top1)
    documents.write(folder / "manifest.json", "bundle", bundle)
    result.test_top1, result.runtime, result.runtime_version = held_out_top1, model.runtime, \
        model.version
    result.held_out_predictions = logits[:len(labels)].argmax(-1).tolist()
    return result


def _open(bundle, folder, name, threads):
    try:
        return bundle_runner.open_model(bundle, str(folder), threads=threads)
    except bundle_runner.BundleError as e:
        raise RunError(f"{name}: cannot be run here: {e}") from None


def _parity(model, bundle, held_out, precision) -> tuple:
    """(logits on the held-out images, then the agreement set's; the parity record)."""
    images, labels, ref, _, agreement_set = held_out
    reference = ref["int8" if precision == "int8" else "fp32"]
    logits = bundle_runner.predict(model, images, bundle)
    if agreement_set is not None:
        more, more_ref = agreement_set
        logits = np.concatenate([logits, bundle_runner.predict(model, more, bundle)])
        reference = np.concatenate([reference, more_ref[precision]])
    return logits, {**parity.check(logits, reference, precision), "images": len(logits),
                    "on": "held-out + validation" if agreement_set is not None
                    else "held-out"}


def _unchecked(result):
    result.parity = {"reference": f"torch-{result.precision}", "note": "not checked here "
                     "(no runtime for it on this machine): checked on the device"}
    return result


def _stand_in_checks(result, fmt, bundle, folder, held_out, threads):
    """A format whose runtime is not here (TensorRT): each file it is built from, checked in
    onnxruntime with the same gates; ready only if every one passed."""
    labels, files = held_out[1], {}
    for name, manifest in fmt.stand_ins(bundle):
        model = _open(manifest, folder, f"{result.name} ({name})", threads)
        logits, files[name] = _parity(model, manifest, held_out, result.precision)
        files[name]["held_out_top1"] = top1(logits[:len(labels)], labels)
        if name == bundle["model_file"]:
            result.test_top1 = files[name]["held_out_top1"]
            result.held_out_predictions = logits[:len(labels)].argmax(-1).tolist()
            result.runtime, result.runtime_version = "onnxruntime (stand-in)", model.version
    first = files[bundle["model_file"]]
    result.parity = {**first, "passed": all(f["passed"] for f in files.values()),
                     "decided_agreement": min(f["decided_agreement"] for f in files.values()),
                     "files": files, "note": f"{fmt.name} is not here: each ONNX file it is "
                     "built from checked in onnxruntime instead"}
    result.tensorrt_ready = result.parity["passed"]
    return result


def report_only(run) -> dict:
    """Rewrite RUN/export/quant_report.json (+ .png) from the export's own int8 graph and
    calibration set; nothing else changes."""
    layout = RunLayout(run)
    files = layout.export
    if not files.int8_graph.is_file():
        raise RunError(f"{files.int8_graph} not found: export int8 builds first ('edgetl export "
                       f"{run} --precision int8')")
    with RunLock(run):
        model, spec, _ = load_checkpoint(layout.train.checkpoint)
        graph = load_graph(files.int8_graph, model, spec)
        probe = decision.report_batches(calibration.replay(files.calibration), spec)
        report = quant_report.analyse(graph, probe)
        old = read_json(files.quant_report) if files.quant_report.is_file() else {}
        report["decision"] = old.get("decision")
        write_json(files.quant_report, report)
        quant_report.plot(report, files.quant_plot)
    return report

