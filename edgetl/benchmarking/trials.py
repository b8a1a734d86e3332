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
from .stats import is_stable, merge_trials


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
    """How many rounds of trials: `fixed` exactly, else at least MIN_TRIALS and then more until
    every timed row is stable (its p50 interval within +-stable_pct) or `budget` seconds of
    trials have passed."""
    fixed: int | None
    stable_pct: float
    budget: float

    @property
    def first(self) -> int:
        return self.fixed or MIN_TRIALS

    def done(self, trial_rows: list, elapsed: float) -> bool:
        if self.fixed is not None:
            return True
        timed = [[t["latency_ms"] for t in rows] for rows in trial_rows
                 if rows and rows[0].get("latency_ms")]
        return elapsed >= self.budget or all(
            is_stable(merge_trials(t, self.stable_pct), self.stable_pct) for t in timed)


class Measurer:
    """Runs the trials of every row on one device and keeps what they return."""

    def __init__(self, device, how, timing, path, bundles):
        self.device, self.how, self.timing = device, how, timing
        self.path, self.bundles = path, bundles
        self.device_machine, self.baseline, self.timed_out = None, None, False
        self.peak_asked = False         # the GEMM peak is probed once, whatever that run gives
        self.export_failures = []

    def run_all(self, todo, rounds) -> list:
        """Rounds of one trial per row, interleaved, until `rounds` says the rows are stable
        (or its count or time budget is spent)."""
        trial_rows, errors = [[] for _ in todo], [None] * len(todo)
        bar = console.bar(total=rounds.first * len(todo), desc="bench", unit="run")
        started = time.monotonic()
        for t in range(MAX_TRIALS):
            if t and (self.device_machine or {}).get("emulated"):
                break                       # its runner only scores: one pass is all there is
            if t >= rounds.first:
                if rounds.done(trial_rows, time.monotonic() - started):
                    break
                bar.total += len(todo)
                bar.refresh()
            for i, (name, folder, manifest, runtime) in enumerate(todo):
                bar.update(1)
                if errors[i]:
                    continue
                try:
                    trial_rows[i].append(self.one(folder, manifest, runtime, score=t == 0))
                except EdgetlError as e:
                    errors[i] = e
                    self.timed_out |= "no answer within" in str(e)
        bar.close()
        return [_row(name, folder, manifest, runtime, trial_rows[i], errors[i],
                     rounds.stable_pct) for i, (name, folder, manifest, runtime) in
                enumerate(todo)]

    def one(self, folder, manifest, runtime, score) -> dict:
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
            trial = Trial(runtime, self.timing, peak=not self.peak_asked
                          and self.device.measures_latency, score=score)
            self.peak_asked = True
            row = self.device.run(folder, manifest, trial, self.how)
            measured = row.pop("machine", None) or {}
            self.device_machine = self.device_machine or measured
            if measured.get("emulated"):
                row["emulated"] = True
        if after_timeout and not self.device.is_local:
            row["after_timeout"] = True     # an earlier run on this device hit --timeout
        return row


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
