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
from ..core import console
from ..core.errors import DeviceError, EdgetlError, RunError, RuntimeUnavailable
from ..core.files import read_json
from ..core.layout import BenchFiles, RunLayout, RunLock
from ..core.names import check_number, parse_names
from . import report, runtimes
from .adb import run_adb
from .baseline import TorchBaseline
from .devices import parse_device, run_local, runner_args
from .outputs import check_current, default_out, keep_history, owning_run
from .ssh import run_ssh
from .stats import merge_trials
from .targets import load_target


def find_bundles(path: Path) -> list:
    """[(name, folder, manifest)] of a run's export, or of a single bundle folder."""
    if (path / "manifest.json").is_file() and (path / "run.py").is_file():
        return [(path.name, path, read_json(path / "manifest.json"))]
    export = RunLayout(path).export
    if not export.manifest.is_file():
        raise RunError(f"{path}: neither a run with export/ nor a bundle folder; run "
                       f"'edgetl export {path}' first")
    bundles = []
    for a in read_json(export.manifest)["artifacts"]:
        folder = export.bundle(a["name"])
        try:
            bundles.append((a["name"], folder, read_json(folder / "manifest.json")))
        except (OSError, RunError):
            bundles.append((a["name"], folder, {"format": a["format"], "precision":
                                                a["precision"], "broken": True}))
    return bundles


def plan_rows(bundles, wanted, target, device) -> list:
    """[(bundle name, folder, manifest, runtime)] to measure."""
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
        if wanted is None and device.kind != "local":
            if m["format"] != "tensorrt" or device.kind == "ssh":
                rows.append((name, folder, m, None))       # whatever the device has
            continue
        rows += [(name, folder, m, rt) for rt in runtimes.for_format(m["format"])
                 if (rt in wanted if wanted is not None else runtimes.installed(rt))]
    return rows


def benchmark(path, runtimes=None, threads=None, batch=1, warmup=10, iters=100,
              min_seconds=0.0, trials=3, device=None, target=None, out=None, python=None,
              ssh_config=None, timeout=600.0, adb_binary=None) -> dict:
    """Measure every build of RUN (or one BUNDLE); writes report.json/.md/.png and returns the
    report (with a pass/fail verdict when a target profile is given)."""
    path = Path(path)
    target = load_target(target) if target else None
    wanted = None if runtimes is None else parse_names(runtimes, _known_runtimes(), "runtime")
    device = parse_device(device or (target.device if target else "local"))
    _check_options(threads, batch, warmup, iters, min_seconds, trials, timeout)
    threads = threads or (target.threads if target else None) or \
        (len(bundle_runner.usable_cpus()) if device.kind == "local" else None)
    bundles = find_bundles(path)
    run_root = owning_run(path)
    if run_root:
        check_current(run_root, bundles)
    files = BenchFiles(Path(out) if out else default_out(path, run_root))
    todo = plan_rows(bundles, wanted, target, device)
    if _torch_row_wanted(path, wanted, target, device):
        todo.append(("torch", None, None, "torch"))
    settings = dict(threads=threads, batch=batch, warmup=warmup, iters=iters,
                    min_seconds=min_seconds, trials=trials, device=str(device))
    if not device.measures_latency:          # emulated: one accuracy pass, no timing
        warmup, iters, min_seconds, trials = 0, 1, 0.0, 1
    ctx = Measurer(device, threads, batch, warmup, iters, min_seconds, timeout,
                   python or (target and device.kind == "ssh" and target.python), ssh_config,
                   adb_binary, path, bundles)
    ctx.emulated_cpu = target.emulated_cpu if target else ""
    ctx.adb_flags = target.benchmark_model_flags if target else ()
    with RunLock(run_root) if run_root else contextlib.nullcontext():
        running_log = files.dir / f".bench.log.tmp{os.getpid()}"
        try:
            with console.stage_output(running_log):
                results = ctx.run_all(todo, trials)
            machine = _machine(device, ctx.device_machine)
            for row in results:
                report.add_floor(row, machine.get("peak"), target)
            result = {"machine": machine, "settings": settings, "source": str(path),
                      "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
            if target:
                result["target"] = {"name": target.name, "path": target.path}
                result["verdict"] = report.verdict(results, target)
            keep_history(files)             # only now: a stopped bench leaves the old report
            os.replace(running_log, files.log)
            report.write(files, result)
        finally:
            running_log.unlink(missing_ok=True)
    result["out"] = str(files.dir)
    return result


class Measurer:
    """Runs the trials of every row on one device and keeps what they return."""

    def __init__(self, device, threads, batch, warmup, iters, min_seconds, timeout, python,
                 ssh_config, adb_binary, path, bundles):
        self.device, self.threads, self.batch = device, threads, batch
        self.warmup, self.iters, self.min_seconds, self.timeout = warmup, iters, min_seconds, \
            timeout
        self.python, self.ssh_config, self.adb_binary = python, ssh_config, adb_binary
        self.path, self.bundles = path, bundles
        self.device_machine, self.baseline, self.timed_out = None, None, False
        self.peak_asked = False         # the GEMM peak is probed once, whatever that run gives
        self.emulated_cpu, self.adb_flags = "", ()

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
        if runtime == "torch":
            self.baseline = self.baseline or TorchBaseline(
                RunLayout(self.path).train.checkpoint, self.bundles, self.threads, self.batch)
            row = self.baseline.measure(self.warmup, self.iters, self.min_seconds, score)
        else:
            if manifest.get("broken"):
                raise RunError(f"{folder}/manifest.json is missing or unreadable: re-run "
                               "'edgetl export' or copy the bundle again")
            args = runner_args(runtime, self.threads, self.batch, self.warmup, self.iters,
                               self.min_seconds, 1, peak=not self.peak_asked
                               and self.device.measures_latency, score=score)
            self.peak_asked = True
            row = self._on_device(folder, manifest, args)
            measured = row.pop("machine", None) or {}
            self.device_machine = self.device_machine or measured
            if measured.get("emulated"):
                row["emulated"] = True
        if after_timeout and self.device.kind != "local":
            row["after_timeout"] = True     # an earlier run on this device hit --timeout
        return row

    def _on_device(self, folder, manifest, args) -> dict:
        """One trial of one build. The runner checks the bundle's sha256 itself (on the device,
        after the copy); adb runs no runner, so the check happens here."""
        d = self.device
        if d.kind == "local":
            return run_local(folder, args, self.timeout, self.python, self.threads)
        if d.kind == "ssh":
            return run_ssh(d, folder, args, self.timeout, self.python or "python3",
                           self.ssh_config, self.threads)
        if d.kind == "emulated":
            from .emulated import run_emulated
            return run_emulated(d, folder, args, self.timeout, self.threads,
                                self.emulated_cpu)
        if manifest["format"] != "tflite":
            raise DeviceError(f"{d}: adb runs .tflite builds only ({folder.name} is "
                              f"{manifest['format']})")
        try:
            bundle_runner.verify(manifest, str(folder))
        except bundle_runner.BundleError as e:
            raise RunError(str(e)) from None
        extra = [f"--min_secs={self.min_seconds:g}"] if self.min_seconds else []
        row = run_adb(d, folder / manifest["model_file"], self.threads, self.warmup, self.iters,
                      self.timeout, **({"binary": self.adb_binary} if self.adb_binary else {}),
                      extra=extra + list(self.adb_flags))
        # benchmark_model is LiteRT's own tool: the row is LiteRT's, timed on the phone; it
        # scores nothing, so the phone's top-1 is unknown (the host's is kept apart, labelled)
        return {**row, "format": "tflite", "precision": manifest["precision"],
                "runtime": "litert", "tool": "benchmark_model", "batch": 1,
                "top1": None, "n": None, "top1_agreement": None,
                "host_top1": manifest.get("eval_top1"), "host_n": manifest.get("eval_n"),
                "accuracy_note": "not measured on the phone (benchmark_model times only); "
                                 "host_top1 is LiteRT on the workstation at export"}


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


def _known_runtimes() -> tuple:
    return runtimes.NAMES


def _check_options(threads, batch, warmup, iters, min_seconds, trials, timeout) -> None:
    if threads is not None:
        check_number("--threads", threads, int, 1, 1024)
    check_number("--batch", batch, int, 1, 1024)
    check_number("--warmup", warmup, int, 0)
    check_number("--iters", iters, int, 1)
    check_number("--trials", trials, int, 1)
    check_number("--min-seconds", min_seconds, float, 0)
    check_number("--timeout", timeout, float, 0, None, True)


def _torch_row_wanted(path, wanted, target, device) -> bool:
    has_ckpt = RunLayout(path).train.checkpoint.is_file()
    if target or device.kind != "local" or not has_ckpt:
        return False
    return wanted is None or "torch" in wanted


def _machine(device, measured) -> dict:
    here = {"hostname": platform.node(), "platform": platform.platform(),
            "processor": _cpu_name(), "cpu_count": os.cpu_count(),
            "usable_cpus": len(bundle_runner.usable_cpus()),
            "python": platform.python_version()}
    if device.kind == "local":
        return {**here, **(measured or {}), "device": "local"}
    remote = {"processor": f"{(measured or {}).get('machine', '')} under qemu on this machine"} \
        if device.kind == "emulated" else {}
    return {"device": str(device), **remote, **(measured or {}), "host": here}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
