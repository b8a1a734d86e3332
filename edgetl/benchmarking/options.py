"""The bench's options as one validated dataclass (their help, ranges and defaults are the
command line's too), and the two small records they split into: how a trial is timed, and how
a device is reached."""
import os
from dataclasses import dataclass, replace

from ..core.errors import ConfigError
from ..core.options import check, option
from .stats import DEFAULT_STABLE_PCT

MIN_TRIALS = 5                    # rounds before a row's interval is trusted to stop early
MAX_TRIALS = 50
# --wait-idle's default where none is given: a shared runner that is never idle (a CI job
# beside others) sets it to 0 rather than waiting the full time before every trial.
WAIT_IDLE_ENV, WAIT_IDLE_SECONDS = "EDGETL_WAIT_IDLE", 10.0


@dataclass(frozen=True)
class BenchOptions:
    target: str | None = option(None, "profile (targets/NAME.toml or NAME): builds, runtimes, "
                                "threads, device and budgets; ends with a pass/fail verdict",
                                kind=str, unset="none: every build, no verdict")
    runtimes: str | None = option(None, "runtimes, comma-separated: onnxruntime, litert, "
                                  "tflite-runtime, executorch, tensorrt, torch, ...", kind=str,
                                  unset="every one installed")
    threads: int | None = option(None, "threads of the runtime", kind=int, low=1, high=1024,
                                 unset="the profile's, else all usable cores")
    batch: int = option(1, "images per inference", low=1, high=1024)
    warmup: int = option(10, "untimed runs before each trial", low=0)
    iters: int = option(100, "timed runs per trial (at least)", low=1)
    min_seconds: float = option(0.0, "...and at least this long per trial", low=0)
    trials: int | None = option(None, "exactly this many trials, interleaved across builds",
                                kind=int, low=1, high=1000,
                                unset=f"at least {MIN_TRIALS}, then more while they can make a "
                                      "p50 stable within --time-budget")
    stable_pct: float = option(DEFAULT_STABLE_PCT, "a p50 is stable once its 95%% interval is "
                               "within +- this many percent; wider rows are marked noisy",
                               low=("above", 0), high=100)
    time_budget: float = option(120.0, f"seconds of trials, at most (the first {MIN_TRIALS} "
                                "rounds always run); sooner once more rounds could neither "
                                "make a row stable nor settle a latency budget at its spread",
                                low=0)
    allow_inconclusive: bool = option(False, "a latency budget whose interval straddles it "
                                      "passes (default: it fails the target)")
    wait_idle: float | None = option(None, "seconds each trial may wait for the device to go "
                                     "idle (other processes under 10%% of a core) before "
                                     "timing", kind=float, low=0,
                                     unset=f"${WAIT_IDLE_ENV}, else {WAIT_IDLE_SECONDS:g}")
    sustained: float | None = option(None, "time one build continuously for this many seconds "
                                     "and report p50 per window (throttling shows as drift)",
                                     kind=float, low=("above", 0), unset="off")
    device: str | None = option(None, "local | ssh://user@host[:port] | adb[:serial] | "
                                "emulated:arm64", kind=str, unset="the profile's, else local")
    python: str | None = option(None, "Python that runs the bundle runner", kind=str,
                                unset="this one locally, the profile's or python3 over SSH")
    ssh_config: str | None = option(None, "ssh config file (identity, port, known_hosts)",
                                    kind=str, unset="ssh's own")
    adb_binary: str | None = option(None, "benchmark_model's path on an adb device", kind=str,
                                    unset="/data/local/tmp/benchmark_model")
    timeout: float = option(600.0, "seconds per build and trial", low=("above", 0))
    out: str | None = option(None, "report folder", kind=str,
                             unset="RUN/bench (RUN/bench/BUILD for one bundle of a run)")

    def validate(self) -> "BenchOptions":
        wait = self.wait_idle if self.wait_idle is not None else _default_wait_idle()
        return check(replace(self, wait_idle=wait))


def _default_wait_idle() -> float:
    value = os.environ.get(WAIT_IDLE_ENV)
    try:
        return WAIT_IDLE_SECONDS if value is None else float(value)
    except ValueError:
        raise ConfigError(f"{WAIT_IDLE_ENV}={value!r}: give seconds (0: never wait for an "
                          "idle device), or unset it") from None


@dataclass(frozen=True)
class Timing:
    """How each trial of a build is timed."""
    batch: int = 1
    warmup: int = 10
    iters: int = 100
    min_seconds: float = 0.0
    wait_idle: float = 0.0
    sustained: float = 0.0            # seconds of continuous running after the trial


@dataclass(frozen=True)
class DeviceSettings:
    """How a device is reached and bounded (a device class reads what applies to it)."""
    timeout: float = 600.0
    threads: int | None = None
    python: str | None = None             # the Python that runs the runner
    ssh_config: str | None = None
    adb_binary: str | None = None
    benchmark_model_flags: tuple = ()     # a profile's extra flags for benchmark_model
    emulated_cpu: str = ""                # qemu -cpu: the board's core
