"""Android phones over adb: TFLite's benchmark_model times the .tflite on the phone; its output
is parsed into the same row as the runner's. Everything that reaches the phone's shell is quoted."""
import re
import shlex
from pathlib import Path

from .. import bundle_runner
from ..core.errors import DeviceError, RunError
from ..exporting.formats import FORMATS
from .devices import Device, run_process

BENCHMARK_MODEL = "/data/local/tmp/benchmark_model"


def adb_steps(device: Device, model_file: Path, threads, warmup, iters, binary, extra=()):
    """The adb commands: push the model, run benchmark_model on it (one quoted shell line)."""
    adb = ["adb"] + (["-s", device.host] if device.host else [])
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_file.parent.name)
    remote = f"/data/local/tmp/edgetl_{safe}.tflite"
    shell = shlex.join([binary, f"--graph={remote}", f"--num_threads={threads or 1}",
                        f"--warmup_runs={warmup}", f"--num_runs={iters}", *extra])
    return [[*adb, "push", str(model_file), remote], [*adb, "shell", shell]]


def run_adb(device: Device, model_file: Path, threads, warmup, iters, timeout,
            binary=BENCHMARK_MODEL, extra=()) -> dict:
    """Push the .tflite and run benchmark_model through adb shell; parse its output, with the
    phone's state (load, thermal status, temperatures, battery) read just before."""
    push, run = adb_steps(device, model_file, threads, warmup, iters, binary, extra)
    _adb(device, push, timeout, binary)
    state = phone_state(device, timeout)          # just before the timed runs
    return {**parse_benchmark_model(_adb(device, run, timeout, binary)), "conditions": state}


def _adb(device: Device, cmd: list, timeout, binary: str) -> str:
    proc = run_process(cmd, timeout, f"{device}")
    out = proc.stdout + proc.stderr
    if proc.returncode or "not found" in out:
        raise DeviceError(f"{device}: {_adb_reason(out, binary)}")
    return out


STATE_SHELL = ("cat /proc/loadavg; dumpsys thermalservice 2>/dev/null; "
               "dumpsys battery 2>/dev/null")


def phone_state(device: Device, timeout) -> dict | None:
    """What the phone is doing, from its own shell (None when nothing could be read)."""
    adb = ["adb"] + (["-s", device.host] if device.host else [])
    try:
        proc = run_process([*adb, "shell", STATE_SHELL], min(timeout, 30), f"{device}")
    except DeviceError:
        return None
    return parse_phone_state(proc.stdout) or None


def parse_phone_state(text: str) -> dict:
    """/proc/loadavg, `dumpsys thermalservice` (Thermal Status, the HAL's current
    temperatures) and `dumpsys battery` (temperature in tenths of a degree)."""
    state = {}
    load = re.match(r"\s*([\d.]+) ([\d.]+) ([\d.]+) ", text)
    if load:
        state["loadavg"] = [float(v) for v in load.groups()]
    status = re.search(r"Thermal Status: (\d+)", text)
    if status:
        state["throttled"] = f"thermal status {status.group(1)} (0: none ... 6: shutdown)"
    current = text.split("Current temperatures from HAL:", 1)
    temps = re.findall(r"Temperature\{mValue=([-\d.]+), mType=-?\d+, mName=([^,]+),",
                       current[1] if len(current) > 1 else text)
    battery = re.search(r"^\s*temperature: (\d+)", text, re.M)
    if temps or battery:
        state["temperatures_c"] = {name: float(v) for v, name in temps}
        if battery:
            state["temperatures_c"]["battery"] = int(battery.group(1)) / 10
    return state


def _adb_reason(out: str, binary: str) -> str:
    if "no devices" in out or "not found" in out and "device" in out.split("not found")[0][-30:]:
        return "no device: connect it and check 'adb devices'"
    if "unauthorized" in out:
        return "device unauthorized: accept the USB debugging prompt on the phone"
    if binary in out and "not found" in out:
        return (f"{binary} missing on the device: download TFLite's benchmark_model for "
                "android_aarch64 and 'adb push' it there (chmod +x)")
    return (out.strip().splitlines() or ["adb failed"])[-1]


_NUM = r"([-+\d.eE]+)"


def parse_benchmark_model(text: str) -> dict:
    """Latency (ms) and memory from benchmark_model's output (old and new formats; lines may
    carry a logcat prefix like 'I tflite  : ')."""
    summary = re.search(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                        rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}", text)
    if not summary:
        raise DeviceError("benchmark_model output has no 'Inference timings' line; it failed: "
                          + (text.strip().splitlines() or ["no output"])[-1])
    init, first, _, avg = (float(v) / 1000 for v in summary.groups())
    runs = [m for m in re.finditer(r"count=(\d+) first=\S+ curr=\S+ min=(\S+) max=(\S+) "
                                   r"avg=(\S+) std=(\S+)(.*)", text)]
    latency = {"mean": avg}
    if runs:
        last = runs[-1]
        latency.update(runs=int(last.group(1)), min=float(last.group(2)) / 1000,
                       max=float(last.group(3)) / 1000, std=float(last.group(5)) / 1000)
        pct = dict(re.findall(r"(p5|median|p95)=(\S+)", last.group(6)))
        if "median" in pct:
            latency["p50"] = float(pct["median"]) / 1000
        if "p95" in pct:
            latency["p95"] = float(pct["p95"]) / 1000
    memory = re.search(r"(?:Peak memory footprint|Memory footprint delta from the start of "
                       rf"the tool) \(MB\): init={_NUM} overall={_NUM}", text)
    threads = re.search(r"Num threads: \[(\d+)\]", text)
    return {"provider": "benchmark_model (XNNPACK)", "load_ms": init, "first_inference_ms": first,
            "latency_ms": latency, "peak_rss_mb": float(memory.group(2)) if memory else None,
            "threads": int(threads.group(1)) if threads else None}


class AdbDevice(Device):
    """An Android phone: LiteRT's benchmark_model times the .tflite there. The bundle is
    checked here (no runner runs on the phone), and nothing scores it: the row's top-1 is
    unknown, and the host's export-time top-1 is kept apart, labelled."""
    measures_accuracy = False
    runs_runner = False

    def accepts(self, fmt) -> bool:
        return fmt.benchmark_model

    def run(self, folder, manifest, trial, how) -> dict:
        if not self.accepts(FORMATS[manifest["format"]]):
            raise DeviceError(f"{self}: benchmark_model runs LiteRT builds only ({folder.name} "
                              f"is {manifest['format']})")
        try:
            bundle_runner.verify(manifest, str(folder))
        except bundle_runner.BundleError as e:
            raise RunError(str(e)) from None
        t = trial.timing
        extra = [f"--min_secs={t.min_seconds:g}"] if t.min_seconds else []
        row = run_adb(self, folder / manifest["model_file"], how.threads, t.warmup, t.iters,
                      how.timeout, how.adb_binary or BENCHMARK_MODEL,
                      extra + list(how.benchmark_model_flags))
        return {**row, "format": manifest["format"], "precision": manifest["precision"],
                "runtime": "litert", "tool": "benchmark_model", "batch": 1,
                "top1": None, "n": None, "top1_agreement": None,
                "host_top1": manifest.get("eval_top1"), "host_n": manifest.get("eval_n"),
                "accuracy_note": "not measured on the phone (benchmark_model times only); "
                                 "host_top1 is LiteRT on the workstation at export"}

