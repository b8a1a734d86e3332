"""RUN/export/ (or one bundle) -> RUN/bench/: every build timed and scored on the runtime that
runs it, here or on a device, against this machine's roofline floor and a target's budgets."""
import importlib.util
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from . import bundle_runner, report
from .bundle_runner import RUNTIMES, TFLITE_RUNTIMES
from .config import parse_names
from .devices import parse_device, run_adb, run_local, run_ssh, runner_args
from .errors import ConfigError, EdgetlError, RunError, RuntimeUnavailable
from .progress import bar as progress
from .targets import load_target

KNOWN_RUNTIMES = sorted({r for rs in RUNTIMES.values() for r in rs} | {"torch"})


def find_bundles(path: Path) -> list:
    """[(name, folder, manifest)] of a run's export, or of a single bundle folder."""
    if (path / "manifest.json").is_file() and (path / "run.py").is_file():
        return [(path.name, path, json.loads((path / "manifest.json").read_text()))]
    export = path / "export" / "manifest.json"
    if not export.is_file():
        raise RunError(f"{path}: neither a run with export/ nor a bundle folder; run "
                       f"'edgetl export {path}' first")
    names = [a["name"] for a in json.loads(export.read_text())["artifacts"]]
    return [(n, path / "export" / n, json.loads((path / "export" / n / "manifest.json")
                                                 .read_text())) for n in names]


def installed(runtime: str) -> bool:
    if runtime == "torch":
        return True
    if runtime in TFLITE_RUNTIMES:
        return importlib.util.find_spec(TFLITE_RUNTIMES[runtime][0]) is not None
    if runtime.startswith("onnxruntime"):
        if importlib.util.find_spec("onnxruntime") is None:
            return False
        import onnxruntime
        return bundle_runner.ONNX_PROVIDERS[runtime] in onnxruntime.get_available_providers()
    from .exporters import tensorrt
    return tensorrt.available()


def plan_rows(bundles, runtimes, target, device) -> list:
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
        if runtimes is None and device.kind != "local":
            if m["format"] != "tensorrt":
                rows.append((name, folder, m, None))       # whatever the device has
            continue
        rows += [(name, folder, m, rt) for rt in RUNTIMES[m["format"]]
                 if (rt in runtimes if runtimes is not None else installed(rt))]
    return rows


def bench(path, runtimes=None, threads=None, batch=1, warmup=10, iters=100, min_seconds=0.0,
          trials=3, device=None, target=None, out=None, python=None, ssh_config=None,
          timeout=600.0, adb_binary=None) -> dict:
    """Measure every build of RUN (or one BUNDLE); writes report.json/.md/.png and returns the
    report (with a pass/fail verdict when a target profile is given)."""
    path = Path(path)
    target = load_target(target) if target else None
    runtimes = _runtimes(runtimes)
    device = parse_device(device or (target.device if target else "local"))
    threads = threads or (target.threads if target else None) or \
        (os.cpu_count() if device.kind == "local" else None)
    if batch < 1 or warmup < 0 or iters < 1 or trials < 1:
        raise ConfigError("--batch, --iters and --trials must be >= 1, --warmup >= 0")
    bundles = find_bundles(path)
    rows_to_run = plan_rows(bundles, runtimes, target, device)
    is_run = (path / "export").is_dir()
    out = Path(out) if out else (path / "bench" if is_run else path.parent / f"{path.name}-bench")
    settings = dict(threads=threads, batch=batch, warmup=warmup, iters=iters,
                    min_seconds=min_seconds, trials=trials, device=str(device))
    todo = rows_to_run + ([("torch", None, None, "torch")] if _torch_row_wanted(
        path, runtimes, target, device) else [])
    python = python or (target and device.kind == "ssh" and target.python)
    trial_rows = [[] for _ in todo]
    errors = [None] * len(todo)
    device_machine, baseline = None, None
    bar = progress(total=trials * len(todo), desc="bench", unit="run")
    for t in range(trials):                   # trials interleaved across builds: a slow spell
        for i, (name, folder, manifest, runtime) in enumerate(todo):   # hits every build alike
            bar.update(1)
            if errors[i]:
                continue
            try:
                if runtime == "torch":
                    baseline = baseline or TorchBaseline(path, bundles, threads, batch)
                    row = baseline.measure(warmup, iters, min_seconds, score=t == 0)
                else:
                    args = runner_args(runtime, threads, batch, warmup, iters, min_seconds, 1,
                                       peak=device_machine is None, score=t == 0)
                    row = _measure(device, folder, manifest, args, threads, warmup,
                                   iters, timeout, python, ssh_config, adb_binary)
                    measured = row.pop("machine", None)
                    device_machine = device_machine or measured
                trial_rows[i].append(row)
            except EdgetlError as e:
                errors[i] = e
    bar.close()
    results = [_row(name, folder, manifest, runtime, trial_rows[i], errors[i])
               for i, (name, folder, manifest, runtime) in enumerate(todo)]
    machine = _machine(device, device_machine)
    for row in results:
        report.add_floor(row, machine.get("peak"))
    result = {"machine": machine, "settings": settings, "source": str(path),
              "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    if target:
        result["target"] = {"name": target.name, "path": target.path}
        result["verdict"] = report.verdict(results, target)
    _keep_history(out)
    report.write(out, result)
    result["out"] = str(out)
    return result


def _row(name, folder, manifest, runtime, trials: list, error) -> dict:
    """One report row: the first trial's load, first inference and accuracy, latency merged
    over the trials (each statistic the median of the per-trial ones)."""
    row = {"build": name, "runtime": runtime}
    if error is not None and not trials:
        row.update(status="skipped" if isinstance(error, RuntimeUnavailable) else "failed",
                   error=str(error), format=manifest and manifest["format"],
                   precision=manifest and manifest["precision"])
    else:
        row.update(trials[0], status="ok" if error is None else "failed",
                   latency_ms=merge_trials([t["latency_ms"] for t in trials]),
                   peak_rss_mb=max(t["peak_rss_mb"] or 0 for t in trials) or None)
        if error is not None:
            row["error"] = f"trial {len(trials) + 1}: {error}"
    if manifest:
        row.update(size_bytes=os.path.getsize(folder / manifest["model_file"]),
                   variant=manifest.get("variant", ""), macs=manifest.get("macs"),
                   held_out_top1=manifest.get("held_out_top1"))
    return row


def merge_trials(trials: list) -> dict:
    if len(trials) == 1 or "p50" not in trials[0]:
        return trials[0]
    med = lambda k: float(np.median([t[k] for t in trials]))
    p50s = [t["p50"] for t in trials]
    return {"mean": float(np.mean([t["mean"] for t in trials])),
            "std": float(np.sqrt(np.mean([t["std"] ** 2 for t in trials]))),
            "p50": med("p50"), "p90": med("p90"), "p99": med("p99"),
            "min": min(t["min"] for t in trials), "runs": sum(t["runs"] for t in trials),
            "trial_p50": p50s, "trial_spread_pct": float((max(p50s) - min(p50s))
                                                         / np.median(p50s) * 100),
            "statistic": "median over trials of each trial's statistic"}


def _runtimes(value):
    return None if value is None else parse_names(value, KNOWN_RUNTIMES, "runtime")


def _measure(device, folder, manifest, args, threads, warmup, iters, timeout, python,
             ssh_config, adb_binary) -> dict:
    """One trial of one build. The runner checks the bundle's sha256 itself (on the device,
    after the copy); adb runs no runner, so the check happens here."""
    if device.kind == "local":
        return run_local(folder, args, timeout, python, threads)
    if device.kind == "ssh":
        return run_ssh(device, folder, args, timeout, python or "python3", ssh_config, threads)
    if manifest["format"] != "tflite":
        raise RunError(f"{device}: adb runs .tflite builds only ({folder.name} is "
                       f"{manifest['format']})")
    bad = bundle_runner.mismatched_files(manifest, folder)
    if bad:
        raise RunError(f"{', '.join(bad)}: missing or its sha256 no longer matches the bundle "
                       "manifest; re-run 'edgetl export' or copy the bundle again")
    row = run_adb(device, folder / manifest["model_file"], threads, warmup, iters, timeout,
                  **({"binary": adb_binary} if adb_binary else {}))
    return {**row, "format": "tflite", "precision": manifest["precision"],
            "top1": manifest.get("eval_top1"), "n": manifest.get("eval_n"),
            "accuracy_note": "benchmark_model times only; top-1 is the bundle's export-time "
                             "eval_top1 (LiteRT on the workstation)"}


def _torch_row_wanted(path, runtimes, target, device) -> bool:
    has_ckpt = (path / "train" / "model.safetensors").is_file()
    if target or device.kind != "local" or not has_ckpt:
        return False
    return runtimes is None or "torch" in runtimes


class TorchBaseline:
    """PyTorch eager fp32, loaded once and timed like the builds, on the same real images."""

    def __init__(self, path, bundles, threads, batch):
        import torch

        from .checkpoint import load_checkpoint
        torch.set_num_threads(threads or torch.get_num_threads())
        self.torch, self.threads, self.batch = torch, threads, batch
        self.checkpoint = path / "train" / "model.safetensors"
        self.model = load_checkpoint(self.checkpoint)[0].eval()
        folder, self.manifest = next((f, m) for _, f, m in bundles if m["precision"] == "fp32"
                                     and m["input"]["layout"] == "NCHW"
                                     and m["format"] != "tensorrt")
        self.data = dict(np.load(folder / "eval.npz"))
        images = self.data["images"]
        self.x = self._input(np.resize(images, (batch,) + images.shape[1:]))

    def _input(self, images):
        return self.torch.from_numpy(bundle_runner.to_input(images, self.manifest))

    def measure(self, warmup, iters, min_seconds, score=True) -> dict:
        import resource
        images, labels = self.data["images"], self.data["labels"]
        with self.torch.inference_mode():
            t0 = time.perf_counter()
            self.model(self.x)
            first = (time.perf_counter() - t0) * 1000
            latency = bundle_runner.time_runs(lambda: self.model(self.x), warmup, iters,
                                              min_seconds, 1)
            preds = np.concatenate([self.model(self._input(images[i:i + 64])).argmax(-1)
                                    .numpy() for i in range(0, len(images), 64)]) \
                if score else None
        reference = self.data.get("reference")
        return {"format": "pytorch", "precision": "fp32", "runtime": "torch",
                "runtime_version": self.torch.__version__, "provider": "eager CPU",
                "threads": self.threads, "batch": self.batch,
                "top1": None if preds is None else float((preds == labels).mean()),
                "n": len(labels), "top1_agreement": None if preds is None or reference is None
                else float((preds == reference).mean()), "load_ms": None,
                "first_inference_ms": first, "latency_ms": latency,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "size_bytes": os.path.getsize(self.checkpoint),
                "macs": self.manifest.get("macs"), "variant": ""}


def _machine(device, measured) -> dict:
    here = {"hostname": platform.node(), "platform": platform.platform(),
            "processor": _cpu_name(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    if device.kind == "local":
        return {**here, **(measured or {}), "device": "local"}
    return {"device": str(device), **(measured or {}), "host": here}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _keep_history(out: Path) -> None:
    """A previous report is moved to out/history/<time>/, never overwritten."""
    old = out / "report.json"
    if not old.is_file():
        return
    stamp = json.loads(old.read_text()).get("recorded", str(int(old.stat().st_mtime)))
    dest = out / "history" / stamp.replace(":", "")
    dest.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        if f.is_file():
            shutil.move(str(f), dest / f.name)
