"""What a validation split of n images can resolve (no training: the statistics edgetl applies,
from edgetl.core.intervals): one image in points, the Wilson 95% interval of a few observed
top-1s, and the smallest net loss (lost - gained images) the exact one-sided McNemar test calls
real for a few discordant counts. Writes results/small_splits.json."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from edgetl.core.intervals import _smallest_real_loss, top1  # noqa: E402

SPLITS = (45, 100, 341)           # 300 photos at 15%; a bench's 100 images; clothing's val
RATES = (0.95, 0.90, 0.75)


def main():
    rows = {}
    for n in SPLITS:
        rows[n] = {"one_image_points": round(100 / n, 2),
                   "wilson": {f"{r:.2f}": top1(round(r * n), n) for r in RATES},
                   "smallest_real_net_loss": {d: _smallest_real_loss(d) for d in (2, 5, 10)}}
        w = rows[n]["wilson"]
        print(n, rows[n]["one_image_points"], {k: [round(x, 3) for x in v["ci95"]]
                                                for k, v in w.items()},
              rows[n]["smallest_real_net_loss"])
    save("small_splits", {"splits": rows})


if __name__ == "__main__":
    main()
