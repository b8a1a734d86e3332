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

import numpy as np

from .. import bundle_runner, page
from ..core import console, documents
from ..core.errors import ConfigError, RunError
from ..core.layout import BenchFiles, RunLayout, RunLock
from ..core.names import parse_names
from ..core.options import make
from ..exporting.formats import FORMATS
from ..exporting.records import BuildResult
from . import report, runtimes
from .audit import flip_audit
from .devices import parse_device
from .options import MIN_TRIALS, BenchOptions, DeviceSettings, Timing
from .outputs import check_current, default_out, keep_history, owning_run
from .targets import load_target
from .trials import Measurer, Rounds
from .verdict import verdict


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
                    min_seconds=o.min_seconds, trials=o.trials or f"{MIN_TRIALS}+ until stable",
                    stable_pct=o.stable_pct, time_budget=o.time_budget, wait_idle=o.wait_idle,
                    device=str(device))
    timing = Timing(o.batch, o.warmup, o.iters, o.min_seconds, o.wait_idle, o.sustained or 0.0)
    rounds = Rounds(o.trials, o.stable_pct, o.time_budget, _latency_budgets(todo, target))
    if o.sustained:
        _check_sustained(todo, device)
        rounds = Rounds(1, o.stable_pct, 0)
    if not device.measures_latency:          # emulated: one accuracy pass, no timing
        timing, rounds = Timing(o.batch, 0, 1, 0.0), Rounds(1, o.stable_pct, 0)
    how = DeviceSettings(o.timeout, threads, o.python or (
        target.python if target and device.uses_profile_python else None), o.ssh_config,
        o.adb_binary, target.benchmark_model_flags if target else (),
        target.emulated_cpu if target else "")
    ctx = Measurer(device, how, timing, path, bundles)
    ctx.export_failures = _export_failures(run_root)
    with RunLock(run_root) if run_root else contextlib.nullcontext():
        result = _measure_and_write(ctx, todo, rounds, files, target,
                                    {"settings": settings, "source": str(path)},
                                    o.allow_inconclusive)
    result["out"] = str(files.dir)
    if run_root and files.dir.resolve() == RunLayout(run_root).bench.dir.resolve():
        page.refresh_or_warn(run_root)
    return result


def _latency_budgets(todo, target) -> tuple:
    """Each row's latency budget (ms) from the target profile, None where it sets none."""
    budgets = {(b.build, b.runtime): b.latency_budget_ms for b in target.builds} \
        if target else {}
    return tuple(budgets.get((name, runtime)) for name, _, _, runtime in todo)


def _measure_and_write(ctx, todo, rounds, files, target, header: dict,
                       allow_inconclusive: bool) -> dict:
    """Trials, then the report; the earlier report moves to history only once the new one is
    ready (a stopped bench leaves it in place)."""
    running_log = files.dir / f".bench.log.tmp{os.getpid()}"
    try:
        with console.stage_output(running_log):
            results = ctx.run_all(todo, rounds)
        header = {**header, "trials_stopped": ctx.stopped}
        machine = ctx.device.machine(ctx.device_machine, _here())
        if ctx.peak:
            machine["peak"] = {**ctx.peak, "looks": ctx.peak_looks}
        for row in results:
            report.add_floor(row, machine.get("peak"), target)
        result = {"machine": machine, **header,
                  "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results,
                  "flips": flip_audit(results, _eval_sets(todo))}
        if target:
            result["target"] = {"name": target.name, "path": target.path}
            result["verdict"] = verdict(results, target, allow_inconclusive,
                                        ctx.export_failures)
        machine_speed(result, files.report)
        keep_history(files)
        os.replace(running_log, files.log)
        report.write(files, result)
        return result
    finally:
        running_log.unlink(missing_ok=True)


def machine_speed(result: dict, previous_report) -> None:
    """The bench's median speed probe (after each trial, every row) into its machine block,
    and its change against the report it replaces: when two benches disagree, this says
    whether the machine, not the build, changed."""
    probes = sorted(c["probe_us_after"] for r in result["results"]
                    for c in r.get("trial_conditions") or [] if c and c.get("probe_us_after"))
    if not probes:
        return
    now = result["machine"]["speed_probe_us"] = probes[len(probes) // 2]
    try:
        before = documents.read(previous_report, "bench")
    except (OSError, RunError):
        return
    then = (before.get("machine") or {}).get("speed_probe_us")
    if then and before["machine"].get("device") == result["machine"].get("device"):
        result["speed_vs_previous"] = {"previous_recorded": before.get("recorded"),
                                       "pct": (now / then - 1) * 100}


def _check_sustained(todo, device) -> None:
    if len(todo) != 1 or todo[0][3] == runtimes.TORCH or not device.measures_latency or \
            not device.runs_runner:
        rows = ", ".join(f"{name} ({rt or 'any'})" for name, _, _, rt in todo) or "none"
        raise ConfigError(f"--sustained times one build continuously, on a device that "
                          f"measures latency with edgetl's runner; this bench plans {rows}: pass "
                          "one bundle folder (RUN/export/NAME) and one --runtimes")


def _eval_sets(todo) -> dict:
    """build name -> (class names, eval.npz arrays) of each bundle measured, for the audit."""
    sets = {}
    for name, folder, manifest, _ in todo:
        if folder is not None and name not in sets and not manifest.get("broken"):
            try:
                with np.load(folder / "eval.npz") as data:
                    sets[name] = (manifest["labels"], {k: data[k] for k in data.files
                                                       if k != "images"})
            except (OSError, ValueError, KeyError):
                continue
    return sets


def _export_failures(run_root) -> list:
    """The export's own failures (parity gates, a missed int8 budget): part of the verdict."""
    if not run_root:
        return []
    try:
        return documents.read(RunLayout(run_root).export.manifest, "export").get("failed", [])
    except (OSError, RunError):
        return []


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
