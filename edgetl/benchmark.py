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
from .bundle_runner import RUNTIMES
from .devices import parse_device, run_adb, run_local, run_ssh, runner_args
from .config import parse_names
from .errors import ConfigError, EdgetlError, RunError
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
    if runtime in ("litert", "tflite-runtime"):
        return importlib.util.find_spec(runtime.replace("-", "_").replace(
            "litert", "ai_edge_litert")) is not None
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
    wanted = runtimes
    rows = []
    for name, folder, m in bundles:
        for rt in RUNTIMES[m["format"]]:
            if wanted is not None and rt in wanted:
                rows.append((name, folder, m, rt))
            elif wanted is None and device.kind == "local" and installed(rt):
                rows.append((name, folder, m, rt))
        if wanted is None and device.kind != "local" and m["format"] != "tensorrt":
            rows.append((name, folder, m, None))           # whatever the device has
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
    device_machine = None
    bar = progress(total=trials * len(todo), desc="bench", unit="run")
    for t in range(trials):                   # trials interleaved across builds: a slow spell
        for i, (name, folder, manifest, runtime) in enumerate(todo):   # hits every build alike
            bar.update(1)
            if errors[i]:
                continue
            try:
                if runtime == "torch":
                    row = _torch_row(path, bundles, threads, batch, warmup, iters, min_seconds,
                                     score=t == 0)
                else:
                    args = runner_args(None, threads, batch, warmup, iters, min_seconds, 1,
                                       peak=device_machine is None, score=t == 0)
                    row = _measure(device, folder, manifest, runtime, args, threads, warmup,
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
        row.update(status="skipped" if "runtime missing" in str(error) else "failed",
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


def _measure(device, folder, manifest, runtime, args, threads, warmup, iters, timeout, python,
             ssh_config, adb_binary) -> dict:
    _check_hashes(folder, manifest)
    args = args + (["--runtime", runtime] if runtime else [])
    if device.kind == "local":
        return run_local(folder, args, timeout, python)
    if device.kind == "ssh":
        return run_ssh(device, folder, args, timeout, python or "python3", ssh_config)
    if manifest["format"] != "tflite":
        raise RunError(f"{device}: adb runs .tflite builds only ({folder.name} is "
                       f"{manifest['format']})")
    row = run_adb(device, folder / manifest["model_file"], threads, warmup, iters, timeout,
                  **({"binary": adb_binary} if adb_binary else {}))
    return {**row, "format": "tflite", "precision": manifest["precision"],
            "top1": manifest.get("eval_top1"), "n": manifest.get("eval_n"),
            "accuracy_note": "benchmark_model times only; top-1 is the bundle's export-time "
                             "eval_top1 (LiteRT on the workstation)"}


def _check_hashes(folder: Path, manifest: dict) -> None:
    import hashlib
    for name, expected in manifest.get("sha256", {}).items():
        file = folder / name
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != expected:
            raise RunError(f"{file}: missing or its sha256 no longer matches the bundle "
                           "manifest; re-run 'edgetl export' or copy the bundle again")


def _torch_row_wanted(path, runtimes, target, device) -> bool:
    has_ckpt = (path / "train" / "model.safetensors").is_file()
    if target or device.kind != "local" or not has_ckpt:
        return False
    return runtimes is None or "torch" in runtimes


def _torch_row(path, bundles, threads, batch, warmup, iters, min_seconds, score=True) -> dict:
    """PyTorch eager fp32 baseline, timed the same way, on the same real images."""
    import torch

    from .checkpoint import load_checkpoint
    torch.set_num_threads(threads or torch.get_num_threads())
    model, spec, _ = load_checkpoint(path / "train" / "model.safetensors")
    model.eval()
    folder, manifest = next((f, m) for _, f, m in bundles if m["precision"] == "fp32"
                            and m["input"]["layout"] == "NCHW" and m["format"] != "tensorrt")
    data = np.load(folder / "eval.npz")
    to_x = lambda imgs: torch.from_numpy(bundle_runner.to_input(imgs, manifest))
    x = to_x(np.resize(data["images"], (batch,) + data["images"].shape[1:]))
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)
        first = (time.perf_counter() - t0) * 1000
        latency = bundle_runner.time_runs(lambda: model(x), warmup, iters, min_seconds, 1)
        preds = np.concatenate([model(to_x(data["images"][i:i + 64])).argmax(-1).numpy()
                                for i in range(0, len(data["images"]), 64)]) if score else None
    import resource
    return {"format": "pytorch", "precision": "fp32", "runtime": "torch",
            "runtime_version": torch.__version__, "provider": "eager CPU", "threads": threads,
            "batch": batch, "top1": None if preds is None else
            float((preds == data["labels"]).mean()), "n": len(data["labels"]),
            "top1_agreement": float((preds == data["reference"]).mean())
            if preds is not None and "reference" in data.files else None, "load_ms": None,
            "first_inference_ms": first, "latency_ms": latency,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "size_bytes": os.path.getsize(path / "train" / "model.safetensors"),
            "macs": manifest.get("macs"), "variant": ""}


def _machine(device, measured) -> dict:
    here = {"hostname": platform.node(), "platform": platform.platform(),
            "processor": _cpu_name(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    if device.kind == "local":
        return {**here, **(measured or {}), "device": "local", "processor": _cpu_name()}
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
