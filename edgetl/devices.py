"""Where a bundle's runner executes: this machine, a device over SSH (Jetson, Raspberry Pi) or a
phone over adb (TFLite's benchmark_model). Each returns the runner's JSON result as a dict."""
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .bundle_runner import EXIT_RUNTIME_MISSING
from .errors import ConfigError, RunError, RuntimeUnavailable

SSH_ERRORS = [  # (stderr fragment, what it means and what to do)
    ("Host key verification failed", "unknown or changed host key: connect once with "
     "'ssh {host}' to check and accept it (or add it to known_hosts)"),
    ("No ED25519 host key is known", "unknown host key: connect once with 'ssh {host}'"),
    ("Permission denied", "authentication refused: install your public key on the device "
     "(ssh-copy-id {host}) or name the key in ~/.ssh/config"),
    ("Connection refused", "connection refused: is sshd running on the device, and the port "
     "right?"),
    ("Could not resolve hostname", "unknown host name: check the address"),
    ("timed out", "device unreachable (timed out): check the address and network"),
    ("No route to host", "device unreachable: check the address and network"),
]


@dataclass
class Device:
    kind: str                       # "local", "ssh" or "adb"
    spec: str
    host: str = ""                  # ssh: [user@]host ; adb: serial
    port: int | None = None

    def __str__(self):
        return self.spec


def parse_device(spec: str, where: str = "--device") -> Device:
    """'local', 'ssh://user@host[:port]' or 'adb[:serial]'."""
    if spec in ("local", "", None):
        return Device("local", "local")
    if spec.startswith("ssh://"):
        url = urlparse(spec)
        if not url.hostname:
            raise ConfigError(f"{where} '{spec}': write ssh://user@host[:port]")
        user = f"{url.username}@" if url.username else ""
        return Device("ssh", spec, f"{user}{url.hostname}", url.port)
    if spec == "adb" or spec.startswith("adb:"):
        return Device("adb", spec, spec[4:])
    raise ConfigError(f"{where} '{spec}' is not a device: use local, ssh://user@host[:port] "
                      "or adb[:serial]")


def runner_args(runtime, threads, batch, warmup, iters, min_seconds, trials, peak=True,
                score=True) -> list:
    args = ["--bench", "--batch", str(batch), "--warmup", str(warmup), "--iters", str(iters),
            "--min-seconds", str(min_seconds), "--trials", str(trials)]
    args += ["--peak"] if peak else []
    args += [] if score else ["--no-score"]
    if runtime:
        args += ["--runtime", runtime]
    if threads:
        args += ["--threads", str(threads)]
    return args


def thread_env(threads) -> dict:
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS")} if threads else {}


RUNNER = Path(__file__).resolve().with_name("bundle_runner.py")


def run_local(folder: Path, args: list, timeout: float, python: str | None = None,
              threads=None) -> dict:
    """This edgetl's bundle runner (the code every bundle carries as run.py, so bundles made by
    an older edgetl are measured the same way) in a fresh process: its own memory, threads
    and CPU pinning."""
    cmd = [python or sys.executable, str(RUNNER), "--bundle", str(Path(folder).resolve()), *args]
    env = {**os.environ, **thread_env(threads)}
    try:
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        raise RunError(f"{folder}: runner did not finish within {timeout:.0f} s; raise "
                       "--timeout or lower --iters") from None
    except FileNotFoundError:
        raise RunError(f"python '{cmd[0]}' not found; give a Python that exists") from None
    return _result(proc, f"{folder} (local)")


def _result(proc, where: str) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == EXIT_RUNTIME_MISSING:
        raise RuntimeUnavailable(f"{where}: {proc.stderr.strip().splitlines()[-1]}")
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        if "No module named" in tail:
            tail += " (install numpy and the runtime into the Python that runs the bundle)"
        raise RunError(f"{where}: runner failed: {tail}")
    return json.loads(lines[-1])


def _ssh(device, remote_cmd: str, timeout, ssh_config=None, stdin: bytes = b""):
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, min(int(timeout), 15))}"]
    cmd += ["-F", str(ssh_config)] if ssh_config else []
    cmd += ["-p", str(device.port)] if device.port else []
    try:
        proc = subprocess.run(cmd + [device.host, remote_cmd], input=stdin, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"{device}: no answer within {timeout:g} s (runner hung or device "
                       "unreachable); raise --timeout or check the device") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def _ssh_error(device, proc) -> RunError:
    text = proc.stderr.strip()
    for fragment, meaning in SSH_ERRORS:
        if fragment in text:
            return RunError(f"{device}: {meaning.format(host=device.host)}")
    return RunError(f"{device}: ssh failed: {(text.splitlines() or ['exit 255'])[-1]}")


def _tar(folder: Path) -> bytes:
    """The bundle's files, its run.py replaced by this edgetl's runner (the same code)."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.name != "run.py":
                tar.add(f, arcname=f.name)
        tar.add(RUNNER, arcname="run.py")
    return buf.getvalue()


def run_ssh(device: Device, folder: Path, args: list, timeout: float, python="python3",
            ssh_config=None, threads=None) -> dict:
    """Stream the bundle (tar over the SSH connection: no scp/sftp needed) into a temporary
    folder on the device, run its run.py there with the device's own Python and runtime,
    print the JSON back, remove the folder; one connection."""
    env = " ".join(f"{k}={v}" for k, v in thread_env(threads).items())
    py = shlex.quote(python)
    script = (f"command -v {py} >/dev/null || exit 127; d=$(mktemp -d) || exit 1; "
              "trap 'rm -rf \"$d\"' EXIT; tar -xf - -C \"$d\" && cd \"$d\" && "
              f"{env} {py} run.py {shlex.join(args)}")
    proc = _ssh(device, script, timeout, ssh_config, stdin=_tar(folder))
    if proc.returncode == 255:
        raise _ssh_error(device, proc)
    if proc.returncode == 127:
        raise RunError(f"{device}: no '{python}' on the device; install Python 3 there or set "
                       "'python' in the target profile")
    return _result(proc, f"{device}")


# --- adb: TFLite's benchmark_model on an Android phone -------------------------------------

BENCHMARK_MODEL = "/data/local/tmp/benchmark_model"


def run_adb(device: Device, model_file: Path, threads, warmup, iters, timeout,
            binary=BENCHMARK_MODEL, extra=()) -> dict:
    """Push the .tflite and run benchmark_model through adb shell; parse its output."""
    adb = ["adb"] + (["-s", device.host] if device.host else [])
    remote = f"/data/local/tmp/edgetl_{model_file.parent.name}.tflite"
    steps = [[*adb, "push", str(model_file), remote],
             [*adb, "shell", f"{binary} --graph={remote} --num_threads={threads or 1} "
              f"--warmup_runs={warmup} --num_runs={iters} {' '.join(extra)}"]]
    out = ""
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise RunError("adb not found: install Android platform-tools and put adb on "
                           "PATH") from None
        except subprocess.TimeoutExpired:
            raise RunError(f"{device}: '{cmd[-1]}' took over {timeout:.0f} s") from None
        out = proc.stdout + proc.stderr
        if proc.returncode or "not found" in out:
            raise RunError(f"{device}: {_adb_reason(out, binary)}")
    return parse_benchmark_model(out)


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
        raise RunError("benchmark_model output has no 'Inference timings' line; it failed: "
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
