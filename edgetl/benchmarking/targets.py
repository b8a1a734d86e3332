"""Target profiles (targets/*.toml): which builds run on a device, with which runtime and how
many threads, at what input size, how to reach the device, and the budgets a run must meet."""
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError
from ..core.names import check_number
from ..exporting.builds import Build
from ..exporting.formats import missing_package
from . import runtimes
from .devices import parse_device

SHIPPED = Path(__file__).resolve().parents[2] / "targets"        # source checkout / editable
PACKAGED = Path(__file__).resolve().parents[1] / "profiles"      # wheel installs
KEYS = {"name": str, "description": str, "device": str, "python": str, "img_size": int,
        "threads": int, "latency_budget_ms": (int, float), "min_top1": (int, float),
        "max_int8_drop": (int, float), "peak_fp32_gflops": (int, float),
        "peak_int8_gops": (int, float), "peak_source": str, "emulated_cpu": str,
        "benchmark_model_flags": list, "builds": list}
BUILD_KEYS = {"build": str, "runtime": str, "latency_budget_ms": (int, float),
              "min_top1": (int, float), "optional": bool}


@dataclass
class TargetBuild:
    build: str                      # bundle name in RUN/export, e.g. "tflite-int8"
    runtime: str
    latency_budget_ms: float
    min_top1: float
    optional: bool = False          # left out where its exporter is not installed

    @property
    def format(self) -> str:
        return self.build.split("-")[0]

    @property
    def precision(self) -> str:
        return self.build.split("-")[1]


@dataclass
class Target:
    name: str
    path: str
    device: str = "local"
    python: str = "python3"
    img_size: int = 224
    threads: int = 1
    description: str = ""
    max_int8_drop: float | None = None   # the export's int8 budget for this device (points)
    peak_fp32_gflops: float | None = None  # published peaks: the predicted floor of rows
    peak_int8_gops: float | None = None    # measured on an emulated CPU
    peak_source: str = ""
    emulated_cpu: str = ""                 # qemu -cpu of an emulated device: the board's core
    benchmark_model_flags: tuple = ()      # extra flags for benchmark_model on an adb device
    builds: list = field(default_factory=list)
    left_out: list = field(default_factory=list)   # (optional build, the pip install it needs)

    @property
    def formats(self) -> str:
        return ",".join(dict.fromkeys(b.format for b in self.builds))

    @property
    def precisions(self) -> str:
        return ",".join(dict.fromkeys(b.precision for b in self.builds))


def available() -> list:
    folder = SHIPPED if SHIPPED.is_dir() else PACKAGED
    return sorted(p.stem for p in folder.glob("*.toml"))


def resolve(name_or_path) -> Path:
    """A profile file, or the name of a shipped one ("raspberry-pi-5")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path(".") or path.suffix == ".toml":     # a name, or a shipped file's
        for folder in (SHIPPED, PACKAGED):
            if (folder / f"{path.stem}.toml").is_file():
                return folder / f"{path.stem}.toml"
    raise ConfigError(f"unknown target '{name_or_path}': give a profile file or one of "
                      f"{', '.join(available())}")


def load_target(name_or_path) -> Target:
    path = resolve(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the file") from None
    _check_keys(raw, KEYS, path, "")
    for key in ("name", "latency_budget_ms", "min_top1", "builds"):
        if key not in raw:
            raise ConfigError(f"{path}: missing '{key}' (see targets/README.md)")
    if not raw["builds"]:
        raise ConfigError(f"{path}: 'builds' is empty; list at least one [[builds]] entry")
    target = Target(name=raw["name"], path=str(path), device=raw.get("device", "local"),
                    python=raw.get("python", "python3"), img_size=raw.get("img_size", 224),
                    threads=raw.get("threads", 1), description=raw.get("description", ""),
                    max_int8_drop=raw.get("max_int8_drop"),
                    peak_fp32_gflops=raw.get("peak_fp32_gflops"),
                    peak_int8_gops=raw.get("peak_int8_gops"),
                    peak_source=raw.get("peak_source", ""),
                    emulated_cpu=raw.get("emulated_cpu", ""),
                    benchmark_model_flags=tuple(raw.get("benchmark_model_flags", ())))
    bad = [f for f in target.benchmark_model_flags
           if not isinstance(f, str) or not f.startswith("--") or any(c.isspace() for c in f)]
    if bad:
        raise ConfigError(f"{path}: benchmark_model_flags {bad[0]!r}: each flag is one "
                          "'--name=value' string")
    check_number("img_size", target.img_size, int, 32, 2048, where=str(path))
    check_number("threads", target.threads, int, 1, 1024, where=str(path))
    for key, high in (("max_int8_drop", 100), ("peak_fp32_gflops", 1e6), ("peak_int8_gops", 1e6)):
        if getattr(target, key) is not None:
            check_number(key, getattr(target, key), float, 0, high, key != "max_int8_drop",
                         str(path))
    builds = [_build(b, raw, path, i) for i, b in enumerate(raw["builds"])]
    needs = {b.build: missing_package(b.format) for b in builds if b.optional}
    target.left_out = [(b, needs[b.build]) for b in builds if needs.get(b.build)]
    target.builds = [b for b in builds if not needs.get(b.build)]
    parse_device(target.device, where=f"{path}: 'device'")
    return target


def _build(entry, raw, path, i) -> TargetBuild:
    where = f"builds[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a table ([[builds]])")
    _check_keys(entry, BUILD_KEYS, path, where + ".")
    if "build" not in entry or "runtime" not in entry:
        raise ConfigError(f"{path}: {where} needs 'build' and 'runtime'")
    build = TargetBuild(entry["build"], entry["runtime"],
                        float(entry.get("latency_budget_ms", raw["latency_budget_ms"])),
                        float(entry.get("min_top1", raw["min_top1"])),
                        entry.get("optional", False))
    parsed = Build.parse(build.build)
    if parsed is None:
        raise ConfigError(f"{path}: {where}.build '{build.build}' is not a build name "
                          "(format-precision[-variant], e.g. tflite-int8, onnx-fp32)")
    if build.runtime not in runtimes.for_format(parsed.format):
        raise ConfigError(f"{path}: {where}.runtime '{build.runtime}' cannot run "
                          f"{parsed.format}; use one of "
                          f"{', '.join(runtimes.for_format(parsed.format))}")
    check_number(f"{where}.latency_budget_ms", build.latency_budget_ms, float, 0, None, True,
                 str(path))
    check_number(f"{where}.min_top1", build.min_top1, float, 0, 1, where=str(path))
    return build


def _check_keys(table: dict, allowed: dict, path, prefix: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{path}: unknown key '{prefix}{key}'; allowed: "
                              f"{', '.join(allowed)}")
        kind = allowed[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            want = kind.__name__ if isinstance(kind, type) else "number"
            raise ConfigError(f"{path}: '{prefix}{key}' must be a {want} (got {value!r})")
