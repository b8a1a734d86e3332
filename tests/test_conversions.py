"""An export's conversions shared with a forked worker (exporting/conversions.py): every graph
converted exactly once, the worker's bytes equal to this process's, and whatever the worker
fails at (an error, a crash) converted again here with its own error."""
import os
from pathlib import Path

import pytest

from edgetl.core.layout import RunLayout
from edgetl.exporting import formats
from edgetl.exporting.builds import Build
from edgetl.exporting.conversions import Conversions
from edgetl.models import load_checkpoint
from edgetl.quantizing.graph import load_graph

PARENT = os.getpid()


def _logged(folder: Path, key: str, seconds: float = 0.2) -> bytes:
    """A stand-in conversion that records where it ran, one line per call."""
    import time
    time.sleep(seconds)
    with open(folder / key, "a") as f:
        f.write(f"{os.getpid()}\n")
    return f"{key} converted".encode()


def _fails_in_worker(folder: Path, key: str) -> bytes:
    if os.getpid() != PARENT:
        raise RuntimeError("the worker cannot convert this")
    return _logged(folder, key, 0)


def _worker_dies(folder: Path, key: str) -> bytes:
    if os.getpid() != PARENT:
        os._exit(3)
    return _logged(folder, key, 0)


def _fails(folder: Path, key: str) -> bytes:
    raise ValueError(f"{key}: this graph cannot be converted")


def _run(jobs: dict, aside=True) -> dict:
    with Conversions(jobs, aside=aside) as graphs:
        return {key: graphs.get(key) for key in jobs}


def test_each_graph_is_converted_once_and_both_processes_convert(tmp_path):
    keys = [f"graph{i}" for i in range(6)]
    got = _run({k: (_logged, (tmp_path, k)) for k in keys})
    assert got == {k: f"{k} converted".encode() for k in keys}
    where = {k: (tmp_path / k).read_text().split() for k in keys}
    assert all(len(pids) == 1 for pids in where.values()), where        # once each
    ran_in = {int(pids[0]) for pids in where.values()}
    assert PARENT in ran_in and len(ran_in) == 2, where                # here and in the worker
    assert int(where["graph0"][0]) == PARENT and int(where["graph5"][0]) != PARENT


def test_without_a_worker_every_graph_is_converted_here_in_order(tmp_path):
    keys = ["a", "b", "c"]
    assert _run({k: (_logged, (tmp_path, k, 0)) for k in keys}, aside=False) == \
        {k: f"{k} converted".encode() for k in keys}
    assert {(tmp_path / k).read_text().split()[0] for k in keys} == {str(PARENT)}


@pytest.mark.parametrize("job", [_fails_in_worker, _worker_dies])
def test_what_the_worker_fails_at_is_converted_here(tmp_path, job):
    keys = ["a", "b", "c", "d"]
    got = _run({k: (job, (tmp_path, k)) for k in keys})
    assert got == {k: f"{k} converted".encode() for k in keys}
    assert {(tmp_path / k).read_text() for k in keys} == {f"{PARENT}\n"}


def test_an_error_reads_as_it_would_without_the_worker(tmp_path):
    jobs = {k: (_logged, (tmp_path, k, 0)) for k in ("a", "b")}
    jobs["c"] = (_fails, (tmp_path, "c"))
    with pytest.raises(ValueError, match="c: this graph cannot be converted"):
        _run(jobs)


def test_the_workers_real_conversions_equal_this_processs(exported):
    run = exported[0]
    layout = RunLayout(run)
    model, spec, _ = load_checkpoint(layout.train.checkpoint)
    int8 = load_graph(layout.export.int8_graph, model, spec)
    builds = [Build(f, p) for f in ("onnx", "tflite", "executorch") for p in ("fp32", "int8")]
    jobs = {b.name: (formats.convert, (b, int8 if b.precision == "int8" else model, spec,
                                       {"build": b.name})) for b in builds}
    assert _run(jobs, aside=True) == _run(jobs, aside=False)
