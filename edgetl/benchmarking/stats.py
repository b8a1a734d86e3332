"""Latency statistics of a row: the trials of one build merged into one record."""


def merge_trials(trials: list) -> dict:
    """One latency record from the trials': each statistic that every trial has (runners give
    p50/p90/p99, benchmark_model mean/std and, in newer builds, median and p95) merged."""
    import numpy as np
    if len(trials) == 1:
        return trials[0]
    have = lambda k: all(k in t for t in trials)
    merged = {k: float(np.median([t[k] for t in trials]))
              for k in ("p50", "p90", "p95", "p99") if have(k)}
    if have("mean"):
        merged["mean"] = float(np.mean([t["mean"] for t in trials]))
    if have("std"):
        merged["std"] = float(np.sqrt(np.mean([t["std"] ** 2 for t in trials])))
    if have("min"):
        merged["min"] = min(t["min"] for t in trials)
    if have("runs"):
        merged["runs"] = sum(t["runs"] for t in trials)
    centre = "p50" if have("p50") else "mean"
    if have(centre):
        values = [t[centre] for t in trials]
        merged.update({f"trial_{centre}": values, "trial_spread_pct": float(
            (max(values) - min(values)) / np.median(values) * 100)})
    merged["statistic"] = "median over trials of each trial's statistic"
    return merged
