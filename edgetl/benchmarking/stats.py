"""Latency statistics of a row: the trials of one build merged into one record with 95%
intervals, whether that record is stable enough to stop, and int8 speed-ups paired trial by
trial (trials are interleaved, so trial t of two builds ran in the same spell of the machine)."""
import math

from ..core.intervals import geometric

STATISTICS = ("p50", "p90", "p95", "p99", "mean")
DEFAULT_STABLE_PCT = 2.0          # a p50 is stable once its 95% interval is within +-2%


def centre_key(trials: list) -> str:
    """The statistic a row is judged on: p50 where every trial has one (benchmark_model's older
    output has mean and std only)."""
    return "p50" if all("p50" in t for t in trials) else "mean"


def merge_trials(trials: list, stable_pct: float = DEFAULT_STABLE_PCT) -> dict:
    """One latency record from the trials': each statistic is the geometric mean over trials of
    the per-trial statistic, with its 95% interval (STAT_ci95) across trials; `noisy` when the
    centre's interval is wider than +-stable_pct (or there is one trial, so no interval)."""
    merged, have = {}, lambda k: all(k in t for t in trials)
    for k in STATISTICS:
        if have(k) and all(t[k] > 0 for t in trials):
            g = geometric([t[k] for t in trials])
            merged.update({k: g["value"], f"{k}_ci95": g["ci95"]})
            if k == centre_key(trials):
                merged["half_width_pct"] = g["half_width_pct"]
    if have("std"):
        merged["std"] = (sum(t["std"] ** 2 for t in trials) / len(trials)) ** 0.5
    if have("min"):
        merged["min"] = min(t["min"] for t in trials)
    if have("runs"):
        merged["runs"] = sum(t["runs"] for t in trials)
    centre = centre_key(trials)
    if have(centre):
        values = [t[centre] for t in trials]
        spread = (max(values) - min(values)) / sorted(values)[len(values) // 2] * 100
        merged.update({f"trial_{centre}": values, "trial_spread_pct": spread})
    merged.update(trials=len(trials), stable_pct=stable_pct, noisy=not is_stable(merged,
                                                                                  stable_pct),
                  statistic="geometric mean over trials of each trial's statistic, 95% t "
                            "interval on the log scale across trials")
    return merged


def is_stable(merged: dict, stable_pct: float) -> bool:
    half = merged.get("half_width_pct")
    return half is not None and half <= stable_pct


def trials_to_reach(merged: dict, half_pct: float, most: int) -> int | None:
    """Trials at which a merged record's 95% interval would lie within +-half_pct, were its
    spread to hold: its t interval narrows as t(n-1)/sqrt(n) from the half width it has now.
    None when not within `most` trials (or there is no interval yet)."""
    from scipy import stats
    n, now = merged.get("trials", 0), merged.get("half_width_pct")
    if now is None or n < 2:
        return None
    sd = math.log1p(now / 100) * math.sqrt(n) / stats.t.ppf(0.975, n - 1)   # on the logs
    goal = math.log1p(half_pct / 100)
    return next((k for k in range(n, most + 1)
                 if stats.t.ppf(0.975, k - 1) * sd / math.sqrt(k) <= goal), None)


def paired_speedup(base: dict, latency: dict) -> dict | None:
    """The base row's latency over this row's (two merged records), trial by trial (same round,
    same spell of the machine), as a geometric mean with its 95% interval; None without a
    common per-trial statistic."""
    key = next((f"trial_{k}" for k in ("p50", "mean") if f"trial_{k}" in base
                and f"trial_{k}" in latency), None)
    if key is None:
        return None
    ratios = [b / t for b, t in zip(base[key], latency[key]) if b > 0 and t > 0]
    if not ratios:
        return None
    g = geometric(ratios)
    return {"value": g["value"], "ci95": g["ci95"], "pairs": len(ratios),
            "statistic": key[len("trial_"):]}
