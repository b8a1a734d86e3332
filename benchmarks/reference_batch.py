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
from common import exported_run, save  # noqa: E402

from edgetl.quantizing.references import torch_logits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--batches", default="64,16,8,4,2")
    ap.add_argument("--result", default="reference_batch")
    args = ap.parse_args()
    _, model, spec, graph, images = exported_run(args.run)
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
