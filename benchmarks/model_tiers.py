"""Accuracy against int8 latency for EfficientNet-Lite0/1/2, each fine-tuned with the default
recipe at its native size (224/240/260; the digits at the demo's 64 px), and a Lite0 distilled
from the Lite2 run (`--teacher`, default weight and temperature), all exported to TFLite fp32
and int8 (QAT with the default budget). Validation and test top-1 are recorded as the runs
give them (nothing is chosen here); the int8 latencies come from one interleaved pass over the
three int8 bundles in fresh runner processes, so they are compared side by side on the same
machine state: 9 rounds, p50 per round, geometric mean with its 95% t interval.

Writes results/model_tiers.json and results/model_tiers.png (held-out top-1 with its Wilson
interval against LiteRT int8 p50)."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, RESULTS, commit, data_path, save, timed_cli  # noqa: E402

# tier -> (model, native size, the tier it is distilled from)
TIERS = {"efficientnet_lite0": ("efficientnet_lite0", 224, None),
         "efficientnet_lite1": ("efficientnet_lite1", 240, None),
         "efficientnet_lite2": ("efficientnet_lite2", 260, None)}
# With --distilled: its teacher scores every cached view in eager PyTorch, about 15 views/s for
# Lite2 on 2 cores (10 minutes for clothing-small's 9,204 views), so it is opt-in.
DISTILLED = {"efficientnet_lite0-distilled": ("efficientnet_lite0", 224, "efficientnet_lite2")}
ROUNDS = 9


def _train_export(data, out: Path, model: str, size: int, reuse: Path = None,
                  teacher: Path = None) -> dict:
    """train + export (tflite fp32, int8) unless `reuse` holds a finished run (with --reuse,
    a tier's own folder from an earlier call of this script)."""
    if reuse is not None and (reuse / "export" / "tflite-int8" / "manifest.json").is_file():
        out = reuse
        walls = {"train": None, "export": None}
    else:
        t_train, rc1 = timed_cli(["train", str(data), "--out", str(out), "--model", model,
                                  "--img-size", str(size), "--overwrite",
                                  *(["--teacher", str(teacher)] if teacher else [])])
        t_export, rc2 = timed_cli(["export", str(out), "--formats", "tflite",
                                   "--precision", "fp32,int8", "--overwrite"])
        if rc1 or rc2:
            sys.exit(f"{model}: train exit {rc1}, export exit {rc2}")
        walls = {"train": round(t_train, 1), "export": round(t_export, 1)}
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    export = json.loads((out / "export" / "manifest.json").read_text())
    builds = {a["name"]: {"top1": a.get("top1"), "paired_vs_fp32": a.get("paired"),
                          "size_bytes": a["size_bytes"]} for a in export["artifacts"]}
    return {"run": str(out), "model": model, "img_size": size, "wall_seconds": walls,
            "val_top1": metrics["val"]["top1"], "val_n": metrics["val"]["n"],
            "test_top1": metrics.get("test", {}).get("top1"), "best_epoch": metrics["best_epoch"],
            "eval_split": export["eval_split"], "int8_decision": {
                k: export["quantization"].get(k) for k in ("val_drop_points", "budget",
                                                          "shipped_step", "float_blocks")},
            "builds": builds, "macs": json.loads((out / "export" / "tflite-int8" /
                                                  "manifest.json").read_text()).get("macs")}


def _interleaved_latency(bundles: dict, threads: int) -> dict:
    """p50 of each int8 bundle per round, rounds interleaved; geometric mean and 95% interval."""
    from scipy import stats
    p50s = {name: [] for name in bundles}
    for _ in range(ROUNDS):
        for name, folder in bundles.items():
            out = subprocess.run([sys.executable, "run.py", "--bench", "--threads", str(threads),
                                  "--trials", "1", "--iters", "100", "--warmup", "10"],
                                 cwd=folder, capture_output=True, text=True, check=True)
            p50s[name].append(json.loads(out.stdout)["latency_ms"]["p50"])
    result = {}
    for name, values in p50s.items():
        logs = np.log(values)
        half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
        result[name] = {"p50_ms": float(np.exp(logs.mean())),
                        "ci95": [float(np.exp(logs.mean() - half)),
                                 float(np.exp(logs.mean() + half))],
                        "rounds": values}
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(result["sets"]), figsize=(6 * len(result["sets"]), 4.5))
    for ax, (name, tiers) in zip(np.atleast_1d(axes), result["sets"].items()):
        for model, t in tiers.items():
            top1 = t["builds"]["tflite-int8"]["top1"]
            lat = t["latency"]
            ax.errorbar(lat["p50_ms"], top1["top1"],
                        xerr=[[lat["p50_ms"] - lat["ci95"][0]], [lat["ci95"][1] - lat["p50_ms"]]],
                        yerr=[[top1["top1"] - top1["ci95"][0]], [top1["ci95"][1] - top1["top1"]]],
                        fmt="o", capsize=4, label=f"{model} @{t['img_size']}")
        ax.set_xlabel("LiteRT int8 p50, ms (batch 1, 2 threads)")
        ax.set_ylabel(f"held-out top-1, int8 (n={next(iter(tiers.values()))['builds']['tflite-int8']['top1']['n']})")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="clothing-small (default ../shared/datasets/clothing-small)")
    ap.add_argument("--lite0-run", default="runs/bench-clothing-run",
                    help="a finished default Lite0 run of clothing-small to reuse")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--distilled", action="store_true", help="add the Lite0 distilled from Lite2")
    ap.add_argument("--reuse", action="store_true",
                    help="keep tiers already trained and exported under runs/tiers")
    args = ap.parse_args()
    tiers_wanted = {**TIERS, **(DISTILLED if args.distilled else {})}
    from edgetl.training.digits import write_digits
    sets = {"clothing-small": (data_path(args.data), None),
            "digits": (write_digits(Path("runs/tiers/digits-data")), 64)}
    result = {"sets": {}}
    for set_name, (data, size) in sets.items():
        tiers = {}
        for tier, (model, native, teacher) in tiers_wanted.items():
            folder = Path("runs/tiers") / f"{set_name}-{tier}"
            reuse = Path(args.lite0_run) if set_name == "clothing-small" and \
                tier == "efficientnet_lite0" else folder if args.reuse else None
            tiers[tier] = _train_export(data, folder, model, size or native, reuse,
                                        Path(tiers[teacher]["run"]) if teacher else None)
            tiers[tier]["teacher"] = teacher
        latency = _interleaved_latency({m: Path(t["run"]) / "export" / "tflite-int8"
                                        for m, t in tiers.items()}, args.threads)
        for model, t in tiers.items():
            t["latency"] = latency[model]
        result["sets"][set_name] = tiers
    _plot(result, RESULTS / "model_tiers.png")
    save("model_tiers", {"commit": commit(CODE), "rounds": ROUNDS, "threads": args.threads,
                         "note": "validation and test as the runs give them; nothing chosen "
                                 "here. Latency: interleaved rounds in fresh processes.",
                         **result})


if __name__ == "__main__":
    main()
