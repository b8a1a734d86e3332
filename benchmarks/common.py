"""Shared helpers for benchmark scripts: where the data is, machine facts, saving raw results."""
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CODE = HERE.parent                       # the checkout these scripts measure
RESULTS = HERE / "results"
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "clothing-small"
LOAD_AT_START = os.getloadavg()          # the machine's load when the script began


def data_path(argv_value=None) -> Path:
    path = Path(argv_value or os.environ.get("EDGETL_BENCH_DATA", DEFAULT_DATA))
    if not path.is_dir():
        sys.exit(f"benchmark data {path} not found: pass --data or set EDGETL_BENCH_DATA")
    return path


def cpu_info() -> dict:
    """The CPU's name and SIMD flags: int8 speed depends on them."""
    text = Path("/proc/cpuinfo").read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    simd = sorted({f for f in flags if f.startswith(("avx", "amx", "sse4", "fma"))})
    return {"name": name, "simd_flags": simd, "vnni": "avx512_vnni" in flags or
            "avx_vnni" in flags, "usable_cpus": len(os.sched_getaffinity(0))}


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "cpu": cpu_info(), "loadavg_at_start": list(LOAD_AT_START),
            "loadavg_at_end": list(os.getloadavg())}


def commit(code: Path) -> str:
    """The checkout's commit, '+ uncommitted changes' when edgetl/ differs from it."""
    got = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "edgetl"],
                           capture_output=True, text=True).stdout.strip()
    return (got.stdout.strip() or "unknown (not a git checkout)") + \
        (" + uncommitted changes to edgetl/" if dirty else "")


def timed_cli(args: list) -> tuple:
    """Run `edgetl ARGS` in a fresh process; (wall seconds, exit code)."""
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "edgetl", *args])
    return time.time() - t0, rc


HISTORY = HERE / "history"
CODE_KEYS = ("after_commit", "commit", "code")   # where a result names the code it measured
# SIMD flag -> the name a superseded result's CPU gets in history/, the first present wins
CPU_KINDS = {"amx_tile": "amx", "avx512_vnni": "vnni", "avx2": "avx2"}


def archive(path: Path) -> Path:
    """Move an earlier results/NAME.json to history/NAME_<vendor>_<isa>_<commit>.json before
    a re-run overwrites it (its CPU and code from the file itself); None if there is none."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    cpu = old.get("machine", {}).get("cpu", {})
    vendor = next((v for v in ("intel", "amd", "arm") if v in cpu.get("name", "").lower()),
                  "cpu")
    isa = next((k for f, k in CPU_KINDS.items() if f in cpu.get("simd_flags", [])), "other")
    code = next((old[k] for k in CODE_KEYS if old.get(k)), None)
    when = old.get("recorded", "undated").replace(":", "")      # results without their code
    stem = f"{path.stem}_{vendor}_{isa}_{code.split()[0] if code else when}"
    target = HISTORY / f"{stem}.json"
    if target.exists():                          # the same code re-run on the same CPU kind
        target = HISTORY / f"{stem}_{when}.json"
    HISTORY.mkdir(exist_ok=True)
    path.rename(target)
    print(f"kept the earlier result as {target}")
    return target


def save(name: str, result: dict) -> Path:
    """Write results/NAME.json, with the code it measured unless `result` names it; an earlier
    one moves to history/ first (`archive`)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    archive(path)
    named = any(k in result for k in CODE_KEYS)
    result = {"machine": machine(), "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"),
              **({} if named else {"code": commit(CODE)}), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return path


def step_timing_args(steps: int):
    """--rounds and --steps of a step profile (alternating rounds of `steps` timed calls)."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=steps)
    return ap.parse_args()


def seconds_per_call(fn, n: int, warmup: int) -> float:
    """Mean wall seconds of `fn()` over `n` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def op_shares(fn, calls: int, top: int) -> dict:
    """The top operators' shares of the CPU time of `calls` calls of `fn` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    return {e.key: round(e.self_cpu_time_total / total, 3) for e in ops[:top]}


def runtime_python(name: str, packages: list) -> Path:
    """A venv of its own holding only `packages` (e.g. tflite-runtime 2.14, as a Pi has it),
    made once under runs/venvs/NAME; returns its python."""
    import venv
    folder = (Path("runs/venvs") / name).resolve()      # callers run it from bundle folders
    py = folder / "bin" / "python"
    if not py.exists():
        venv.EnvBuilder(with_pip=True).create(folder)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *packages], check=True)
    return py


def held_out_predictions(python, bundle: Path, files: list, runtime: str = None) -> list:
    """Class indices a bundle's own run.py gives for image files, run by `python`."""
    args = [str(python), "run.py", *(["--runtime", runtime] if runtime else []), *files]
    out = subprocess.run(args, cwd=bundle, capture_output=True, text=True, check=True)
    return [p["index"] for p in json.loads(out.stdout)["predictions"]]


def exported_run(run) -> tuple:
    """(layout, fp32 model, spec, the int8 graph its export shipped, the held-out images) of
    an exported run folder."""
    from edgetl.core.layout import RunLayout
    from edgetl.exporting.bundle import eval_images
    from edgetl.models.checkpoint import load_checkpoint
    from edgetl.quantizing.graph import load_graph
    from edgetl.training.data import load_split
    layout = RunLayout(run)
    model, spec, _ = load_checkpoint(layout.train.checkpoint)
    graph = load_graph(layout.export.int8_graph, model, spec)
    splits = load_split(layout.train.split)
    images, _ = eval_images(splits.test or splits.val, spec)
    return layout, model, spec, graph, images
