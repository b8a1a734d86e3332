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
RESULTS = HERE / "results"
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "clothing-small"


def data_path(argv_value=None) -> Path:
    path = Path(argv_value or os.environ.get("EDGETL_BENCH_DATA", DEFAULT_DATA))
    if not path.is_dir():
        sys.exit(f"benchmark data {path} not found: pass --data or set EDGETL_BENCH_DATA")
    return path


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def timed_cli(args: list) -> tuple:
    """Run `edgetl ARGS` in a fresh process; (wall seconds, exit code)."""
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "edgetl", *args])
    return time.time() - t0, rc


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"machine": machine(), "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return path
