"""Console output: progress bars, tables as plain text, and one log file per stage.

While a stage runs (`stage_output`), file descriptors 1 and 2 point at the stage's log file, so
whatever the libraries underneath print (converter progress, C++ logging, cpuinfo warnings,
Python warnings) lands there; edgetl's own progress bars and lines go to the terminal that was
there before.
"""
import contextlib
import io
import logging
import os
import sys
import threading
from pathlib import Path

from tqdm import tqdm

_terminals: list = []          # the real terminal while a stage's output is captured
stop_requested = threading.Event()  # set by the CLI's SIGTERM/SIGINT handler


class _Bar(tqdm):
    """A progress bar that stops the work at its next step once a stop was requested: the
    KeyboardInterrupt a signal raises is lost when it lands in a finalizer or a fork hook."""

    def __iter__(self):
        for item in super().__iter__():
            check_stop()
            yield item

    def update(self, n=1):
        check_stop()
        return super().update(n)


def check_stop() -> None:
    """Raise KeyboardInterrupt if a stop was requested (long steps call it between parts)."""
    if stop_requested.is_set():
        raise KeyboardInterrupt


def terminal():
    """Where edgetl's own progress and messages go."""
    return _terminals[-1] if _terminals else sys.stderr


def bar(iterable=None, **kwargs) -> tqdm:
    out = terminal()
    interactive = getattr(out, "isatty", lambda: False)()
    kwargs.setdefault("mininterval", 0.2 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", out)
    return _Bar(iterable, **kwargs)


def render(table, width: int = 100) -> str:
    """A rich Table as plain text (no colour codes), for printing and for report files."""
    from rich.console import Console
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    return console.file.getvalue()


@contextlib.contextmanager
def stage_output(log_path):
    """Send everything written to fd 1/2 (by Python or native code) to `log_path`, keeping the
    terminal for edgetl's own output; nested uses keep the outermost log."""
    if _terminals:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    real = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    log = open(log_path, "ab", buffering=0)
    text = open(log_path, "a", buffering=1)           # Python-level writes, wherever
    streams = sys.stdout, sys.stderr                   # sys.stdout pointed before
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = text
        _terminals.append(real)
        yield
        check_stop()                                   # nothing is published after a stop
    finally:
        with contextlib.suppress(Exception):
            text.flush()
        sys.stdout, sys.stderr = streams
        _terminals.pop()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        for f in (real, text, log):
            f.close()


class _TerminalHandler(logging.Handler):
    def emit(self, record):
        tqdm.write(self.format(record), file=terminal())


def stage_logger(path, enabled=True) -> logging.Logger:
    """Logger writing to `path` and the terminal (through tqdm, so progress bars stay intact)."""
    log = logging.getLogger(f"edgetl.{Path(path).resolve()}")
    log.setLevel(logging.INFO if enabled else logging.ERROR)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if enabled:
        file = logging.FileHandler(path)
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = _TerminalHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(file)
        log.addHandler(console)
    return log
