"""Android phones over adb: the format's own timing binary runs on the phone (TFLite's
benchmark_model for .tflite, ExecuTorch's executor_runner built with XNNPACK for .pte); its output
is parsed into the same row as the runner's. Everything that reaches the phone's shell is quoted."""
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import bundle_runner
from ..core.errors import DeviceError, RunError
from ..exporting.formats import FORMATS
from .devices import Device, run_process

BENCHMARK_MODEL = "/data/local/tmp/benchmark_model"
EXECUTOR_RUNNER = "/data/local/tmp/executor_runner"


def _benchmark_model_argv(binary, remote, threads, warmup, iters, extra) -> list:
    return [binary, f"--graph={remote}", f"--num_threads={threads or 1}",
            f"--warmup_runs={warmup}", f"--num_runs={iters}", *extra]


def _executor_runner_argv(binary, remote, threads, warmup, iters, extra) -> list:
    """executor_runner has no warm-up flag: it runs warmup + iters times, and the parser
    leaves the first `warmup` iterations out."""
    return [binary, f"--model_path={remote}", f"--cpu_threads={threads or 1}",
            f"--num_executions={warmup + iters}", "--print_output=none", *extra]


@dataclass(frozen=True)
class PhoneTool:
    runtime: str                  # the row's runtime: what the tool links
    binary: str                   # where it lives on the phone unless --adb-binary says
    argv: Callable                # (binary, remote file, threads, warmup, iters, extra) -> argv
    parse: Callable               # (output, warmup) -> the row's measured fields
    fetch: str                    # where to get it, for the one line when it is missing
    min_seconds_flag: str = ""    # its flag for a minimum timed duration, if it has one


def run_adb(device: Device, model_file: Path, tool: PhoneTool, timing: tuple, timeout,
            binary=None, extra=()) -> dict:
    """Push the model and run the tool on it through adb shell (one quoted line); parse its
    output, with the phone's state (load, thermal status, temperatures, battery) read just
    before. `timing`: (threads, warmup, iters)."""
    threads, warmup, iters = timing
    binary = binary or tool.binary
    adb = ["adb"] + (["-s", device.host] if device.host else [])
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_file.parent.name)
    remote = f"/data/local/tmp/edgetl_{safe}{model_file.suffix}"
    _adb(device, [*adb, "push", str(model_file), remote], timeout, binary, tool)
    state = phone_state(device, timeout)          # just before the timed runs
    shell = shlex.join(tool.argv(binary, remote, threads, warmup, iters, extra))
    out = _adb(device, [*adb, "shell", shell], timeout, binary, tool)
    return {**tool.parse(out, warmup), "conditions": state}


def _adb(device: Device, cmd: list, timeout, binary: str, tool: PhoneTool) -> str:
    proc = run_process(cmd, timeout, f"{device}")
    out = proc.stdout + proc.stderr
    if proc.returncode or "not found" in out:
        raise DeviceError(f"{device}: {_adb_reason(out, binary, tool.fetch)}")
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


def _adb_reason(out: str, binary: str, fetch: str) -> str:
    if "no devices" in out or "not found" in out and "device" in out.split("not found")[0][-30:]:
        return "no device: connect it and check 'adb devices'"
    if "unauthorized" in out:
        return "device unauthorized: accept the USB debugging prompt on the phone"
    if binary in out and "not found" in out:
        return f"{binary} missing on the device: {fetch}, 'adb push' it there (chmod +x)"
    return (out.strip().splitlines() or ["adb failed"])[-1]


_NUM = r"([-+\d.eE]+)"


def parse_benchmark_model(text: str, warmup: int = 0) -> dict:
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


def parse_executor_runner(text: str, warmup: int = 0) -> dict:
    """Latency (ms) from executor_runner's log (ExecuTorch 1.x: 'Model loaded in X ms.', one
    'Iteration i of N: X ms' line per execution, 'Model executed successfully N time(s) in X
    ms.'; lines carry a log prefix). The first `warmup` iterations are left out; a runner that
    logs only the total gives its mean over every execution, warm-up included."""
    done = re.search(rf"Model executed successfully (\d+) time\(s\) in {_NUM} ms", text)
    if not done:
        raise DeviceError("executor_runner output has no 'Model executed successfully N "
                          "time(s) in X ms' line (it failed, or is a runner too old to time): "
                          + (text.strip().splitlines() or ["no output"])[-1])
    times = [float(v) for v in re.findall(rf"Iteration \d+ of \d+: {_NUM} ms", text)]
    load = re.search(rf"Model loaded in {_NUM} ms", text)
    threads = re.search(r"Resetting threadpool with num threads = (\d+)", text)
    timed = times[warmup:] if len(times) > warmup else []
    if timed:
        q = lambda p: float(np.percentile(timed, p))
        latency = {"mean": float(np.mean(timed)), "p50": q(50), "p90": q(90), "p99": q(99),
                   "min": min(timed), "max": max(timed), "std": float(np.std(timed)),
                   "runs": len(timed)}
    else:
        latency = {"mean": float(done.group(2)) / int(done.group(1)),
                   "runs": int(done.group(1)), "note": "total only: warm-up included"}
    return {"provider": "executor_runner (XNNPACK)",
            "load_ms": float(load.group(1)) if load else None,
            "first_inference_ms": times[0] if times else None, "latency_ms": latency,
            "peak_rss_mb": None, "threads": int(threads.group(1)) if threads else None}


# The timing binaries, by the name a format's entry gives (formats.py: phone_tool).
PHONE_TOOLS = {
    "benchmark_model": PhoneTool("litert", BENCHMARK_MODEL, _benchmark_model_argv,
                                 parse_benchmark_model, "download TFLite's benchmark_model for "
                                 "android_aarch64", "--min_secs={:g}"),
    "executor_runner": PhoneTool("executorch", EXECUTOR_RUNNER, _executor_runner_argv,
                                 parse_executor_runner, "build ExecuTorch's executor_runner "
                                 "with XNNPACK for arm64-v8a (backends/xnnpack's "
                                 "xnn_executor_runner; see the README)"),
}


class AdbDevice(Device):
    """An Android phone: the format's timing binary times the model there. The bundle is
    checked here (no runner runs on the phone), and nothing scores it: the row's top-1 is
    unknown, and the host's export-time top-1 is kept apart, labelled."""
    measures_accuracy = False
    runs_runner = False

    def accepts(self, fmt) -> bool:
        return fmt.phone_tool in PHONE_TOOLS

    def probe(self, how, runtimes=()) -> dict:
        """Whether the phone answers and which timing tools are on it (executable, at their
        default places)."""
        adb = ["adb"] + (["-s", self.host] if self.host else [])
        tools = {name: t.binary for name, t in PHONE_TOOLS.items()}
        shell = "; ".join(f"[ -x {shlex.quote(b)} ] && echo {n}=yes || echo {n}=no"
                          for n, b in tools.items())
        out = _adb(self, [*adb, "shell", shell], min(how.timeout, 30), "", PHONE_TOOLS[
            next(iter(PHONE_TOOLS))])
        have = dict(re.findall(r"(\w+)=(yes|no)", out))
        return {"probe": 1, "machine": "android", "timeout": None, "cuda_devices": 0,
                "python": None, "numpy": None, "runtimes": {
                    PHONE_TOOLS[n].runtime: (n if have.get(n) == "yes" else None)
                    for n in tools}, "install": {
                    t.runtime: f"{t.fetch}, adb push it to {t.binary} and chmod +x it"
                    for t in PHONE_TOOLS.values()}}

    def run(self, folder, manifest, trial, how) -> dict:
        fmt = FORMATS[manifest["format"]]
        if not self.accepts(fmt):
            raise DeviceError(f"{self}: no phone tool times {manifest['format']} builds "
                              f"({folder.name}); phones run "
                              f"{', '.join(f.name for f in FORMATS.values() if self.accepts(f))}")
        try:
            bundle_runner.verify(manifest, str(folder))
        except bundle_runner.BundleError as e:
            raise RunError(str(e)) from None
        t, tool = trial.timing, PHONE_TOOLS[fmt.phone_tool]
        extra = [tool.min_seconds_flag.format(t.min_seconds)] if t.min_seconds and \
            tool.min_seconds_flag else []
        row = run_adb(self, folder / manifest["model_file"], tool,
                      (how.threads, t.warmup, t.iters), how.timeout, how.adb_binary,
                      extra + list(how.benchmark_model_flags))
        return {**row, "format": manifest["format"], "precision": manifest["precision"],
                "runtime": tool.runtime, "tool": fmt.phone_tool, "batch": 1,
                "top1": None, "n": None, "top1_agreement": None,
                "host_top1": manifest.get("eval_top1"), "host_n": manifest.get("eval_n"),
                "accuracy_note": f"not measured on the phone ({fmt.phone_tool} times only); "
                                 f"host_top1 is {tool.runtime} on the workstation at export"}

