"""Where `edgetl export RUN` spends its time: the export of one trained run under cProfile, with
the earlier code (--before CHECKOUT) and with this code, back to back in fresh processes on the
same checkpoint; the cumulative seconds of the int8 decision's parts (QAT scales, QAT, the
quantization report, each mitigation's ranking and measurement, the PyTorch references) and of
each format's build and check, and the int8 results both give (they must not move beyond noise).

  edgetl train DATA --out runs/prof
  git worktree add /tmp/head HEAD       # the code before the change
  python benchmarks/export_profile.py --run runs/prof --before /tmp/head [--rounds N]

Writes results/export_profile.json, one entry per round (the raw .prof files stay in the run's
folder)."""
import argparse
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, save  # noqa: E402

# (module file, function) -> the name a row gets; cumulative time, so parts nest
PARTS = {("quantizing/decision.py", "quantize"): "int8 decision",
         ("quantizing/qat.py", "calibrated"): "  QAT scales (calibration pass)",
         ("quantizing/qat.py", "train"): "  QAT steps",
         ("quantizing/qat.py", "converted"): "  convert",
         ("quantizing/quant_report.py", "analyse"): "  quantization report",
         ("quantizing/ranker.py", "best_float_block"): "  float-block ranking",
         ("quantizing/decision.py", "_measure"): "  validation measurement per step",
         ("quantizing/quant_report.py", "plot"): "  report plot",
         ("quantizing/references.py", "torch_logits"): "PyTorch references (all calls)",
         ("exporting/conversions.py", "get"): "format conversion, done or waited for here "
                                              "(all builds)",
         ("exporting/exporter.py", "_parity"): "parity in each runtime (all builds)",
         ("exporting/bundle.py", "write_bundle"): "bundles (all builds)",
         ("exporting/exporter.py", "count_macs"): "MAC count"}


def profiled_export(code: Path, run: Path, prof: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "edgetl",
                          "export", str(run), "--overwrite"], env=env, cwd=code)
    wall = time.time() - t0
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    q = manifest["quantization"]
    shutil.copytree(run / "export", prof.with_suffix(".export"), dirs_exist_ok=True)
    return {"exit_code": rc, "wall_seconds": round(wall, 1),
            "export_wall_seconds": manifest["wall_seconds"], "parts_seconds": parts(prof),
            "int8": {k: q.get(k) for k in ("val_int8_top1", "val_fp32_top1", "val_n",
                                           "val_drop_points", "shipped_step", "float_blocks",
                                           "qat_epochs", "budget", "seconds")},
            "held_out_top1": {a["name"]: a.get("test_top1") for a in manifest["artifacts"]},
            "build_seconds": {a["name"]: a.get("seconds") for a in manifest["artifacts"]}}


def parts(prof: Path) -> dict:
    stats = pstats.Stats(str(prof)).stats
    out = {}
    for (file, _, func), (_, _, _, cumulative, _) in stats.items():
        for (suffix, name), label in PARTS.items():
            if func == name and file.endswith(suffix):
                out[label] = round(out.get(label, 0.0) + cumulative, 1)
    return {label: out.get(label) for label in PARTS.values()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a run folder holding train/")
    ap.add_argument("--before", default="/tmp/head", help="checkout of the earlier code")
    ap.add_argument("--rounds", type=int, default=1, help="before and after, this many times")
    args = ap.parse_args()
    run, before = Path(args.run).resolve(), Path(args.before).resolve()
    if not (run / "train" / "model.safetensors").is_file():
        sys.exit(f"{run}/train not found: edgetl train DATA --out {run}")
    rounds = []
    for r in range(args.rounds):            # before, then after, round by round
        rounds.append({name: profiled_export(code, run, run / f"export-{name}-{r}.prof")
                       for name, code in (("before", before), ("after", CODE))})
        for name, got in rounds[-1].items():
            print(f"round {r + 1}", name, got["wall_seconds"], "s;",
                  json.dumps(got["parts_seconds"]), flush=True)
    save("export_profile", {"run": str(run), "before_commit": commit(before),
                            "after_commit": commit(CODE), "rounds": rounds})


if __name__ == "__main__":
    main()
