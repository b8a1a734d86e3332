"""Run folders: one sub-folder per stage, never overwritten unless asked; one log per stage."""
import logging
import shutil
from pathlib import Path

from tqdm import tqdm

from .errors import RunError


def prepare_stage_dir(path, overwrite=False, resume=False) -> Path:
    """Create RUN/<stage>/; refuse to clobber an existing one unless overwrite or resume."""
    path = Path(path)
    if resume:
        if not (path / "config.json").is_file():
            raise RunError(f"nothing to resume in {path}: start the run without --resume")
        return path
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            hint = " or --resume to continue it" if not (path / "metrics.json").exists() else ""
            raise RunError(f"{path} already holds a run: pass --overwrite to replace it{hint}, "
                           "or choose another --out")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        tqdm.write(self.format(record))


def stage_logger(path, enabled=True) -> logging.Logger:
    """Logger writing to `path` and the console (through tqdm, so progress bars stay intact)."""
    log = logging.getLogger(f"edgetl.{Path(path).resolve()}")
    log.setLevel(logging.INFO if enabled else logging.ERROR)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if enabled:
        file = logging.FileHandler(path)
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = _TqdmHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(file)
        log.addHandler(console)
    return log
