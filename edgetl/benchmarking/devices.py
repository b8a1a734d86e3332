"""Where a bundle's runner executes: this machine, a device over SSH (Jetson, Raspberry Pi), a
phone over adb (TFLite's benchmark_model), or an emulated ARM userland (qemu). This module parses
device strings and runs the runner here; ssh.py, adb.py and emulated.py reach the others."""
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..bundle_runner import BENCH_FLAGS, EXIT_BUNDLE_ERROR, EXIT_RUNTIME_MISSING
from ..core.errors import ConfigError, DeviceError, RuntimeUnavailable

RUNNER = Path(__file__).resolve().parent.parent / "bundle_runner.py"
EMULATED_ARCHES = ("arm64",)


class Device:
    """Where a bundle's runner executes. Each kind answers the same questions: which formats
    it takes, whether its timings and its accuracy are the device's own, how a bundle runs
    there (`run`), and what its machine is. `parse_device` builds one from a device string."""
    is_local = False              # this machine: default threads, the PyTorch baseline row
    measures_latency = True       # an emulated CPU's timings say nothing about the board
    measures_accuracy = True      # benchmark_model (adb) times only
    runs_runner = True            # edgetl's runner runs there (adb: benchmark_model instead)
    uses_profile_python = False   # SSH devices run the profile's Python

    def __init__(self, spec: str, host: str = "", port: int | None = None):
        self.spec, self.host, self.port = spec, host, port

    def __str__(self):
        return self.spec

    def accepts(self, fmt) -> bool:
        """Whether builds of this Format (exporting.formats) can run here at all."""
        return True

    def run(self, folder: Path, manifest: dict, trial, how) -> dict:
        """One trial (a Trial: runtime, timing, peak, score) of the bundle in `folder`; its
        result row. `how`: benchmarking.options.DeviceSettings."""
        raise NotImplementedError

    def machine(self, measured: dict, here: dict) -> dict:
        """The report's machine block: the device's own facts, then this host's."""
        return {"device": str(self), **(measured or {}), "host": here}

    def probe(self, how, runtimes=()) -> dict:
        """What the device offers a bundle (the runner's --probe, run there as a bundle is), for
        `runtimes` (default: every runtime the runner knows)."""
        import tempfile
        with tempfile.TemporaryDirectory() as empty:
            return self.run_runner(Path(empty), [f"--probe={','.join(runtimes)}"], how)

    def run_runner(self, folder: Path, args: list, how) -> dict:
        raise NotImplementedError


class LocalDevice(Device):
    is_local = True

    def run(self, folder, manifest, trial, how) -> dict:
        return self.run_runner(folder, runner_args(trial, how.threads), how)

    def run_runner(self, folder, args, how) -> dict:
        return run_local(folder, args, how.timeout, how.python, how.threads)

    def machine(self, measured, here) -> dict:
        return {**here, **(measured or {}), "device": "local"}


def parse_device(spec: str, where: str = "--device") -> Device:
    """'local', 'ssh://user@host[:port]', 'adb[:serial]' or 'emulated:arm64'."""
    if spec in ("local", "", None):
        return LocalDevice("local")
    if spec.startswith("ssh://"):
        return _ssh_device(spec, where)
    if spec == "adb" or spec.startswith("adb:"):
        from .adb import AdbDevice
        serial = spec[4:]
        if serial.startswith("-") or any(c.isspace() for c in serial):
            raise ConfigError(f"{where} '{spec}': an adb serial has no spaces and does not start "
                              "with '-' (see 'adb devices')")
        return AdbDevice(spec, serial)
    if spec.startswith("emulated:"):
        from .emulated import EmulatedDevice
        arch = spec.split(":", 1)[1]
        if arch not in EMULATED_ARCHES:
            raise ConfigError(f"{where} '{spec}': emulated devices: "
                              f"{', '.join('emulated:' + a for a in EMULATED_ARCHES)}")
        return EmulatedDevice(spec, arch)
    raise ConfigError(f"{where} '{spec}' is not a device: use local, ssh://user@host[:port], "
                      "adb[:serial] or emulated:arm64")


def _ssh_device(spec: str, where: str) -> Device:
    url = urlparse(spec)
    try:
        port = url.port
    except ValueError:
        raise ConfigError(f"{where} '{spec}': the port must be a number from 1 to 65535") \
            from None
    if url.password is not None:
        raise ConfigError(f"{where} 'ssh://{url.username}:***@{url.hostname}': edgetl never "
                          "sends passwords (ssh runs in BatchMode): install your key on the "
                          "device (ssh-copy-id) and drop the password from the device string")
    host = url.hostname or ""
    if not host or host.startswith("-") or (url.username or "").startswith("-"):
        raise ConfigError(f"{where} '{spec}': write ssh://user@host[:port] (a host name that "
                          "does not start with '-')")
    from .ssh import SSHDevice
    user = f"{url.username}@" if url.username else ""
    return SSHDevice(spec, f"{user}{host}", port)


@dataclass(frozen=True)
class Trial:
    """What one trial of one build asks of a device."""
    runtime: str | None
    timing: object                 # benchmarking.options.Timing
    peak: bool = False             # also probe the GEMM peak (a round's first trial)
    score: bool = True             # also score the bundle's images (first trial)


def runner_args(trial: Trial, threads) -> list:
    """A trial's command line for the runner, spelled by the runner's own table."""
    t = trial.timing
    values = {"runtime": trial.runtime, "threads": threads, "batch": t.batch,
              "warmup": t.warmup, "iters": t.iters, "min_seconds": t.min_seconds, "trials": 1,
              "wait_idle": t.wait_idle, "sustained": t.sustained or None}
    args = ["--bench"]
    for name, _, _, _ in BENCH_FLAGS:
        if values.get(name) is not None:
            args += ["--" + name.replace("_", "-"), str(values[name])]
    return args + (["--peak"] if trial.peak else []) + ([] if trial.score else ["--no-score"])


def thread_env(threads) -> dict:
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS")} if threads else {}


def run_process(cmd: list, timeout: float, where: str, stdin: bytes = None, hung: str = None,
                **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; on timeout (or an interrupt) the whole group is
    killed, so nothing it started keeps running here."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, **kwargs)
    except OSError as e:                  # no such program, not executable, no memory, ...
        raise DeviceError(f"{where}: cannot start '{cmd[0]}' ({e.strerror or e}): install it "
                          "or put it on PATH") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise DeviceError(f"{where}: " + (hung or f"no answer within {timeout:g} s (runner hung "
                          "or device unreachable); raise --timeout or check the device")) from None
    except BaseException:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def run_local(folder: Path, args: list, timeout: float, python: str | None = None,
              threads=None) -> dict:
    """This edgetl's bundle runner (the code every bundle carries as run.py, so bundles made by
    an older edgetl are measured the same way) in a fresh process: its own memory, threads
    and CPU pinning."""
    cmd = [python or sys.executable, str(RUNNER), "--bundle", str(Path(folder).resolve()), *args]
    proc = run_process(cmd, timeout, f"{folder} (local)", cwd=folder,
                       env={**os.environ, **thread_env(threads)},
                       hung=f"runner did not finish within {timeout:g} s; raise --timeout or "
                            "lower --iters")
    return runner_result(proc, f"{folder} (local)")


def runner_result(proc, where: str) -> dict:
    """The runner's JSON line, or one error line saying why there is none."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    if proc.returncode == EXIT_RUNTIME_MISSING:
        raise RuntimeUnavailable(f"{where}: {tail}")
    if proc.returncode == EXIT_BUNDLE_ERROR:
        raise DeviceError(f"{where}: {tail.removeprefix('bundle error: ')}")
    if proc.returncode != 0 or not lines:
        if "No module named" in tail:
            tail += " (install numpy and the runtime into the Python that runs the bundle)"
        raise DeviceError(f"{where}: runner failed: {tail}")
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise DeviceError(f"{where}: runner printed no valid result: {lines[-1][:80]}") from None
