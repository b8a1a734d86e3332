"""The export's PyTorch references (fp32 model and int8 graph) at several batch sizes: seconds
for the run's held-out images, as `quantizing.references.torch_logits` computes them, and
whether the predictions change with the batch.
  python benchmarks/reference_batch.py --run runs/bench-clothing-run
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from edgetl.core.layout import RunLayout  # noqa: E402
from edgetl.exporting.bundle import eval_images  # noqa: E402
from edgetl.quantizing.graph import load_graph  # noqa: E402
from edgetl.quantizing.references import torch_logits  # noqa: E402
from edgetl.models.checkpoint import load_checkpoint  # noqa: E402
from edgetl.training.data import load_split  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--batches", default="64,16,8,4,2")
    ap.add_argument("--result", default="reference_batch")
    args = ap.parse_args()
    layout = RunLayout(args.run)
    model, spec, _ = load_checkpoint(layout.train.checkpoint)
    graph = load_graph(layout.export.int8_graph, model, spec)
    splits = load_split(layout.train.split)
    images, _ = eval_images(splits.test or splits.val, spec)
    torch_logits(graph, images[:8], spec)                        # warm-up
    rows, first = [], {}
    for name, net in (("fp32", model.eval()), ("int8", graph)):
        for batch in [int(b) for b in args.batches.split(",")]:
            t0 = time.time()
            pred = torch_logits(net, images, spec, batch=batch).argmax(-1)
            seconds = time.time() - t0
            first.setdefault(name, pred)
            rows.append({"graph": name, "batch": batch, "seconds": round(seconds, 2),
                         "predictions_changed_vs_first": int((pred != first[name]).sum())})
            print(rows[-1])
    save(args.result, {"run": args.run, "images": len(images), "img_size": spec.img_size,
                       "rows": rows})


if __name__ == "__main__":
    main()
