"""Each graph an export needs, converted once. The conversions are mostly single-threaded
Python (torch.export and the converters' passes), so where the machine gives this process a
second core a forked worker converts from the end of the list while this process builds and
checks from its start; a graph is converted wherever it is reached first. The worker only
saves time: whatever it fails at (an error, a crash) is converted again here, so errors read
as they would without it. Linux only (fork shares the models without copying them); one core
or another OS: every graph here, in order."""
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

_JOBS = {}          # key -> (convert, args): what the forked worker inherits (never pickled)


def _convert_in_worker(key):
    convert, args = _JOBS[key]
    return convert(*args)


def _start_worker():
    """The worker's own settings: one thread (the core it was given; no OpenMP pool after
    fork), and the CLI's stop handlers undone: this process stops it (`close`)."""
    import signal

    import torch
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def second_core() -> bool:
    """Whether a forked worker would get a core of its own here."""
    return sys.platform == "linux" and len(os.sched_getaffinity(0)) >= 2


class Conversions:
    """`jobs`: key -> (convert, args) in the order the export reaches them; `get(key)` gives
    the converted bytes. Use as a context manager: leaving it stops the worker."""

    def __init__(self, jobs: dict, aside: bool = None):
        self._jobs, self._done, self._lock = dict(jobs), {}, threading.Lock()
        self._waiting = list(jobs)              # not started anywhere yet
        self._aside = {}                         # key -> the worker's future
        self._pool = None
        if (second_core() if aside is None else aside) and len(jobs) > 1:
            _JOBS.clear()
            _JOBS.update(jobs)
            self._pool = ProcessPoolExecutor(1, mp_context=get_context("fork"),
                                             initializer=_start_worker)
            self._send_next()

    def _send_next(self, _finished=None) -> None:
        """Hand the worker the last graph nobody has started (from its callback too)."""
        with self._lock:
            if self._pool is None or not self._waiting or \
                    any(not f.done() for f in self._aside.values()):
                return
            try:
                future = self._pool.submit(_convert_in_worker, self._waiting[-1])
            except RuntimeError:                # the worker died (BrokenProcessPool) or the
                return                          # pool is closing: the rest is done here
            self._aside[self._waiting.pop()] = future
        future.add_done_callback(self._send_next)

    def get(self, key) -> bytes:
        if key in self._done:
            return self._done[key]
        with self._lock:
            here = key in self._waiting
            if here:
                self._waiting.remove(key)
        data = self._here(key) if here else self._from_worker(key)
        self._done[key] = data
        return data

    def _here(self, key) -> bytes:
        convert, args = self._jobs[key]
        return convert(*args)

    def _from_worker(self, key) -> bytes:
        try:
            return self._aside[key].result()
        except Exception:                       # noqa: BLE001 - converted again here, where
            return self._here(key)              # its error (if any) reads as without a worker

    def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        busy = any(not f.done() for f in self._aside.values())
        for process in list(getattr(pool, "_processes", {}).values()) if busy else ():
            process.terminate()                 # a conversion nobody will read: stop it now
        pool.shutdown(wait=True, cancel_futures=True)
        _JOBS.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
