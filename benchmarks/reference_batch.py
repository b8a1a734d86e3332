"""The export's PyTorch references (fp32 model and int8 graph) at several batch sizes and memory
layouts: seconds for the run's held-out images, as `quantizing.references.torch_logits`
computes them, and whether the predictions (and how far the logits) change with either.
  python benchmarks/reference_batch.py --run runs/bench-clothing-run
  python benchmarks/reference_batch.py --run RUN --batches 2 --layouts nchw,channels_last \
      --rounds 3 --report --result reference_layout
"""
import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exported_run, save  # noqa: E402

from edgetl.quantizing.references import torch_logits  # noqa: E402

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--batches", default="64,16,8,4,2")
    ap.add_argument("--layouts", default="channels_last", help="nchw and/or channels_last")
    ap.add_argument("--rounds", type=int, default=1, help="every setting this many times, "
                    "alternating")
    ap.add_argument("--report", action="store_true", help="also time the quantization report "
                    "in each layout")
    ap.add_argument("--result", default="reference_batch")
    args = ap.parse_args()
    _, model, spec, graph, images = exported_run(args.run)
    torch_logits(graph, images[:8], spec)                        # warm-up
    rows, first = [], {}
    for r in range(args.rounds):
        for name, net in (("fp32", model.eval()), ("int8", graph)):
            for layout in args.layouts.split(","):
                for batch in [int(b) for b in args.batches.split(",")]:
                    t0 = time.time()
                    logits = torch_logits(net, images, spec, batch=batch,
                                          layout=LAYOUTS[layout])
                    seconds = time.time() - t0
                    first.setdefault(name, logits)
                    rows.append({"graph": name, "layout": layout, "batch": batch, "round": r,
                                 "seconds": round(seconds, 2),
                                 "predictions_changed_vs_first": int(
                                     (logits.argmax(-1) != first[name].argmax(-1)).sum()),
                                 "max_abs_logit_diff_vs_first": float(
                                     np.abs(logits - first[name]).max())})
                    print(rows[-1])
    result = {"run": args.run, "images": len(images), "img_size": spec.img_size,
              "threads": torch.get_num_threads(), "rows": rows}
    if args.report:
        result["quant_report"] = report_rows(args.run, graph, spec, args.layouts.split(","),
                                             args.rounds)
    save(args.result, result)


def report_rows(run, graph, spec, layouts, rounds) -> list:
    """The quantization report over the run's calibration images with its probe in each layout
    (channels_last: a probe class of this script's that runs a channels-last copy): seconds,
    and its sensitivity ranking and output SQNR."""
    from edgetl.core.layout import RunLayout
    from edgetl.quantizing import calibration, decision, quant_report
    batches = decision.report_batches(calibration.replay(RunLayout(run).export.calibration), spec)
    probes = {"nchw": quant_report._Probe, "channels_last": _laid_out_probe(quant_report._Probe)}
    rows = []
    for r in range(rounds):
        for layout in layouts:
            quant_report._Probe = probes[layout]
            t0 = time.time()
            report = quant_report.analyse(graph, batches)
            rows.append({"layout": layout, "round": r, "seconds": round(time.time() - t0, 2),
                         "output_sqnr_db": report["output"]["sqnr_db"],
                         "ranking": [s["block"] for s in report["sensitivity"]]})
            print(rows[-1])
    quant_report._Probe = probes["nchw"]
    return rows


def _laid_out_probe(probe):
    class LaidOut(probe):
        def __init__(self, gm, bypass=()):
            super().__init__(copy.deepcopy(gm).to(memory_format=torch.channels_last), bypass)

        def run(self, x):
            return super().run(x.contiguous(memory_format=torch.channels_last))
    return LaidOut


if __name__ == "__main__":
    main()
