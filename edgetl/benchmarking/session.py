"""RUN/export/ (or one bundle) -> RUN/bench/: every build timed and scored on the runtime that
runs it, here or on a device, against the device's roofline floor and a target's budgets.

Trials are interleaved across builds (a slow spell of the machine hits every build alike); each
trial runs the bundle's own runner in a fresh process. A build that fails stays a row (FAILED or
SKIPPED, with the reason) and the report is written all the same."""
import contextlib
import os
import platform
import time
from pathlib import Path

from .. import bundle_runner
from ..core import console, documents
from ..core.errors import EdgetlError, RunError, RuntimeUnavailable
from ..core.layout import BenchFiles, RunLayout, RunLock
from ..core.names import parse_names
from ..core.options import make
from ..exporting.formats import FORMATS
from ..exporting.records import BuildResult
from . import report, runtimes
from .baseline import TorchBaseline
from .devices import Trial, parse_device
from .options import BenchOptions, DeviceSettings, Timing
from .outputs import check_current, default_out, keep_history, owning_run
from .stats import merge_trials
from .targets import load_target


def find_bundles(path: Path) -> list:
    """[(name, folder, manifest)] of a run's export, or of a single bundle folder."""
    if (path / "manifest.json").is_file() and (path / "run.py").is_file():
        return [(path.name, path, documents.read(path / "manifest.json", "bundle"))]
    export = RunLayout(path).export
    if not export.manifest.is_file():
        raise RunError(f"{path}: neither a run with export/ nor a bundle folder; run "
                       f"'edgetl export {path}' first")
    bundles = []
    for a in map(BuildResult.from_json, documents.read(export.manifest, "export")["artifacts"]):
        folder = export.bundle(a.name)
        try:
            bundles.append((a.name, folder, documents.read(folder / "manifest.json", "bundle")))
        except (OSError, RunError):
            bundles.append((a.name, folder, {"format": a.format, "precision": a.precision,
                                             "broken": True}))
    return bundles


def plan_rows(bundles, wanted, target, device) -> list:
    """[(bundle name, folder, manifest, runtime)] to measure: the profile's rows, or every build
    the device takes, here once per installed runtime, on a device with whatever it has."""
    by_name = {name: (name, folder, m) for name, folder, m in bundles}
    if target:
        rows = []
        for b in target.builds:
            if b.build not in by_name:
                raise RunError(f"{target.path}: build '{b.build}' is not in the export; run "
                               f"'edgetl export RUN --formats {target.formats} --precision "
                               f"{target.precisions}'")
            rows.append((*by_name[b.build], b.runtime))
        return rows
    rows = []
    for name, folder, m in bundles:
        fmt = FORMATS.get(m["format"])
        if fmt is None or not device.accepts(fmt):
            continue
        if wanted is None and not device.is_local:
            rows.append((name, folder, m, None))           # whatever the device has
            continue
        rows += [(name, folder, m, rt) for rt in fmt.runtimes
                 if (rt in wanted if wanted is not None else runtimes.installed(rt))]
    return rows


def benchmark(path, **options) -> dict:
    """Measure every build of RUN (or one BUNDLE); writes report.json/.md/.png and returns the
    report (with a pass/fail verdict when a target profile is given). `options`: the fields of
    BenchOptions."""
    path, o = Path(path), make(BenchOptions, options, "bench options").validate()
    target = load_target(o.target) if o.target else None
    wanted = None if o.runtimes is None else parse_names(o.runtimes, runtimes.NAMES, "runtime")
    device = parse_device(o.device or (target.device if target else "local"))
    threads = o.threads or (target.threads if target else None) or \
        (len(bundle_runner.usable_cpus()) if device.is_local else None)
    bundles = find_bundles(path)
    run_root = owning_run(path)
    if run_root:
        check_current(run_root, bundles)
    files = BenchFiles(Path(o.out) if o.out else default_out(path, run_root))
    todo = plan_rows(bundles, wanted, target, device)
    if _torch_row_wanted(path, wanted, target, device):
        todo.append(("torch", None, None, runtimes.TORCH))
    settings = dict(threads=threads, batch=o.batch, warmup=o.warmup, iters=o.iters,
                    min_seconds=o.min_seconds, trials=o.trials, device=str(device))
    timing, trials = Timing(o.batch, o.warmup, o.iters, o.min_seconds), o.trials
    if not device.measures_latency:          # emulated: one accuracy pass, no timing
        timing, trials = Timing(o.batch, 0, 1, 0.0), 1
    how = DeviceSettings(o.timeout, threads, o.python or (
        target.python if target and device.uses_profile_python else None), o.ssh_config,
        o.adb_binary, target.benchmark_model_flags if target else (),
        target.emulated_cpu if target else "")
    ctx = Measurer(device, how, timing, path, bundles)
    with RunLock(run_root) if run_root else contextlib.nullcontext():
        result = _measure_and_write(ctx, todo, trials, files, target,
                                    {"settings": settings, "source": str(path)})
    result["out"] = str(files.dir)
    return result


def _measure_and_write(ctx, todo, trials, files, target, header: dict) -> dict:
    """Trials, then the report; the earlier report moves to history only once the new one is
    ready (a stopped bench leaves it in place)."""
    running_log = files.dir / f".bench.log.tmp{os.getpid()}"
    try:
        with console.stage_output(running_log):
            results = ctx.run_all(todo, trials)
        machine = ctx.device.machine(ctx.device_machine, _here())
        for row in results:
            report.add_floor(row, machine.get("peak"), target)
        result = {"machine": machine, **header,
                  "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
        if target:
            result["target"] = {"name": target.name, "path": target.path}
            result["verdict"] = report.verdict(results, target)
        keep_history(files)
        os.replace(running_log, files.log)
        report.write(files, result)
        return result
    finally:
        running_log.unlink(missing_ok=True)


class Measurer:
    """Runs the trials of every row on one device and keeps what they return."""

    def __init__(self, device, how, timing, path, bundles):
        self.device, self.how, self.timing = device, how, timing
        self.path, self.bundles = path, bundles
        self.device_machine, self.baseline, self.timed_out = None, None, False
        self.peak_asked = False         # the GEMM peak is probed once, whatever that run gives

    def run_all(self, todo, trials) -> list:
        trial_rows, errors = [[] for _ in todo], [None] * len(todo)
        bar = console.bar(total=trials * len(todo), desc="bench", unit="run")
        for t in range(trials):
            if t and (self.device_machine or {}).get("emulated"):
                break                       # its runner only scores: one pass is all there is
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
        return [_row(name, folder, manifest, runtime, trial_rows[i], errors[i])
                for i, (name, folder, manifest, runtime) in enumerate(todo)]

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


def _row(name, folder, manifest, runtime, trials: list, error) -> dict:
    """One report row: the first trial's load, first inference and accuracy, latency merged
    over the trials (each statistic the median of the per-trial ones)."""
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
                   latency_ms=merge_trials([t["latency_ms"] for t in trials]),
                   peak_rss_mb=max(t["peak_rss_mb"] or 0 for t in trials) or None,
                   after_timeout=any(t.get("after_timeout") for t in trials))
        if error is not None:
            row["error"] = f"trial {len(trials) + 1}: {error}"
    if manifest and not manifest.get("broken"):
        model = folder / manifest.get("model_file", "")
        row.update(size_bytes=model.stat().st_size if model.is_file() else None,
                   variant=manifest.get("variant", ""), macs=manifest.get("macs"),
                   held_out_top1=manifest.get("held_out_top1"))
    return row


def _torch_row_wanted(path, wanted, target, device) -> bool:
    has_ckpt = RunLayout(path).train.checkpoint.is_file()
    if target or not device.is_local or not has_ckpt:
        return False
    return wanted is None or runtimes.TORCH in wanted


def _here() -> dict:
    """This machine's facts (the device's own, or the host of a remote or emulated one)."""
    return {"hostname": platform.node(), "platform": platform.platform(),
            "processor": _cpu_name(), "cpu_count": os.cpu_count(),
            "usable_cpus": len(bundle_runner.usable_cpus()),
            "python": platform.python_version()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
