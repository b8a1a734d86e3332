"""The int8 decision, made once on the PT2E graph and carried into every format: quantize (QAT
or PTQ), measure the top-1 drop against fp32 on the validation split, write the quantization
report, and when the drop misses the budget mitigate in a fixed, logged order, stopping at the
first step that meets it and shipping the best step measured:

  1. float blocks: the block whose float run gains the output most (greedy, measured on the
     calibration images) runs in float; then the next, up to 3. The graph keeps every other
     scale: no recalibration, carried as it is into ONNX, TFLite and TensorRT;
  2. more QAT: one more epoch of distillation on the same graph, the float blocks kept.

A miss is a drop over the budget that the paired evidence calls real: int8 against fp32 on the
same validation images (how many only fp32 gets right, how many only int8), judged by the exact
one-sided McNemar test at ALPHA. A drop over the budget that the split cannot tell from noise
(one or two images) is recorded as such and not mitigated: float blocks cost speed on every
device for a difference the data does not show.

Choose on validation, report on test: every decision here sees only the validation split.
"""
import time
from dataclasses import dataclass, field

from ..core.errors import DataError
from ..core.intervals import paired
from ..core.files import write_json
from ..training.images import loader
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
ALPHA = 0.05                # the exact test's level for "int8 is really worse than fp32"
MET, NOISE, MISSED = "met", "within noise", "missed"


@dataclass
class Int8:
    """The decision record: the int8 graph an export ships, what it took to get there (`info`,
    written into every int8 manifest), its quantization report and the measured steps."""
    converted: object
    info: dict
    report: dict
    steps: list = field(default_factory=list)
    val_logits: object = None      # the shipped graph's logits on the validation images

    @property
    def float_blocks(self) -> list:
        return list(self.info["float_blocks"])

    @property
    def drop_points(self) -> float:
        """Validation top-1 points the shipped graph loses against fp32."""
        return self.info["val_drop_points"]

    @property
    def budget_met(self) -> bool:
        return self.info["budget"] != MISSED


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
    row, logits = _measure("base", attempt, graph, val, log, opts.max_int8_drop)
    steps, kept, val_logits = [row], [attempt.snapshot(graph)], [logits]
    report = quant_report.analyse(graph, attempt.probe)
    for line in quant_report.summary_lines(report):
        log.info("%s", line)
    for step, run in attempt.ladder(report):
        if not opts.mitigate or steps[-1]["budget"] != MISSED:
            break
        graph = run()
        row, logits = _measure(step, attempt, graph, val, log, opts.max_int8_drop)
        steps.append(row)
        kept.append(attempt.snapshot(graph))
        val_logits.append(logits)
    best = min(range(len(steps)), key=lambda i: (steps[i]["val_drop_points"], i))
    graph = attempt.restore(kept[best])
    if best != len(steps) - 1:
        log.info("int8 ships step %s (drop %.2f points), the best of %d measured",
                 steps[best]["step"], steps[best]["val_drop_points"], len(steps))
    if len(steps) > 1:
        report = quant_report.analyse(graph, attempt.probe)
    shipped = steps[best]
    report["decision"] = {"steps": steps, "shipped_step": shipped["step"],
                          "float_blocks": list(attempt.float_blocks),
                          "max_int8_drop": opts.max_int8_drop, "rule": RULE}
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
            "report": "quant_report.json", "val_fp32_top1": shipped["val_fp32_top1"],
            "val_int8_top1": shipped["val_int8_top1"], "val_n": shipped["val_n"],
            "val_drop_points": shipped["val_drop_points"], "paired": shipped["paired"],
            "budget": shipped["budget"], "shipped_step": shipped["step"],
            "mitigation": steps[1:], "max_int8_drop": opts.max_int8_drop, "rule": RULE,
            "seconds": round(time.time() - t0, 1)}
    save_graph(work.int8_graph, attempt.converted, info)
    return Int8(graph, info, report, steps, val_logits[best])


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


RULE = (f"mitigate while the validation drop exceeds max_int8_drop and the exact one-sided "
        f"McNemar test on the paired images says int8 is worse (p < {ALPHA}); ship the step "
        "with the smallest measured drop")


def judge(evidence: dict, budget) -> str:
    """MET, NOISE (over the budget, but not shown real by the paired test) or MISSED."""
    if budget is None or evidence["drop_points"] <= budget + 1e-9:
        return MET
    return MISSED if evidence["p_value"] < ALPHA else NOISE


def evidence_text(info: dict) -> str:
    """'lost 9, gained 2 of 379 images (exact test p=0.033; this split resolves >= 1.3
    points)'."""
    p = info["paired"]
    return (f"lost {p['lost']}, gained {p['gained']} of {p['n']} validation images (exact "
            f"McNemar p={p['p_value']:.3g}; at these counts the split resolves a drop of "
            f"{p['resolvable_points']:.2f} points or more)")


def misses_budget(int8: Int8) -> str:
    """'' when the int8 graph meets the budget, else one line saying by how much and where."""
    info = int8.info
    if int8.budget_met:
        return ""
    layers = ", ".join(int8.report["most_sensitive"][:3]) or "none stands out"
    tried = ", ".join(s["step"] for s in info["mitigation"]) or "nothing (--no-mitigate)"
    return (f"int8 loses {info['val_drop_points']:.2f} points of top-1 on the validation split, "
            f"{evidence_text(info)} (budget {info['max_int8_drop']:g}; tried {tried}; shipped "
            f"{info['shipped_step']}; float blocks "
            f"{', '.join(info['float_blocks']) or 'none'}; most sensitive: {layers}): raise "
            "--max-int8-drop, or see quant_report.json")


class _Attempt:
    """Builds the int8 graph for the base settings and each mitigation step."""

    def __init__(self, model, spec, cfg, splits, calib, opts, log):
        self.model, self.spec, self.cfg, self.splits, self.calib = model, spec, cfg, splits, \
            calib
        self.opts, self.log = opts, log
        self.method, self.qat_epochs, self.float_blocks = opts.quant, 0.0, []
        self.prepared, self.converted, self.teacher = None, None, None
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
        if self.teacher is None:                  # one for the base and any more QAT
            self.teacher = qat.float_teacher(self.model, self.spec, epochs, self.splits.train)
        qat.train(self.prepared, self.spec, self.cfg, self.splits.train, epochs, self.teacher,
                  seed=seed, log=self.log)
        self.qat_epochs += epochs

    def snapshot(self, graph) -> tuple:
        """What a step measured, to ship it again if it stays the best."""
        return (graph, self.converted, list(self.float_blocks), self.method, self.qat_epochs)

    def restore(self, kept: tuple):
        graph, self.converted, blocks, self.method, self.qat_epochs = kept
        self.float_blocks = list(blocks)
        return graph

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


def _measure(step: str, attempt: _Attempt, graph, val, log, budget) -> tuple:
    """(the step's row, the graph's logits on the validation images)."""
    images, labels, fp32_logits = val
    int8_logits = torch_logits(graph, images, attempt.spec)
    int8_pred = int8_logits.argmax(-1)
    fp32_pred = fp32_logits.argmax(-1)
    evidence = paired(fp32_pred == labels, int8_pred == labels)
    row = {"step": step, "method": attempt.method, "qat_epochs": attempt.qat_epochs,
           "float_blocks": list(attempt.float_blocks), "val_n": len(labels),
           "val_fp32_top1": top1(fp32_logits, labels),
           "val_int8_top1": float((int8_pred == labels).mean()),
           "val_drop_points": round(evidence["drop_points"], 2), "paired": evidence,
           "flips": int((int8_pred != fp32_pred).sum()), "budget": judge(evidence, budget)}
    log.info("int8 %-16s val top-1 %.4f vs fp32 %.4f: drop %.2f points (lost %d, gained %d of "
             "%d; exact p=%.3g): %s", step, row["val_int8_top1"], row["val_fp32_top1"],
             row["val_drop_points"], evidence["lost"], evidence["gained"], len(labels),
             evidence["p_value"], row["budget"])
    return row, int8_logits


def report_batches(calib, spec, size=REPORT_IMAGES, batch=8) -> list:
    """Clean, centre-cropped calibration images for the report, in small batches."""
    out = []
    for x, _, _ in loader(calib[:size], eval_transform(spec), spec.resize_size, batch):
        out.append(x)
    return out
