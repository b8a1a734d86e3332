"""The run folder: every file a stage writes, named once here; stage folders carry edgetl's
marker (only those are ever deleted); one process at a time holds a run (a lock).

    RUN/train/    model.safetensors config.json metrics.json split.json curves.png train.log
                  cache/ resume.safetensors best.safetensors search.json
    RUN/export/   manifest.json calibration.json quant_params.json quant_report.json
                  quant_report.png int8_graph.safetensors export.log <build>/ (one bundle each)
    RUN/bench/    report.json report.md latency_vs_accuracy.png bench.log history/
"""
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import RunError
from .files import atomic_write

MARKER = ".edgetl-stage"


@dataclass(frozen=True)
class TrainFiles:
    dir: Path

    checkpoint = property(lambda s: s.dir / "model.safetensors")
    config = property(lambda s: s.dir / "config.json")
    metrics = property(lambda s: s.dir / "metrics.json")
    split = property(lambda s: s.dir / "split.json")
    curves = property(lambda s: s.dir / "curves.png")
    log = property(lambda s: s.dir / "train.log")
    cache = property(lambda s: s.dir / "cache")
    resume_state = property(lambda s: s.dir / "resume.safetensors")
    best_state = property(lambda s: s.dir / "best.safetensors")
    search = property(lambda s: s.dir / "search.json")


@dataclass(frozen=True)
class ExportFiles:
    dir: Path

    manifest = property(lambda s: s.dir / "manifest.json")
    calibration = property(lambda s: s.dir / "calibration.json")
    quant_params = property(lambda s: s.dir / "quant_params.json")
    quant_report = property(lambda s: s.dir / "quant_report.json")
    quant_plot = property(lambda s: s.dir / "quant_report.png")
    int8_graph = property(lambda s: s.dir / "int8_graph.safetensors")
    log = property(lambda s: s.dir / "export.log")

    def bundle(self, name: str) -> Path:
        return self.dir / name


@dataclass(frozen=True)
class BenchFiles:
    dir: Path
    REPORT_NAMES = ("report.json", "report.md", "latency_vs_accuracy.png", "sustained.png",
                    "bench.log")

    report = property(lambda s: s.dir / "report.json")
    markdown = property(lambda s: s.dir / "report.md")
    plot = property(lambda s: s.dir / "latency_vs_accuracy.png")
    sustained_plot = property(lambda s: s.dir / "sustained.png")
    log = property(lambda s: s.dir / "bench.log")
    history = property(lambda s: s.dir / "history")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    train = property(lambda s: TrainFiles(s.root / "train"))
    export = property(lambda s: ExportFiles(s.root / "export"))
    bench = property(lambda s: BenchFiles(s.root / "bench"))
    lock_file = property(lambda s: s.root / ".edgetl.lock")

    def export_work(self) -> ExportFiles:
        """Where an export is built before it is moved into place (one per process)."""
        return ExportFiles(self.root / f".export.tmp{os.getpid()}")

    def export_aside(self) -> Path:
        """Where the previous export waits while the new one moves into place."""
        return self.root / f".export.old{os.getpid()}"


def mark(folder: Path, stage: str) -> None:
    """Stamp a folder as written by edgetl (the only kind --overwrite deletes)."""
    from . import VERSION
    text = json.dumps({"stage": stage, "edgetl": VERSION}) + "\n"
    atomic_write(Path(folder) / MARKER, lambda p: p.write_text(text))


def is_marked(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def remove_stage(folder: Path) -> None:
    """Delete a stage folder, but only one edgetl wrote (it carries the marker)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not is_marked(folder):
        raise RunError(f"{folder} was not written by edgetl (no {MARKER} marker): not deleting "
                       "it; choose another --out or remove it yourself")
    shutil.rmtree(folder)


def prepare_stage_dir(path, stage: str, overwrite=False) -> Path:
    """Create RUN/<stage>/ (marked); an existing, non-empty one is replaced only with
    overwrite, and only if edgetl wrote it."""
    path = Path(path)
    if _failed_start(path, stage):
        remove_stage(path)                  # nothing to resume or keep: start it afresh
    if path.exists() and any(path.iterdir()):
        if not is_marked(path):
            raise RunError(f"{path} exists and was not written by edgetl (no {MARKER} marker): "
                           "choose another --out; edgetl never deletes such a folder")
        if not overwrite:
            hint = " or --resume to continue it" if stage == "train" and \
                not (path / "metrics.json").exists() else ""
            raise RunError(f"{path} already holds a run: pass --overwrite to replace it{hint}, "
                           "or choose another --out")
        remove_stage(path)
    path.mkdir(parents=True, exist_ok=True)
    mark(path, stage)
    return path


def _failed_start(path: Path, stage: str) -> bool:
    """A stage folder edgetl marked whose run failed before it recorded anything but its log
    (e.g. a bad image found in the first seconds): nothing in it to resume or keep."""
    if not path.is_dir() or not is_marked(path):
        return False
    return all(p.name in (MARKER, f"{stage}.log") for p in path.iterdir())


def clean_stale_work(root: Path) -> list:
    """Remove `.export.tmpPID` / `.export.oldPID` folders whose process is gone (after a kill);
    an `.export.old` left by a crash between the two renames is put back first."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder in sorted(root.glob(".export.*")):
        pid = folder.name.rsplit("tmp" if ".tmp" in folder.name else "old", 1)[-1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if folder.name.startswith(".export.old") and not (root / "export").exists():
            os.replace(folder, root / "export")
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run folder for this process (re-entrant: the main job holds it
    while its stages take it again). A second process gets one clear error line."""
    _held: dict = {}

    def __init__(self, root):
        self.path = RunLayout(root).lock_file

    def __enter__(self):
        key = str(self.path.resolve())
        if key in self._held:
            self._held[key][1] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise RunError(f"{self.path.parent} is in use by another edgetl process (pid "
                           f"{owner}): wait for it to finish or choose another --out") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        self._held[key] = [f, 1]
        return self

    def __exit__(self, *exc):
        key = str(self.path.resolve())
        entry = self._held[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[key]
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            entry[0].close()
        return False
