"""The int8 decision, made once on the PT2E graph and carried into every format: quantize (QAT
or PTQ), measure the top-1 drop against fp32 on the validation split, write the quantization
report, and when the drop misses the budget mitigate in a fixed, logged order, stopping at the
first step that meets it:

  1. float blocks: the block whose float run gains the output most (greedy, measured on the
     calibration images) runs in float; then the next, up to 3. The graph keeps every other
     scale: no recalibration, carried as it is into ONNX, TFLite and TensorRT;
  2. more QAT: one more epoch of distillation on the same graph, the float blocks kept.

Choose on validation, report on test: every decision here sees only the validation split.
"""
import time
from dataclasses import dataclass, field

from ..core.errors import DataError
from ..core.files import write_json
from ..training.data import loader
from ..training.transforms import eval_transform
from . import calibration, qat, quant_report
from .graph import save_graph
from .layers import float_region_quants, without_quants
from .quantize import quant_params
from .ranker import best_float_block
from .references import top1, torch_logits

DEFAULT_CALIB_SIZE = 256
REPORT_IMAGES = 32
MORE_QAT_EPOCHS = 1.0
MAX_FLOAT_BLOCKS = 3


@dataclass
class Int8:
    """The decision record: the int8 graph an export ships, what it took to get there (`info`,
    written into every int8 manifest), its quantization report and the measured steps."""
    converted: object
    info: dict
    report: dict
    steps: list = field(default_factory=list)

    @property
    def float_blocks(self) -> list:
        return list(self.info["float_blocks"])

    @property
    def drop_points(self) -> float:
        """Validation top-1 points the shipped graph loses against fp32."""
        return self.info["val_drop_points"]

    @property
    def budget_met(self) -> bool:
        return _within(self.drop_points, self.info["max_int8_drop"])


def quantize(model, spec, cfg, splits, work, log, opts, val) -> Int8:
    """`val`: (uint8 crops, labels, fp32 logits) of the validation split."""
    t0 = time.time()
    check_blocks(model, opts.float_blocks)
    chosen = calibration_set(opts, splits, len(spec.labels), cfg.seed)
    calibration.write_manifest(work.calibration, chosen, cfg.seed,
                               "minmax" if opts.quant == "qat" else opts.observer)
    attempt = _Attempt(model, spec, cfg, splits, chosen, opts, log)
    graph = attempt.base()
    if opts.float_blocks:                           # asked for: float from the start
        attempt.float_blocks = list(opts.float_blocks)
        graph = attempt.shipped()
    steps = [_measure("base", attempt, graph, val, log)]
    report = quant_report.analyse(graph, attempt.probe)
    for line in quant_report.summary_lines(report):
        log.info("%s", line)
    for step, run in attempt.ladder(report):
        if not opts.mitigate or _within(steps[-1]["val_drop_points"], opts.max_int8_drop):
            break
        graph = run()
        steps.append(_measure(step, attempt, graph, val, log))
    if len(steps) > 1:
        report = quant_report.analyse(graph, attempt.probe)
    report["decision"] = {"steps": steps, "float_blocks": list(attempt.float_blocks),
                          "max_int8_drop": opts.max_int8_drop}
    write_json(work.quant_report, report)
    quant_report.plot(report, work.quant_plot)
    params = quant_params(graph, opts.weight_range)
    write_json(work.quant_params, params)
    info = {"method": attempt.method, "qat_epochs": attempt.qat_epochs,
            "qat_loss": "distillation from the fp32 model" if attempt.method == "qat" else None,
            "observer": opts.observer if attempt.method == "ptq" else "minmax",
            "weight_range": opts.weight_range, "calibration": "calibration.json",
            "calib_size": len(chosen), "float_blocks": list(attempt.float_blocks),
            "scheme": params["scheme"], "params": "quant_params.json",
            "report": "quant_report.json", "val_fp32_top1": steps[-1]["val_fp32_top1"],
            "val_int8_top1": steps[-1]["val_int8_top1"],
            "val_drop_points": steps[-1]["val_drop_points"], "mitigation": steps[1:],
            "max_int8_drop": opts.max_int8_drop, "seconds": round(time.time() - t0, 1)}
    save_graph(work.int8_graph, attempt.converted, info)
    return Int8(graph, info, report, steps)


def calibration_set(opts, splits, n_classes: int, seed: int) -> list:
    """The images that set the int8 scales: a recorded set (--calib-manifest), replayed and
    checked unchanged, or a class-balanced, seeded choice from the training split."""
    if not opts.calib_manifest:
        size = opts.calib_size or min(DEFAULT_CALIB_SIZE, len(splits.train))
        return calibration.select(splits.train, size, n_classes, seed)
    chosen = calibration.replay(opts.calib_manifest)
    train = {p for p, _ in splits.train}
    outside = [p for p, _ in chosen if p not in train]
    if outside:
        raise DataError(f"{opts.calib_manifest}: {outside[0]} is not in this run's training "
                        f"split ({len(outside)} such image(s)): calibrate on training images "
                        "only (validation decides the budget, test reports)")
    return chosen


def _within(drop: float, budget) -> bool:
    return budget is None or drop <= budget + 1e-9


def misses_budget(int8: Int8) -> str:
    """'' when the int8 graph meets the budget, else one line saying by how much and where."""
    info = int8.info
    if int8.budget_met:
        return ""
    layers = ", ".join(int8.report["most_sensitive"][:3]) or "none stands out"
    tried = ", ".join(s["step"] for s in info["mitigation"]) or "nothing (--no-mitigate)"
    return (f"int8 loses {info['val_drop_points']:.2f} points of top-1 on the validation split "
            f"(budget {info['max_int8_drop']:g}; tried {tried}; float blocks "
            f"{', '.join(info['float_blocks']) or 'none'}; most sensitive: {layers}): raise "
            "--max-int8-drop, or see quant_report.json")


class _Attempt:
    """Builds the int8 graph for the base settings and each mitigation step."""

    def __init__(self, model, spec, cfg, splits, calib, opts, log):
        self.model, self.spec, self.cfg, self.splits, self.calib = model, spec, cfg, splits, \
            calib
        self.opts, self.log = opts, log
        self.method, self.qat_epochs, self.float_blocks = opts.quant, 0.0, []
        self.prepared, self.converted = None, None
        self.probe = report_batches(calib, spec)

    def base(self):
        if self.method == "ptq":
            self.prepared = qat.observed(self.model, self.spec, self.calib, self.opts.observer,
                                         self.opts.weight_range, log=self.log)
        else:
            self.prepared = qat.calibrated(self.model, self.spec, self.calib,
                                           self.opts.weight_range)
            self._train(self.opts.qat_epochs)
        self.converted = qat.converted(self.prepared)
        return self.converted

    def _train(self, epochs: float, seed: int = 0):
        qat.train(self.prepared, self.spec, self.cfg, self.splits.train, epochs, self.model,
                  seed=seed, log=self.log)
        self.qat_epochs += epochs

    def shipped(self):
        """The converted graph with the float blocks chosen so far."""
        layers = quant_report.tensor_layers(self.converted)
        return without_quants(self.converted, float_region_quants(
            self.converted.graph, layers, self.float_blocks))

    def ladder(self, report: dict):
        """(name, build) of each mitigation step, in order."""
        candidates = [s["block"] for s in report["sensitivity"]]
        reference = quant_report.float_outputs(self.converted, self.probe)
        for _ in range(MAX_FLOAT_BLOCKS):
            def add_block():
                block, sqnr = best_float_block(self.converted, candidates, self.float_blocks,
                                               self.probe, reference)
                self.float_blocks.append(block)
                self.log.info("float blocks %s: output SQNR %.1f dB on the calibration images",
                              self.float_blocks, sqnr)
                return self.shipped()
            yield f"float-block-{len(self.float_blocks) + 1}", add_block

        def more_qat():
            if self.method == "ptq":                 # PTQ: the QAT graph starts here
                self.method = "qat"
                self.prepared = qat.calibrated(self.model, self.spec, self.calib,
                                               self.opts.weight_range)
            self._train(MORE_QAT_EPOCHS, seed=1000)
            self.converted = qat.converted(self.prepared)
            return self.shipped()
        yield "more-qat", more_qat


def check_blocks(model, names) -> None:
    """--float-blocks names blocks of this model (the report's names), checked before work."""
    from ..core.errors import ConfigError
    known = [f"features.{i}" for i in range(len(model.features))] + ["classifier"]
    bad = [b for b in names if b not in known]
    if bad:
        raise ConfigError(f"--float-blocks {bad[0]}: not a block of this model; blocks: "
                          f"{known[0]} ... {known[-2]}, {known[-1]}")


def _measure(step: str, attempt: _Attempt, graph, val, log) -> dict:
    images, labels, fp32_logits = val
    int8_top1 = top1(torch_logits(graph, images, attempt.spec), labels)
    fp32_top1 = top1(fp32_logits, labels)
    row = {"step": step, "method": attempt.method, "qat_epochs": attempt.qat_epochs,
           "float_blocks": list(attempt.float_blocks), "val_fp32_top1": fp32_top1,
           "val_int8_top1": int8_top1, "val_drop_points": round(100 * (fp32_top1 - int8_top1), 2)}
    log.info("int8 %-16s val top-1 %.4f vs fp32 %.4f: drop %.2f points", step, int8_top1,
             fp32_top1, row["val_drop_points"])
    return row


def report_batches(calib, spec, size=REPORT_IMAGES, batch=8) -> list:
    """Clean, centre-cropped calibration images for the report, in small batches."""
    out = []
    for x, _, _ in loader(calib[:size], eval_transform(spec), spec.resize_size, batch):
        out.append(x)
    return out
