"""How many runtime threads the export's parity checks should use: each build of an exported
run predicts the clothing parity set's size (713 images: held-out + validation, at batch 8 as
the export does) in a fresh process, with the runtime's default threads (the export before
this change), 1 thread and 2, on an idle machine and beside one busy core (a spinning process
standing in for the conversion worker, which converts on one thread). Settings interleaved
round by round.

  python benchmarks/parity_threads.py --run runs/bench-clothing-run [--rounds 3]

Writes results/parity_threads.json: seconds per build, setting and condition, each round's."""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, save  # noqa: E402

SETTINGS = ("default", "1", "2")
IMAGES = 713


def child(folder: str, threads: str) -> None:
    import numpy as np
    from edgetl import bundle_runner as br
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    model = br.open_model(manifest, folder, threads=None if threads == "default" else int(threads))
    images = np.load(Path(folder) / "eval.npz")["images"]
    images = np.resize(images, (IMAGES,) + images.shape[1:])
    br.predict(model, images[:16], manifest)                      # warm up
    t0 = time.perf_counter()
    br.predict(model, images, manifest)
    print(time.perf_counter() - t0)


def timed(folder: Path, threads: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), threads],
                         capture_output=True, text=True, check=True, cwd=CODE).stdout
    return round(float(out.strip().splitlines()[-1]), 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="an exported run folder")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    export = Path(args.run).resolve() / "export"
    builds = [a["name"] for a in json.loads((export / "manifest.json").read_text())["artifacts"]
              if (export / a["name"] / "eval.npz").is_file()
              and a["format"] in ("onnx", "tflite", "executorch")]
    seconds = {c: {b: {s: [] for s in SETTINGS} for b in builds} for c in ("idle", "one busy core")}
    for r in range(args.rounds):
        for condition in seconds:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
                if condition != "idle" else None
            try:
                for b in builds:
                    for s in SETTINGS:
                        seconds[condition][b][s].append(timed(export / b, s))
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
        print(f"round {r + 1}: {json.dumps(seconds)}", flush=True)
    medians = {c: {b: {s: statistics.median(v) for s, v in per.items()} for b, per in by.items()}
               for c, by in seconds.items()}
    sums = {c: {s: round(sum(medians[c][b][s] for b in builds), 1) for s in SETTINGS}
            for c in medians}
    print(json.dumps(sums, indent=1))
    save("parity_threads", {"commit": commit(CODE), "run": str(args.run), "images": IMAGES,
                            "rounds": args.rounds, "builds": builds,
                            "sum_of_median_seconds": sums, "median_seconds": medians,
                            "seconds": seconds})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:           # one timing, in a fresh process
        child(*sys.argv[2:4])
    else:
        main()
