"""Fault suite, bundles and bench: damaged bundles are refused wherever they run, a failed build
stays a row of a report that is always written, a phone's shell gets quoted arguments, a device
string cannot smuggle options into ssh, and the TensorRT engine is built once and checked."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import edgetl
from edgetl.benchmarking import session
from edgetl.benchmarking.devices import parse_device
from edgetl.exporting import build_engine

QUICK = dict(warmup=1, iters=3, trials=1)


def _copy_export(exported, dest):
    run, _ = exported
    shutil.copytree(run / "export", dest / "export")
    return dest


def _run_py(folder, *args):
    return subprocess.run([sys.executable, "run.py", *args], cwd=folder, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("damage, message", [
    ("eval.npz", "eval.npz: missing or its sha256 no longer matches"),
    ("no-hashes", "no sha256 in manifest"),
    ("escape", "model_file '../model.onnx' must be a file name inside the bundle"),
])
def test_a_damaged_bundle_is_refused_by_run_py_alone(exported, tmp_path, damage, message):
    run = _copy_export(exported, tmp_path)
    bundle = run / "export" / "onnx-int8"
    manifest = json.loads((bundle / "manifest.json").read_text())
    if damage == "eval.npz":
        data = dict(np.load(bundle / "eval.npz"))
        data["labels"] = data["labels"][::-1].copy()            # a doctored evaluation set
        np.savez_compressed(bundle / "eval.npz", **data)
    elif damage == "no-hashes":
        del manifest["sha256"]
    else:
        manifest["model_file"] = "../model.onnx"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    res = _run_py(bundle)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_failed_builds_stay_rows_and_the_report_is_written(exported, tmp_path):
    run = _copy_export(exported, tmp_path)
    shutil.copytree(exported[0] / "train", run / "train")
    (run / "export" / "onnx-fp32" / "model.onnx").unlink()
    (run / "export" / "tflite-fp16" / "manifest.json").write_text("{broken")
    result = session.benchmark(run, runtimes="onnxruntime,litert", **QUICK)
    rows = {r["build"]: r for r in result["results"]}
    assert rows["onnx-fp32"]["status"] == "failed" and "model.onnx" in rows["onnx-fp32"]["error"]
    assert rows["tflite-fp16"]["status"] == "failed"
    assert rows["onnx-int8"]["status"] == "ok" and rows["tflite-int8"]["status"] == "ok"
    assert json.loads((run / "bench" / "report.json").read_text())["results"]


def test_the_torch_baseline_without_an_fp32_build_is_a_failed_row(exported, tmp_path):
    run, _ = exported
    edgetl.export(_copy_train(run, tmp_path / "r"), formats="onnx", precisions="int8",
                  qat_epochs=0.0, bundle_size=8)
    result = session.benchmark(tmp_path / "r", **QUICK)
    rows = {r["build"]: r for r in result["results"]}
    assert rows["torch"]["status"] == "failed" and "fp32 build" in rows["torch"]["error"]
    assert rows["onnx-int8"]["status"] == "ok"


def _copy_train(run, dest):
    shutil.copytree(run / "train", dest / "train")
    return dest


def test_bench_history_moves_only_its_own_files(exported, tmp_path):
    run = _copy_export(exported, tmp_path)
    out = run / "bench"
    out.mkdir()
    (out / "my-notes.txt").write_text("mine")
    for _ in range(2):
        session.benchmark(run / "export" / "onnx-fp32", out=out, **QUICK)
    assert (out / "my-notes.txt").read_text() == "mine"
    assert [p.name for p in (out / "history").iterdir()] and (out / "report.json").is_file()


def test_default_threads_follow_the_cpus_this_process_may_use(exported):
    run, _ = exported
    code = textwrap.dedent(f"""
        import os
        os.sched_setaffinity(0, {{sorted(os.sched_getaffinity(0))[0]}})
        from edgetl.benchmarking import session
        r = session.benchmark({str(run / 'export' / 'onnx-fp32')!r}, out={str(run / 'aff')!r},
                              warmup=0, iters=2, trials=1)
        print(r["settings"]["threads"], r["results"][0]["threads"])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.stdout.split() == ["1", "1"], res.stderr[-2000:]


@pytest.mark.parametrize("spec, message", [
    ("ssh://pi@raspberrypi:22x", "the port must be a number"),
    ("ssh://-oProxyCommand=touch%20x@host", "write ssh://user@host"),
    ("ssh://pi@-oProxyCommand=x", "does not start with '-'"),
    ("adb:-s x", "an adb serial has no spaces"),
])
def test_device_strings_cannot_reach_ssh_or_adb_as_options(spec, message):
    with pytest.raises(edgetl.ConfigError, match=message):
        parse_device(spec)


FAKE_ADB = """#!{python}
import json, subprocess, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
if args[0] == "push":
    sys.exit(0)
sys.exit(subprocess.run(["sh", "-c", args[1]]).returncode)     # the phone's shell
"""
FAKE_PHONE_TOOL = """#!{python}
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv) + "\\n")
sys.stdout.write(open({capture!r}).read())
"""


def phone_with_tool(tmp_path, monkeypatch, tool: str, capture: str):
    """An adb stand-in on PATH whose phone shell runs `tool`, a stand-in replaying `capture`
    (a timing binary's output) and logging its argv to tmp_path/TOOL.log; returns its path."""
    import os
    tools = tmp_path / "tools"
    tools.mkdir()
    (tmp_path / "capture.txt").write_text(capture)
    for path, text in ((tools / "adb", FAKE_ADB), (tools / tool, FAKE_PHONE_TOOL)):
        path.write_text(text.format(python=sys.executable, log=str(tmp_path / f"{path.name}.log"),
                                    capture=str(tmp_path / "capture.txt")))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    return tools / tool


FAKE_BENCHMARK_MODEL = """#!{python}
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv) + "\\n")
print("count=3 first=1000 curr=900 min=800 max=1000 avg=900 std=50")
print("Inference timings in us: Init: 1000, First inference: 1000, Warmup (avg): 1000, "
      "Inference (avg): 900")
"""


def test_adb_quotes_every_name_that_reaches_the_phone_shell(exported, tmp_path, monkeypatch):
    """A bundle folder and a benchmark_model path holding ';', '$()' and a space."""
    run, _ = exported
    evil = "x; touch PWNED $(touch PWNED2)"
    bundle = tmp_path / f"tflite int8;{evil}"
    shutil.copytree(run / "export" / "tflite-int8", bundle)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("adb", FAKE_ADB), (f"bm {evil}", FAKE_BENCHMARK_MODEL)):
        path = tools / name
        path.write_text(text.format(python=sys.executable, log=str(tmp_path / f"{name[:2]}.log")))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    result = session.benchmark(bundle, device="adb:emulator-5554", out=tmp_path / "b",
                               adb_binary=str(tools / f"bm {evil}"), **QUICK)
    row = result["results"][0]
    assert row["status"] == "ok", row
    assert row["latency_ms"]["mean"] == pytest.approx(0.9)
    assert not list(tmp_path.rglob("PWNED*"))
    argv = json.loads((tmp_path / "bm.log").read_text().splitlines()[0])
    assert argv[0] == str(tools / f"bm {evil}") and argv[1].startswith("--graph=/data/local/tmp/")
    assert ";" not in argv[1] and " " not in argv[1]


class FakeTensorRT:
    """Stands in for TensorRT's version only: what is under test is the engine cache."""
    __version__ = "10.3.0"


def test_tensorrt_engines_are_built_once_and_rebuilt_when_their_inputs_change(tmp_path,
                                                                            monkeypatch):
    from edgetl.exporting import tensorrt
    onnx_file = tmp_path / "model.int8.onnx"
    onnx_file.write_bytes(b"onnx-1")
    (tmp_path / "model.int8.fp16.onnx").write_bytes(b"onnx-fp16-parts")
    settings = tmp_path / "build_settings.json"
    settings.write_text(json.dumps(tensorrt.settings("int8", 32, onnx_file.name)))
    builds = []
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT)
    monkeypatch.setattr(build_engine, "serialize",
                        lambda path, s: builds.append(path) or b"plan-%d" % len(builds))
    cache = tmp_path / "engines"
    build = lambda: build_engine.cached_or_build(str(tmp_path), str(settings), str(cache))
    first, again = build(), build()
    assert first == again and builds == [str(onnx_file)]
    onnx_file.write_bytes(b"onnx-2")                              # another export
    other = build()
    assert other != first and len(builds) == 2
    monkeypatch.setattr(FakeTensorRT, "__version__", "10.4.0")    # TensorRT upgraded
    build()
    assert len(builds) == 3
    monkeypatch.setattr(FakeTensorRT, "__version__", "11.4.0")    # strongly typed: fp16 parts
    build()
    assert builds[-1] == str(tmp_path / "model.int8.fp16.onnx")
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]
    cache.chmod(0o777)                                            # a cache others may write
    with pytest.raises(build_engine.EngineBuildError, match="others may write to it"):
        build()


def test_sigterm_stops_a_bench_within_seconds_and_leaves_no_runner(exported, tmp_path):
    import signal
    import time
    run = _copy_export(exported, tmp_path)
    bundle = run / "export" / "onnx-fp32"
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "bench", str(bundle), "--iters",
                             "1000000", "--trials", "1", "--out", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pattern = f"--bundle {bundle}"
    runners = lambda: subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True)
    deadline = time.time() + 120
    while time.time() < deadline and runners().returncode != 0:
        time.sleep(0.2)
    assert runners().returncode == 0, "the runner never started"
    time.sleep(1)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - t0 < 10, err[-2000:]
    time.sleep(0.5)
    assert runners().returncode == 1                      # 1: no such process (2: an error)
