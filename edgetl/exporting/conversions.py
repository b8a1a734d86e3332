"""Each graph an export needs, converted once. The conversions are mostly single-threaded
Python (torch.export and the converters' passes), so where the machine gives this process a
second core a worker process converts from the end of the list while this process builds and
checks from its start, taking the worker's graphs as they are ready (`next_of`); a graph is
converted wherever it is reached first.

The worker is a fresh interpreter (`python -m edgetl.exporting.conversions`), never a fork: a
fork inherits the locks of threads it does not have (JAX's, under the TFLite converter, hung
that way). It rebuilds the sources from the export's files (`load`), and it only saves time:
whatever it fails at (an error, a crash) is converted again here, so errors read as they would
without it. Requests and replies are pickles over pipes of their own; its stdout and stderr
are the export's. One core, or no idle one: every graph here, in order."""
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection

from .. import bundle_runner


def idle_cores(seconds: float = 0.3) -> float:
    """How many cores other processes left unused over a short look (the bench runner's
    CpuShare, from Linux's /proc); 0 where unreadable."""
    share = bundle_runner.CpuShare()
    time.sleep(seconds)
    others = share.result().get("others_cpu_pct")
    return 0.0 if others is None else (os.cpu_count() or 1) - others / 100


def second_core(cgroup: str = "/sys/fs/cgroup") -> bool:
    """Whether a worker would get a core of its own here: this process may use two (its
    affinity and CPU quota), and one is idle now (on a machine busy with other work the worker
    would only compete)."""
    return len(bundle_runner.usable_cpus(cgroup)) >= 2 and idle_cores() >= 0.8


class Conversions:
    """`jobs`: key -> (convert, source name, args), in the order the export reaches them;
    convert(source, *args) -> bytes, a module-level function. `sources`: name -> this process's
    object; `load`: (function, args) that rebuilds the same dict from files, in the worker.
    `get(key)`: the converted bytes. Use as a context manager: leaving it stops the worker."""

    def __init__(self, jobs: dict, sources: dict, load: tuple, aside: bool = None):
        self._jobs, self._sources, self._load = dict(jobs), sources, load
        self._done, self._lock = {}, threading.Lock()
        self._waiting = list(jobs)              # not started anywhere yet
        self._aside = {}                         # key -> the worker's Future
        self._worker = self._thread = None
        if len(jobs) > 1 and (second_core() if aside is None else aside):
            self._worker = _Worker()
            self._thread = threading.Thread(target=self._feed_worker, daemon=True)
            self._thread.start()

    def _feed_worker(self) -> None:
        """Hand the worker the last graph nobody has started, one at a time, until none is
        left, it fails to answer or the export leaves."""
        while True:
            with self._lock:
                worker = self._worker
                if worker is None or not self._waiting:
                    return
                key = self._waiting.pop()
                future = self._aside[key] = Future()
            try:
                future.set_result(worker.convert(self._load, self._jobs[key]))
            except Exception as e:              # noqa: BLE001 - redone here when needed
                future.set_exception(e)
                if not isinstance(e, WorkerError):
                    return                      # gone: what is left is done here

    def next_of(self, keys: list) -> int:
        """Which of `keys` (in the export's order) to take next: the first whose graph is
        ready (here or from the worker), else the first nobody has started (converted here
        now), else the first (the worker's, waited for). The export checks what the worker
        finished while the worker converts the next, instead of waiting on it in list order."""
        with self._lock:
            for i, key in enumerate(keys):
                future = self._aside.get(key)
                if key in self._done or (future is not None and future.done()):
                    return i
            return next((i for i, key in enumerate(keys) if key in self._waiting), 0)

    def cores_converting(self) -> int:
        """Cores the worker converts on now (1 or 0): a runtime this process opens meanwhile
        leaves that one to it (on two cores, two runtime threads beside the worker's ran the
        parity checks slower than one: benchmarks/parity_threads.py)."""
        return int(self._thread is not None and self._thread.is_alive())

    def get(self, key) -> bytes:
        if key not in self._done:
            with self._lock:
                here = key in self._waiting
                if here:
                    self._waiting.remove(key)
            self._done[key] = self._here(key) if here else self._from_worker(key)
        return self._done[key]

    def _here(self, key) -> bytes:
        convert, source, args = self._jobs[key]
        return convert(self._sources[source], *args)

    def _from_worker(self, key) -> bytes:
        try:
            return self._aside[key].result()
        except Exception:                       # noqa: BLE001 - converted again here, where
            return self._here(key)              # its error (if any) reads as without a worker

    def close(self) -> None:
        with self._lock:                        # _feed_worker sends nothing after this
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(busy=self._thread.is_alive())
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WorkerError(RuntimeError):
    """The worker answered with an error (it is still there for the next graph)."""


class _Worker:
    """The worker process and its two pipes."""

    def __init__(self):
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgetl.exporting.conversions", str(requests_r),
             str(replies_w)], pass_fds=(requests_r, replies_w), stdin=subprocess.DEVNULL,
            start_new_session=True)             # a Ctrl-C stops the export, which stops it
        os.close(requests_r)
        os.close(replies_w)
        self.requests = Connection(requests_w, readable=False)
        self.replies = Connection(replies_r, writable=False)

    def convert(self, load, job) -> bytes:
        self.requests.send((load, job))
        ok, value = self.replies.recv()         # EOFError / OSError: the worker is gone
        if not ok:
            raise WorkerError(value)
        return value

    def stop(self, busy: bool) -> None:
        if busy:
            self.process.kill()                 # a conversion nobody will read
        self.requests.close()                   # an idle worker reads EOF and exits
        self.process.wait()
        self.replies.close()


def _serve(requests_fd: int, replies_fd: int) -> None:
    """The worker: one thread; sources loaded once, at the first request."""
    import torch
    torch.set_num_threads(1)
    requests = Connection(requests_fd, writable=False)
    replies = Connection(replies_fd, readable=False)
    sources = None
    while True:
        try:
            load, (convert, source, args) = requests.recv()
        except EOFError:
            return
        try:
            sources = sources or load[0](*load[1])
            replies.send((True, convert(sources[source], *args)))
        except Exception as e:                  # noqa: BLE001 - answered; redone there
            replies.send((False, f"{type(e).__name__}: {e}"))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
