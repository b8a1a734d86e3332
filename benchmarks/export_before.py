"""The 'before' of int8_speed.py: RUN's checkpoint exported by the earlier code (main at bfdfafe),
into a run folder of its own. Run it with that code first on the path:
  git worktree add /tmp/old bfdfafe
  PYTHONPATH=/tmp/old python benchmarks/export_before.py runs/bench-clothing-run runs/before
"""
import json
import os
import shutil
import sys
from pathlib import Path

import edgetl


def main():
    run, before = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    if not (Path(edgetl.__file__).parent / "exporters").is_dir():       # the earlier layout
        sys.exit(f"{edgetl.__file__} is not the earlier code: put its checkout first on PYTHONPATH")
    shutil.rmtree(before, ignore_errors=True)
    before.mkdir(parents=True)
    shutil.copytree(run / "train", before / "train")
    os.chdir(json.loads((run / "train" / "split.json").read_text())["root"])  # its paths: from cwd
    edgetl.export(before, formats="onnx,tflite", precisions="fp32,int8")


if __name__ == "__main__":
    main()
