"""An export's conversions shared with a worker process (exporting/conversions.py): every graph
converted exactly once, the worker's bytes (from the sources it rebuilds from files) equal to this
process's, whatever the worker fails at (an error, a crash) converted again here with its own
error, and a stop here stopping a busy worker at once."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetl import bundle_runner
from edgetl.core.layout import RunLayout
from edgetl.exporting import formats
from edgetl.exporting.builds import Build
from edgetl.exporting.conversions import Conversions, idle_cores, second_core
from edgetl.exporting.exporter import saved_sources

HERE = os.getpid()


def _stand_in(source, folder: Path, key: str, seconds: float = 0.2) -> bytes:
    """A conversion that records where it ran, one line per call."""
    (folder / f"{key}.started").touch()
    time.sleep(seconds)
    with open(folder / key, "a") as f:
        f.write(f"{os.getpid()}\n")
    return f"{key} from {source}".encode()


def _wait_for(done, seconds: float = 60) -> None:
    """Until `done()` is true (at most `seconds`), e.g. `_wait_for(path.exists)`."""
    for _ in range(int(seconds * 10)):
        if done():
            return
        time.sleep(0.1)


def _fails_in_worker(source, folder: Path, key: str, here: int) -> bytes:
    if os.getpid() != here:
        raise RuntimeError("the worker cannot convert this")
    return _stand_in(source, folder, key, 0)


def _worker_dies(source, folder: Path, key: str, here: int) -> bytes:
    if os.getpid() != here:
        os._exit(3)
    return _stand_in(source, folder, key, 0)


def _stopped_here(source, folder: Path, key: str, here: int) -> bytes:
    """A Ctrl-C during the export's own work, once the worker is busy with graph "b"."""
    _wait_for((folder / "b.started").exists)
    (folder / "stopped").write_text(str(time.monotonic()))
    raise KeyboardInterrupt


def _after(source, folder: Path, key: str, other: str) -> bytes:
    """A conversion that ends once the file `other` exists (another conversion's mark)."""
    _wait_for((folder / other).exists)
    return _stand_in(source, folder, key, 0)


def _fails(source, folder: Path, key: str, here: int) -> bytes:
    raise ValueError(f"{key}: this graph cannot be converted")


def _sources() -> dict:
    return {"model": "the model"}


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    """The worker unpickles these stand-ins by reference: it must find this module."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))


def _run(jobs: dict, aside=True, sources=None, load=(_sources, ())) -> dict:
    with Conversions(jobs, sources or _sources(), load, aside=aside) as graphs:
        return {key: graphs.get(key) for key in jobs}


def _made(tmp_path, job, keys, *args) -> dict:
    return {k: (job, "model", (tmp_path, k, *args)) for k in keys}


def test_each_graph_is_converted_once_and_both_processes_convert(tmp_path):
    keys = [f"graph{i}" for i in range(6)]
    got = _run(_made(tmp_path, _stand_in, keys, 1.0))
    assert got == {k: f"{k} from the model".encode() for k in keys}
    where = {k: (tmp_path / k).read_text().split() for k in keys}
    assert all(len(pids) == 1 for pids in where.values()), where        # once each
    ran_in = {int(pids[0]) for pids in where.values()}
    assert HERE in ran_in and len(ran_in) == 2, where                  # here and in the worker
    assert int(where["graph0"][0]) == HERE and int(where["graph5"][0]) != HERE


def test_what_the_worker_finished_is_taken_before_what_it_is_still_converting(tmp_path):
    """The worker converts "c", then "b" (from the end); this process converts "a" until the
    worker has started "b" (so "c" came back): "c" is taken next, not waited behind "b"."""
    jobs = {"a": (_after, "model", (tmp_path, "a", "b.started")),
            "b": (_stand_in, "model", (tmp_path, "b", 4.0)),
            "c": (_stand_in, "model", (tmp_path, "c", 0))}
    order, pending = [], list(jobs)
    with Conversions(jobs, _sources(), (_sources, ()), aside=True) as graphs:
        while pending:
            key = pending.pop(graphs.next_of(pending))
            order.append((key, graphs.get(key)))
    assert order == [(k, f"{k} from the model".encode()) for k in ("a", "c", "b")]
    assert int((tmp_path / "a").read_text()) == HERE and \
        {int((tmp_path / k).read_text()) for k in "bc"} != {HERE}


def test_the_worker_holds_a_core_only_while_it_converts(tmp_path):
    """What the export's runtimes leave to the worker (exporter: parity threads = this
    process's threads minus cores_converting): one core while it converts, none after it has
    nothing left, none without a worker."""
    jobs = {"a": (_after, "model", (tmp_path, "a", "b.started")),
            "b": (_stand_in, "model", (tmp_path, "b", 6.0))}   # long enough to be seen
    with Conversions(jobs, _sources(), (_sources, ()), aside=True) as graphs:   # under load
        graphs.get("a")                         # here, once the worker has started "b"
        assert graphs.cores_converting() == 1
        graphs.get("b")
        _wait_for(lambda: not graphs.cores_converting(), 5)   # its feeding thread ends
        assert graphs.cores_converting() == 0                   # after the reply
    with Conversions(jobs, _sources(), (_sources, ()), aside=False) as graphs:
        assert graphs.cores_converting() == 0


def test_without_a_worker_every_graph_is_converted_here(tmp_path):
    keys = ["a", "b", "c"]
    assert _run(_made(tmp_path, _stand_in, keys, 0), aside=False) == \
        {k: f"{k} from the model".encode() for k in keys}
    assert {(tmp_path / k).read_text() for k in keys} == {f"{HERE}\n"}


@pytest.mark.parametrize("job", [_fails_in_worker, _worker_dies])
def test_what_the_worker_fails_at_is_converted_here(tmp_path, job):
    keys = ["a", "b", "c", "d"]
    got = _run(_made(tmp_path, job, keys, HERE))
    assert got == {k: f"{k} from the model".encode() for k in keys}
    assert {(tmp_path / k).read_text() for k in keys} == {f"{HERE}\n"}


def test_an_error_reads_as_it_would_without_the_worker(tmp_path):
    jobs = {**_made(tmp_path, _stand_in, ["a", "b"], 0), **_made(tmp_path, _fails, ["c"], HERE)}
    with pytest.raises(ValueError, match="c: this graph cannot be converted"):
        _run(jobs)


def test_a_stop_here_stops_the_busy_worker_at_once(tmp_path):
    jobs = {**_made(tmp_path, _stopped_here, ["a"], HERE),
            **_made(tmp_path, _stand_in, ["b"], 60)}
    with pytest.raises(KeyboardInterrupt):
        _run(jobs)
    assert (tmp_path / "b.started").exists()    # the worker was busy when the stop came
    stopped = float((tmp_path / "stopped").read_text())
    assert time.monotonic() - stopped < 10      # not the rest of its 60 s conversion
    time.sleep(1)
    assert not (tmp_path / "b").exists()        # it never finished


def test_no_worker_starts_where_every_core_is_taken():
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(1)
        assert idle_cores() < 0.8 and not second_core()
    finally:
        for b in busy:
            b.kill()
            b.wait()


@pytest.mark.parametrize("files, cpus", [
    ({"cpu.max": "100000 100000"}, 1),                   # cgroup v2: --cpus 1
    ({"cpu.max": "150000 100000"}, 2),                   # 1.5 CPUs: a second, part-time
    ({"cpu.max": "max 100000"}, None),                   # no quota: the affinity
    ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 1),   # v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None)])
def test_a_cpu_quota_caps_the_usable_cpus_and_the_worker(tmp_path, files, cpus):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    affinity = sorted(os.sched_getaffinity(0))
    assert bundle_runner.usable_cpus(str(tmp_path)) == affinity[:cpus or len(affinity)]
    if cpus == 1:                                    # whatever the machine has idle
        assert not second_core(str(tmp_path))


def test_the_workers_real_conversions_equal_this_processs(exported):
    """Each converter's int8 graph (the PT2E graph rebuilt from the saved scales: the source
    most likely to differ between processes), converted in the worker and here; the float
    builds the same way were half of this test's three minutes and are checked for parity by
    every export that uses the worker."""
    layout = RunLayout(exported[0])
    files = (str(layout.train.checkpoint), str(layout.export.int8_graph))
    sources = saved_sources(*files)
    spec = load_spec(layout)
    builds = [Build(f, "int8") for f in ("onnx", "tflite", "executorch")]
    jobs = {b.name: (formats.convert, b.precision, (b, spec, {"build": b.name}))
            for b in builds}
    assert _run(jobs, True, sources, (saved_sources, files)) == \
        _run(jobs, False, sources, (saved_sources, files))


def load_spec(layout):
    from edgetl.models import load_checkpoint
    return load_checkpoint(layout.train.checkpoint)[1]
