"""The accuracy tier, reported once on test: the recipe that results/choose_tier.json chose by
3-fold validation over train + validation (choose_defaults.py --question tier; the test split
never read there) trained with `edgetl train` for seeds 0 and 1, then Lite0 students distilled from the seed-0
run (`--teacher`): the default distillation recipe and a "patient" one (more cached views, so
more distinct teacher targets, more epochs and more weight on the teacher). The student with
the higher validation top-1 (ties: the default) and the seed-0 tier run are exported to TFLite
fp32 and int8 (QAT, default budget): held-out top-1 in LiteRT and the int8 build's paired drop
against fp32.

Each `edgetl train` runs in a fresh process; its wall seconds, cache passes, number format,
best epoch, validation and test top-1 are recorded as the run reports them. Nothing is chosen
here. Writes results/accuracy_tier.json."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, RESULTS, commit, data_path, save, timed_cli  # noqa: E402
from distill_time import train  # noqa: E402

from edgetl.core.options import flag  # noqa: E402

SEEDS = (0, 1)
STUDENTS = {"default": [],            # name -> `edgetl train` options beside --teacher
            "patient": ["--cache-views", "6", "--epochs", "20", "--distill-weight", "0.8"]}


def chosen_args() -> tuple:
    """(the chosen candidate's name, its `edgetl train` options) from choose_tier.json."""
    choice = json.loads((RESULTS / "choose_tier.json").read_text())
    overrides = choice["candidates"][choice["chosen"]]["overrides"]
    return choice["chosen"], [a for k, v in overrides.items() for a in (flag(k), str(v))]


def export_tflite(run: Path) -> dict:
    """TFLite fp32 and int8 of a run; each build's held-out top-1 and int8's paired drop."""
    wall, rc = timed_cli(["export", str(run), "--formats", "tflite", "--precision", "fp32,int8",
                          "--overwrite"])
    if rc:
        sys.exit(f"edgetl export {run} exited {rc}")
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    return {"wall_seconds": round(wall, 1), "eval_split": manifest["eval_split"],
            "int8_decision": {k: manifest["quantization"].get(k) for k in
                              ("val_drop_points", "budget", "shipped_step")},
            "builds": {a["name"]: {"top1": a.get("top1"), "paired_vs_fp32": a.get("paired")}
                       for a in manifest["artifacts"]}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/bench-accuracy-tier")
    args = ap.parse_args()
    data, out = data_path(args.data), Path(args.out)
    name, tier_args = chosen_args()
    tiers = {seed: train(data, out / f"tier-seed{seed}", [*tier_args, "--seed", str(seed)])
             for seed in SEEDS}
    students = {n: train(data, out / f"student-{n}", ["--teacher", str(out / "tier-seed0"), *a])
                for n, a in STUDENTS.items()}
    chosen = max(students, key=lambda n: students[n]["val_top1"])   # ties: the first, default
    students[chosen]["export"] = export_tflite(out / f"student-{chosen}")
    tiers[0]["export"] = export_tflite(out / "tier-seed0")
    for seed, t in tiers.items():
        print(f"tier seed {seed}: val {t['val_top1']:.4f} test {t['test_top1']:.4f} "
              f"in {t['wall_seconds']} s")
    for n, st in students.items():
        print(f"student {n}: val {st['val_top1']:.4f} test {st['test_top1']:.4f} "
              f"in {st['wall_seconds']} s")
    save("accuracy_tier", {"commit": commit(CODE), "data": str(data), "chosen": name,
                           "chosen_by": "results/choose_tier.json (3-fold validation)",
                           "tier_args": tier_args,
                           "tiers": {f"seed {s}": t for s, t in tiers.items()},
                           "students": students, "student_chosen": chosen,
                           "student_rule": "higher validation top-1; ties: the default"})


if __name__ == "__main__":
    main()
