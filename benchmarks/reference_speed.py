"""The export's int8 PyTorch reference as the converted graph computes it (each weight quantized
and dequantized on every call, each activation through two ops and an int8 tensor) and as
`quantizing.references.fast_reference` computes it, on the same images, alternating: seconds
each, and whether the logits are the same to the bit. Also the quantization report's analysis
of the same graph on its 32 calibration images (its probe runs the graph the fast way since
2be3273): seconds, and whether it equals the run's own quant_report.json (written by the export
that made the graph, with the code of then).
  python benchmarks/reference_speed.py --run runs/bench-clothing-run
Writes results/reference_speed.json."""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, exported_run, save  # noqa: E402

from edgetl import bundle_runner  # noqa: E402
from edgetl.quantizing import quant_report  # noqa: E402
from edgetl.quantizing.decision import report_batches  # noqa: E402
from edgetl.quantizing.references import fast_reference  # noqa: E402
from edgetl.quantizing.calibration import replay  # noqa: E402


def logits(graph, images, spec, batch=4) -> np.ndarray:
    """torch_logits' loop (the bundles' input, batches of 4) on `graph` as given."""
    manifest = {"preprocessing": {"mean": spec.mean, "std": spec.std},
                "input": {"layout": "NCHW", "dtype": "float32"}}
    with torch.no_grad():
        return np.concatenate([graph(torch.from_numpy(bundle_runner.to_input(
            images[i:i + batch], manifest))).float().numpy()
            for i in range(0, len(images), batch)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/bench-clothing-run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    layout, _, spec, converted, images = exported_run(args.run)
    logits(converted, images[:8], spec)                                     # warm-up
    seconds, outputs = {"converted graph": [], "fast_reference": []}, {}
    for _ in range(args.rounds):
        for name in seconds:
            t0 = time.time()
            graph = fast_reference(converted) if name == "fast_reference" else converted
            outputs[name] = logits(graph, images, spec)
            seconds[name].append(round(time.time() - t0, 2))
            print(name, seconds[name][-1])
    probe = report_batches(replay(layout.export.calibration), spec)
    t0 = time.time()
    report = quant_report.analyse(converted, probe)
    analyse_seconds = round(time.time() - t0, 2)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    save("reference_speed", {
        "run": args.run, "code": commit(CODE), "images": len(images),
        "img_size": spec.img_size, "batch": 4, "rounds": args.rounds,
        "seconds": seconds, "median_seconds": median,
        "speed_up": round(median["converted graph"] / median["fast_reference"], 2),
        "logits_identical": bool(np.array_equal(outputs["converted graph"],
                                                outputs["fast_reference"])),
        "predictions_changed": int((outputs["converted graph"].argmax(-1) !=
                                    outputs["fast_reference"].argmax(-1)).sum()),
        "quant_report": {"images": report["images"], "seconds": analyse_seconds,
                         "same_as_the_runs_report": same_report(report, layout)}})


def same_report(report: dict, layout) -> bool:
    """The analysis equals what the run's export recorded (its decision aside)."""
    recorded = json.loads(layout.export.quant_report.read_text())
    recorded.pop("decision", None)
    return json.loads(json.dumps(report)) == recorded


if __name__ == "__main__":
    main()
