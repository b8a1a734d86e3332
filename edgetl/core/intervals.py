"""Numbers with their uncertainty: a top-1 with its n and 95% interval (Wilson), a latency over
trials with its 95% interval (Student's t on the logs of the per-trial values, so a ratio of two
latencies has an interval too), and the paired int8-against-fp32 evidence with its exact test."""
import math

Z95 = 1.959964


def top1(correct: int, n: int, z: float = Z95) -> dict:
    """{"top1", "n", "ci95": [lo, hi]}: Wilson's interval, sound for small n and near 0 or 1
    (`z`: another level's normal quantile, for intervals that must hold jointly)."""
    if not n:
        return {"top1": None, "n": 0, "ci95": None}
    p, z2 = correct / n, z ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"top1": p, "n": n, "ci95": [max(0.0, centre - half), min(1.0, centre + half)]}


def top1_text(record: dict) -> str:
    """'0.930 [0.903, 0.951] n=372'."""
    if not record or record.get("top1") is None:
        return "-"
    lo, hi = record["ci95"]
    return f"{record['top1']:.3f} [{lo:.3f}, {hi:.3f}] n={record['n']}"


def geometric(values: list) -> dict:
    """{"value", "ci95", "half_width_pct", "n"} of positive per-trial values: their geometric
    mean with a 95% t interval on the log scale (None with fewer than 2 values)."""
    from scipy import stats
    logs = [math.log(v) for v in values]
    n = len(logs)
    mean = sum(logs) / n
    if n < 2:
        return {"value": math.exp(mean), "ci95": None, "half_width_pct": None, "n": n}
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {"value": math.exp(mean), "ci95": [math.exp(mean - half), math.exp(mean + half)],
            "half_width_pct": (math.exp(half) - 1) * 100, "n": n}


def paired(reference_correct, candidate_correct) -> dict:
    """The paired evidence of a candidate (int8) against its reference (fp32) on the same
    images: how many only the reference gets right (lost) and only the candidate (gained), the
    drop in points, and the exact one-sided McNemar test that the candidate is worse (a binomial
    test on the discordant images). `resolvable_points`: the smallest net loss, in points, that
    this split could call real at these discordant counts."""
    from scipy import stats
    pairs = list(zip(reference_correct, candidate_correct))
    n, lost = len(pairs), sum(1 for r, c in pairs if r and not c)
    gained = sum(1 for r, c in pairs if c and not r)
    p = stats.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue \
        if lost + gained else 1.0
    return {"n": n, "lost": lost, "gained": gained,
            "drop_points": 100 * (lost - gained) / n if n else 0.0, "p_value": float(p),
            "resolvable_points": 100 * _smallest_real_loss(lost + gained) / n if n else None}


def _smallest_real_loss(discordant: int, alpha: float = 0.05) -> int:
    """Net images lost (lost - gained) from which the exact test says 'worse' at `alpha`, with
    at least this many discordant images."""
    from scipy import stats
    d = max(discordant, 1)
    while True:
        for lost in range((d + 1) // 2, d + 1):
            if stats.binomtest(lost, d, 0.5, alternative="greater").pvalue < alpha:
                return 2 * lost - d
        d += 1
