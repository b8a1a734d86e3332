"""The trials of a bench: rounds of one trial per row, interleaved across rows (a slow spell of
the machine hits every build alike), each in a fresh process on the device, until every row's
p50 is stable or the time budget ends; then each row's trials merged into its report row."""
import time
from dataclasses import dataclass

from ..core import console, intervals
from ..core.intervals import geometric
from ..core.errors import EdgetlError, RunError, RuntimeUnavailable
from ..core.layout import RunLayout
from . import runtimes
from .audit import summarise_conditions
from .baseline import TorchBaseline
from .devices import Trial
from .options import MAX_TRIALS, MIN_TRIALS
from .stats import centre_key, is_stable, merge_trials, trials_to_reach


def _end_to_end(trials, stable_pct):
    """End-to-end latency merged like the model's, its preprocessing share beside it."""
    values = [t.get("end_to_end_ms") for t in trials]
    if not values or not all(values):
        return None
    merged = merge_trials(values, stable_pct)
    pre = [v.get("preprocess_p50") for v in values]
    if all(pre):
        merged["preprocess_p50"] = geometric(pre)["value"]
    return merged


@dataclass(frozen=True)
class Rounds:
    """How many rounds of trials: `fixed` exactly, else at least MIN_TRIALS and then more while
    they can still buy something within `budget` seconds: a row's p50 interval within
    +-stable_pct, or an interval that straddles the row's latency budget (`limits`: one per
    row, None without) clear of it. A row's rounds to go are projected from its spread so far
    (stats.trials_to_reach); when no row can get there in the rounds the budget has left, more
    trials would only narrow intervals that stay noisy, so they stop."""
    fixed: int | None
    stable_pct: float
    budget: float
    limits: tuple = ()

    @property
    def first(self) -> int:
        return self.fixed or MIN_TRIALS

    def stop_reason(self, trial_rows: list, elapsed: float) -> str:
        """Why the trials stop after these rounds ('' to go on)."""
        done = max(map(len, trial_rows), default=0)
        if self.fixed is not None:
            return f"{self.fixed} round(s), as asked"
        goals = [self._goal(i, rows) for i, rows in enumerate(trial_rows)
                 if rows and rows[0].get("latency_ms")]
        wanted = [g for g in goals if g is not None]
        if not wanted:
            return f"every row stable (+-{self.stable_pct:g}%) after {done} rounds"
        if elapsed >= self.budget:
            return f"the {self.budget:g} s budget ran out after {done} rounds"
        left = int((self.budget - elapsed) / (elapsed / done)) if elapsed > 0 else MAX_TRIALS
        need = [trials_to_reach(merged, pct, MAX_TRIALS) for merged, pct in wanted]
        if any(n is not None and n - done <= left for n in need):
            return ""
        return (f"after {done} rounds: at the rows' spread, no row would reach +-"
                f"{self.stable_pct:g}% (or clear its latency budget) in the {left} more the "
                f"{self.budget:g} s budget allows; --trials N or a larger --time-budget narrows "
                "the intervals")

    def _goal(self, i: int, rows: list):
        """(its merged latency, the half width in % that would settle it) for a row not yet
        stable: +-stable_pct, or, while its interval straddles its latency budget, the width
        that would clear it if that is wider; None for a stable row."""
        latencies = [t["latency_ms"] for t in rows]
        merged = merge_trials(latencies, self.stable_pct)
        if is_stable(merged, self.stable_pct):
            return None
        centre, goal = centre_key(latencies), self.stable_pct
        limit = self.limits[i] if i < len(self.limits) else None
        ci = merged.get(f"{centre}_ci95")
        if limit is not None and ci and ci[0] <= limit < ci[1]:
            ratio = limit / merged[centre]
            goal = max(goal, (max(ratio, 1 / ratio) - 1) * 100)
        return merged, goal


class Measurer:
    """Runs the trials of every row on one device and keeps what they return."""

    def __init__(self, device, how, timing, path, bundles):
        self.device, self.how, self.timing = device, how, timing
        self.path, self.bundles = path, bundles
        self.device_machine, self.baseline, self.timed_out = None, None, False
        self.peak, self.peak_looks = None, 0    # the best GEMM peak of the rounds' looks
        self.export_failures = []
        self.stopped = ""               # why the rounds of trials ended

    def run_all(self, todo, rounds) -> list:
        """Rounds of one trial per row, interleaved, until `rounds` gives a reason to stop
        (kept in self.stopped)."""
        trial_rows, errors = [[] for _ in todo], [None] * len(todo)
        bar = console.bar(total=rounds.first * len(todo), desc="bench", unit="run")
        started = time.monotonic()
        for t in range(MAX_TRIALS):
            if t and (self.device_machine or {}).get("emulated"):
                self.stopped = "one pass: an emulated CPU only scores"
                break
            if t >= rounds.first:
                self.stopped = rounds.stop_reason(trial_rows, time.monotonic() - started)
                if self.stopped:
                    break
                bar.total += len(todo)
                bar.refresh()
            peak_asked = False          # the GEMM peak: probed once a round, the best kept
            for i, (name, folder, manifest, runtime) in enumerate(todo):
                bar.update(1)
                if errors[i]:
                    continue
                try:
                    trial_rows[i].append(self.one(folder, manifest, runtime, score=t == 0,
                                                  peak=not peak_asked))
                    peak_asked = True
                except EdgetlError as e:
                    errors[i] = e
                    self.timed_out |= "no answer within" in str(e)
        else:
            self.stopped = f"{MAX_TRIALS} rounds, the most"
        bar.close()
        return [_row(name, folder, manifest, runtime, trial_rows[i], errors[i],
                     rounds.stable_pct) for i, (name, folder, manifest, runtime) in
                enumerate(todo)]

    def one(self, folder, manifest, runtime, score, peak=False) -> dict:
        after_timeout = self.timed_out
        if runtime == runtimes.TORCH:
            t = self.timing
            self.baseline = self.baseline or TorchBaseline(
                RunLayout(self.path).train.checkpoint, self.bundles, self.how.threads, t.batch)
            row = self.baseline.measure(t.warmup, t.iters, t.min_seconds, score)
        else:
            if manifest.get("broken"):
                raise RunError(f"{folder}/manifest.json is missing or unreadable: re-run "
                               "'edgetl export' or copy the bundle again")
            trial = Trial(runtime, self.timing, peak=peak and self.device.measures_latency,
                          score=score)
            row = self.device.run(folder, manifest, trial, self.how)
            measured = row.pop("machine", None) or {}
            look = measured.pop("peak", None)
            self.peak, self.peak_looks = best_peak(self.peak, look), self.peak_looks + bool(look)
            self.device_machine = self.device_machine or measured
            if measured.get("emulated"):
                row["emulated"] = True
        if after_timeout and not self.device.is_local:
            row["after_timeout"] = True     # an earlier run on this device hit --timeout
        return row


def best_peak(best: dict | None, new: dict | None) -> dict | None:
    """The higher of two GEMM peak readings, fp32 and int8 each (a busy moment reads low)."""
    if not best or not new:
        return best or new
    out = dict(best)
    for k in ("fp32_gflops", "int8_gops"):
        out[k] = max((v for v in (best.get(k), new.get(k)) if v is not None), default=None)
    return out


def _row(name, folder, manifest, runtime, trials: list, error, stable_pct) -> dict:
    """One report row: the first trial's load, first inference and accuracy, latency merged
    over the trials (stats.merge_trials), and each trial's conditions."""
    row = {"build": name, "runtime": runtime}
    if error is not None and not trials:
        row.update(status="skipped" if isinstance(error, RuntimeUnavailable) else "failed",
                   error=str(error), format=manifest and manifest.get("format"),
                   precision=manifest and manifest.get("precision"))
    elif trials[0].get("emulated"):             # accuracy only: emulated timings mean nothing
        row.update({k: v for k, v in trials[0].items() if k not in ("latency_ms", "load_ms",
                                                                      "first_inference_ms")},
                   status="ok" if error is None else "failed", latency_ms=None,
                   latency_note="not measured: emulated CPU")
    else:
        row.update(trials[0], status="ok" if error is None else "failed",
                   latency_ms=merge_trials([t["latency_ms"] for t in trials], stable_pct),
                   end_to_end_ms=_end_to_end(trials, stable_pct),
                   conditions=[t.get("conditions") for t in trials],
                   peak_rss_mb=max(t["peak_rss_mb"] or 0 for t in trials) or None,
                   after_timeout=any(t.get("after_timeout") for t in trials))
        if error is not None:
            row["error"] = f"trial {len(trials) + 1}: {error}"
    if row.get("top1") is not None and row.get("n"):
        row["top1_record"] = intervals.top1(round(row["top1"] * row["n"]), row["n"])
    row["trial_conditions"] = row.pop("conditions", None)
    row["conditions_summary"] = summarise_conditions(row["trial_conditions"] or [])
    windows = row.get("sustained")
    if windows:
        row["sustained_drift_pct"] = (windows[-1]["p50"] / windows[0]["p50"] - 1) * 100
    if manifest and not manifest.get("broken"):
        model = folder / manifest.get("model_file", "")
        row.update(size_bytes=model.stat().st_size if model.is_file() else None,
                   variant=manifest.get("variant", ""), macs=manifest.get("macs"),
                   held_out_top1=manifest.get("held_out_top1"))
    return row
