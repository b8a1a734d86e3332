"""What distillation costs in training time: `edgetl train` of the teacher (default Lite2 at its
native 260 px) and then of the Lite0 student with `--teacher` (default weight and temperature),
each in a fresh process with default settings: wall seconds of each and together, the cache
passes (the student's includes the teacher's logits of every cached view), the number format the
steps ran in, validation top-1 (what a choice would be made on) and test top-1 as the runs
report it (nothing is chosen here). Writes results/distill_time.json."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, commit, data_path, save, timed_cli  # noqa: E402
from train_speed import trained_run  # noqa: E402


def train(data, out: Path, extra: list) -> dict:
    wall, rc = timed_cli(["train", str(data), "--out", str(out), "--overwrite", *extra])
    if rc:
        sys.exit(f"edgetl train {' '.join(extra)} exited {rc}")
    return {"args": extra, "wall_seconds": round(wall, 1), **trained_run(out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--teacher-model", default="efficientnet_lite2")
    ap.add_argument("--out", default="runs/bench-distill")
    args = ap.parse_args()
    data, out = data_path(args.data), Path(args.out)
    teacher = train(data, out / "teacher", ["--model", args.teacher_model])
    student = train(data, out / "student", ["--teacher", str(out / "teacher")])
    total = round(teacher["wall_seconds"] + student["wall_seconds"], 1)
    print(f"teacher {teacher['wall_seconds']} s + student {student['wall_seconds']} s = {total} s")
    save("distill_time", {"commit": commit(CODE), "data": str(data), "teacher": teacher,
                          "student": student, "together_seconds": total})


if __name__ == "__main__":
    main()
