"""The export's parity pass (`bundle_runner.predict` over the held-out images, in each build's
runtime) with the images fed in chunks of several sizes (predict's `chunk`): seconds per build
and whether any logit changes with the chunk ("all": one call with every image, as predict fed
them before).
Alternating rounds, so a chunk size is not favoured by when it ran. With --busy, one spinning
process takes a core meanwhile, as the export's conversion worker does while parity runs.
  python benchmarks/parity_batch.py --run runs/bench-clothing-run
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exported_run, save  # noqa: E402

from edgetl import bundle_runner  # noqa: E402

SPIN = "import time\nwhile True: pass"


def logits(model, images, manifest, chunk) -> np.ndarray:
    return bundle_runner.predict(model, images, manifest,
                                 chunk=len(images) if chunk == "all" else int(chunk))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--builds", default="onnx-fp32,onnx-int8,tflite-fp32,tflite-int8,"
                                        "executorch-fp32,executorch-int8")
    ap.add_argument("--chunks", default="all,64,16,8,1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", action="store_true")
    ap.add_argument("--result", default="parity_batch")
    args = ap.parse_args()
    layout, _, _, _, images = exported_run(args.run)
    chunks = args.chunks.split(",")
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if args.busy else None
    rows = {}
    try:
        for build in args.builds.split(","):
            folder = layout.export.dir / build
            manifest = json.loads((folder / "manifest.json").read_text())
            model = bundle_runner.open_model(manifest, str(folder))
            logits(model, images[:8], manifest, 8)                # warm-up
            first, seconds = None, {c: [] for c in chunks}
            changed = {}
            for _ in range(args.rounds):
                for c in chunks:
                    t0 = time.perf_counter()
                    out = logits(model, images, manifest, c)
                    seconds[c].append(round(time.perf_counter() - t0, 2))
                    first = out if first is None else first
                    changed[c] = {"max_abs_diff_vs_all": float(np.abs(out - first).max()),
                                  "top1_changed_vs_all": int((out.argmax(-1) !=
                                                              first.argmax(-1)).sum())}
            rows[build] = {c: {"seconds": seconds[c], **changed[c]} for c in chunks}
            print(build, json.dumps(rows[build]))
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()
    save(args.result,
         {"run": args.run, "images": len(images), "rounds": args.rounds, "busy_core": args.busy,
          "threads": "the runtime's default (all usable cores)", "builds": rows})


if __name__ == "__main__":
    main()
