"""Where a bench writes and what it keeps: the run a path belongs to, the default report
folder (never inside RUN/export/, which the next export replaces), the check that the builds
come from the run's current checkpoint, and the history of earlier reports (never overwritten,
a damaged one kept too)."""
import shutil
import time
from pathlib import Path

from ..core.errors import EdgetlError, RunError
from ..core.files import read_json, sha256
from ..core.layout import BenchFiles, RunLayout


def owning_run(path: Path):
    """The run folder `path` belongs to (a run, or a bundle in RUN/export/), else None."""
    path = path.resolve()
    if RunLayout(path).export.dir.is_dir() and not (path / "run.py").is_file():
        return path
    if path.parent.name == "export" and (path.parent.parent / "train").is_dir():
        return path.parent.parent
    return None


def default_out(path: Path, run_root) -> Path:
    """RUN/bench for a run, RUN/bench/<bundle> for one of its bundles (never inside export/,
    which the next export replaces), BUNDLE-bench beside a bundle of no run."""
    if run_root is None:
        return path.parent / f"{path.name}-bench"
    bench = RunLayout(run_root).bench.dir
    return bench if run_root == path.resolve() else bench / path.name


def check_current(run_root: Path, bundles) -> None:
    """Refuse to measure builds of another checkpoint than the run's (after train --overwrite)."""
    ckpt = RunLayout(run_root).train.checkpoint
    if not ckpt.is_file():
        return
    now = sha256(ckpt)
    stale = [name for name, _, m in bundles
             if m.get("source_checkpoint_sha256") not in (None, now)]
    if stale:
        raise RunError(f"{RunLayout(run_root).export.dir} holds builds of an older checkpoint "
                       f"than {ckpt} ({', '.join(stale)}): run 'edgetl export {run_root} "
                       "--overwrite' first")


def keep_history(files: BenchFiles) -> None:
    """A previous report (edgetl's own files only) moves to history/<time>/, never
    overwritten."""
    if not files.report.is_file():
        return
    try:
        stamp = read_json(files.report).get("recorded")
    except (EdgetlError, ValueError, AttributeError):   # damaged: kept all the same, by time
        stamp = None
    stamp = (stamp or time.strftime("%Y-%m-%dT%H:%M:%S",
                                    time.localtime(files.report.stat().st_mtime))).replace(":", "")
    files.history.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10000):                 # two reports of the same second get two folders
        dest = files.history / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            dest.mkdir()
            break
        except FileExistsError:
            continue
    for name in files.REPORT_NAMES:
        if (files.dir / name).is_file():
            shutil.move(str(files.dir / name), dest / name)
