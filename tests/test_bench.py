"""Bench stage on the tiny exported run: real runners in real runtimes, reports, verdicts."""
import base64
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgetl
from edgetl import bundle_runner, cli
from edgetl.benchmarking import devices, runtimes, session, targets
from edgetl.benchmarking.trials import best_peak
from edgetl.core.errors import ConfigError

QUICK = dict(warmup=1, iters=5, trials=2)


@pytest.fixture(scope="module")
def report(exported):
    run, _ = exported
    return session.benchmark(run, **QUICK)


def test_every_build_is_timed_and_scored_in_its_runtime(exported, report):
    run, manifest = exported
    rows = {(r["build"], r["runtime"]): r for r in report["results"]}
    expected = {(a["name"], "onnxruntime" if a["format"] == "onnx" else "litert")
                for a in manifest["artifacts"] if a["format"] != "tensorrt"}
    assert expected | {("torch", "torch")} == set(rows)
    for (name, runtime), r in rows.items():
        assert r["status"] == "ok", r
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["runs"] >= 10
        assert len(lat["trial_p50"]) == 2 and r["threads"] and r["batch"] == 1
        assert r["first_inference_ms"] > 0
        # a runner's own peak memory; the in-process PyTorch row has none of its own
        assert r["peak_rss_mb"] > 10 if runtime != "torch" else r["peak_rss_mb"] is None
        assert r["floor_ms"] > 0 and r["x_floor"] > 1, r   # nothing beats the measured peak
        if runtime != "torch":
            bundle = json.loads((run / "export" / name / "manifest.json").read_text())
            assert r["top1"] == pytest.approx(bundle["eval_top1"])   # same set, same runtime
            assert r["runtime_version"] and r["load_ms"] > 0
        if r["precision"] != "int8":
            assert r["top1_agreement"] >= 0.95
    assert report["machine"]["peak"]["fp32_gflops"] > 1
    assert report["machine"]["peak"]["looks"] == 2          # a look in each round, the best kept
    out = run / "bench"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["results"] == json.loads(json.dumps(report["results"]))
    assert (out / "latency_vs_accuracy.png").stat().st_size > 1000
    assert "| tflite-int8 | litert | int8 |" in (out / "report.md").read_text()


def test_the_int8_peaks_serialized_model_is_the_one_onnx_builds():
    from onnx import TensorProto, helper
    n = bundle_runner.PEAK_N
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    assert base64.b64decode(bundle_runner.PEAK_INT8_ONNX) == model.SerializeToString()
    peak = bundle_runner.measure_peak(repeats=2)             # and onnxruntime runs it
    assert peak["int8_gops"] > 1 and peak["fp32_gflops"] > 1


def test_the_best_peak_look_is_kept_per_number_format():
    low, high = {"fp32_gflops": 50.0, "int8_gops": 400.0}, {"fp32_gflops": 90.0, "int8_gops": 300.0}
    assert best_peak(low, high) == {"fp32_gflops": 90.0, "int8_gops": 400.0}
    assert best_peak(None, low) == low and best_peak(low, None) == low
    assert best_peak({"fp32_gflops": 50.0, "int8_gops": None}, low)["int8_gops"] == 400.0


def test_a_runner_reports_its_own_peak_memory_not_its_parents(exported, tmp_path):
    """Linux keeps ru_maxrss across fork and exec: a runner started by a process holding 1.5 GB
    read 1.5 GB. The runner's peak is its own."""
    run, _ = exported
    held = np.ones(1536 * 2**20 // 8)                          # 1.5 GB, touched
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(devices.RUNNER), "--bundle", str(run / "export" /
                    "onnx-int8"), "--bench", "--runtime", "onnxruntime", "--threads", "1",
                    "--warmup", "1", "--iters", "3", "--trials", "1", "--json", str(out)],
                   check=True, capture_output=True)
    rss = json.loads(out.read_text())["peak_rss_mb"]
    assert 10 < rss < held.nbytes / 2**20 / 2, rss


def test_a_row_faster_than_its_floor_says_the_peak_read_low(report):
    """A peak look on a busy machine reads low; a row then 'beats' the floor. The table says
    so instead of printing an impossible x floor without a word."""
    from edgetl.benchmarking.table import notes
    beaten = any(r.get("x_floor") is not None and r["x_floor"] < 1 for r in report["results"])
    assert any("ran faster than the floor" in line for line in notes(report)) == beaten
    low = json.loads(json.dumps(report))
    row = next(r for r in low["results"] if r.get("x_floor"))
    row["x_floor"] = 0.8
    said = [line for line in notes(low) if "ran faster than the floor" in line]
    assert said and f"{row['build']} ({row['runtime']})" in said[0]


def test_a_second_bench_keeps_the_first_report(exported, report):
    run, _ = exported
    session.benchmark(run / "export" / "onnx-fp32", out=run / "bench", **QUICK)
    history = list((run / "bench" / "history").glob("*/report.json"))  # other tests' too
    assert report["recorded"] in [json.loads(h.read_text())["recorded"] for h in history]


def _profile(tmp_path, budget_ms, min_top1=0.0, builds=(("onnx-fp32", "onnxruntime"),)):
    text = (f'name = "test"\ndevice = "local"\nthreads = 1\nlatency_budget_ms = {budget_ms}\n'
            f'min_top1 = {min_top1}\n')
    for build, runtime in builds:
        text += f'[[builds]]\nbuild = "{build}"\nruntime = "{runtime}"\n'
    path = tmp_path / "t.toml"
    path.write_text(text)
    return str(path)


def test_target_verdict_gates_the_exit_code(exported, tmp_path, capsys):
    run, _ = exported
    quick = ["--warmup", "1", "--iters", "5", "--trials", "3"]
    ok = _profile(tmp_path, 10000, builds=[("onnx-fp32", "onnxruntime"),
                                            ("tflite-int8", "litert")])
    assert cli.main(["bench", str(run), "--target", ok, "--out", str(tmp_path / "a"), *quick]) == 0
    assert "target test: PASS" in capsys.readouterr().out
    # one trial has no interval: the budget cannot be judged, which fails unless allowed
    one = ["--warmup", "1", "--iters", "5", "--trials", "1", "--out", str(tmp_path / "c")]
    assert cli.main(["bench", str(run), "--target", ok, *one]) == 1
    assert "one trial gives no interval" in capsys.readouterr().err
    assert cli.main(["bench", str(run), "--target", ok, *one, "--allow-inconclusive"]) == 0
    assert "inconclusive: allowed" in capsys.readouterr().out
    slow = _profile(tmp_path, 0.001)
    assert cli.main(["bench", str(run), "--target", slow, "--out", str(tmp_path / "b"),
                     *quick]) == 1
    err = capsys.readouterr().err
    assert "target test FAILED" in err and "> budget 0.001 ms" in err
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["verdict"]["passed"] is False and report["results"][0]["threads"] == 1


def test_tampered_bundle_is_refused_and_other_results_kept(exported, tmp_path):
    run, _ = exported
    copy = tmp_path / "run"
    shutil.copytree(run / "export", copy / "export")
    model = copy / "export" / "onnx-fp32" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    result = session.benchmark(copy, runtimes="onnxruntime", **QUICK)
    rows = {r["build"]: r for r in result["results"]}
    assert rows["onnx-fp32"]["status"] == "failed"
    assert "model.onnx" in rows["onnx-fp32"]["error"] and "sha256" in rows["onnx-fp32"]["error"]
    assert rows["onnx-int8"]["status"] == "ok"
    assert json.loads((copy / "bench" / "report.json").read_text())["results"][0]["status"] \
        == "failed"


def test_missing_runtime_is_skipped_and_hang_is_bounded(exported, tmp_path):
    run, _ = exported
    bundle = run / "export" / "tflite-int8"
    if runtimes.installed("tflite-runtime"):
        pytest.skip("tflite-runtime is installed here")
    result = session.benchmark(bundle, runtimes="tflite-runtime", out=tmp_path / "a", **QUICK)
    assert result["results"][0]["status"] == "skipped"
    assert "tflite-runtime" in result["results"][0]["error"]
    result = session.benchmark(bundle, runtimes="litert", out=tmp_path / "b", timeout=0.05, **QUICK)
    assert result["results"][0]["status"] == "failed"
    assert "did not finish within" in result["results"][0]["error"]


def test_shipped_profiles_load():
    names = targets.available()
    assert {"jetson-orin-nano", "raspberry-pi-5", "android-arm64", "x86-cpu"} <= set(names)
    for name in names:
        t = targets.load_target(name)
        assert t.builds and t.threads >= 1
    assert targets.load_target("raspberry-pi-5").builds[0].runtime == "tflite-runtime"


@pytest.mark.parametrize("text, message", [
    ('name = "x"\nlatency_budget_ms = 5\nmin_top1 = 0.5\nthreds = 4\n', "unknown key 'threds'"),
    ('name = "x"\nlatency_budget_ms = "fast"\nmin_top1 = 0.5\n', "'latency_budget_ms' must be"),
    ('name = "x"\nmin_top1 = 0.5\n[[builds]]\nbuild="onnx-fp32"\nruntime="onnxruntime"\n',
     "missing 'latency_budget_ms'"),
    ('name = "x"\nlatency_budget_ms = 5\nmin_top1 = 0.5\n[[builds]]\nbuild = "onnx-int4"\n'
     'runtime = "onnxruntime"\n', "'onnx-int4' is not a build name"),
    ('name = "x"\nlatency_budget_ms = 5\nmin_top1 = 0.5\n[[builds]]\nbuild = "tflite-int8"\n'
     'runtime = "onnxruntime"\n', "cannot run tflite"),
    ('name = "x"\nlatency_budget_ms = 5\nmin_top1 = 0.5\ndevice = "telnet://pi"\n'
     '[[builds]]\nbuild = "tflite-int8"\nruntime = "litert"\n', "is not a device"),
    ('name = "x"\nlatency_budget_ms = [5\n', "not valid TOML"),
    ('name = "x"\nlatency_budget_ms = nan\nmin_top1 = 0.5\n[[builds]]\nbuild = "tflite-int8"\n'
     'runtime = "litert"\n', "must be a finite number"),
    ('name = "x"\nlatency_budget_ms = 5\nmin_top1 = 0.5\nthreads = 0\n[[builds]]\n'
     'build = "tflite-int8"\nruntime = "litert"\n', "threads=0 is out of range"),
])
def test_malformed_profiles_get_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.toml") as e:
        targets.load_target(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_target_and_runtime(exported):
    run, _ = exported
    with pytest.raises(ConfigError, match="unknown target 'pixel-99'.*x86-cpu"):
        targets.load_target("pixel-99")
    with pytest.raises(ConfigError, match="unknown runtime 'coreml'"):
        session.benchmark(run, runtimes="coreml")
    with pytest.raises(edgetl.RunError, match="edgetl export"):
        session.benchmark(run / "train")


def test_the_cli_names_its_version_and_lists_the_shipped_targets():
    """`edgetl --version` and `edgetl targets`, as a user runs them: every shipped profile with
    its device and its budgets, read from the profile files themselves."""
    from conftest import cli as run_cli
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"edgetl {edgetl.__version__}"
    res = run_cli("targets")
    assert res.returncode == 0, res.stderr
    for name in targets.available():
        t = targets.load_target(name)
        assert name[:20] in res.stdout and f"{t.builds[0].latency_budget_ms:g} ms" in res.stdout
    assert "--target FILE.toml" in " ".join(res.stdout.split())


def test_an_optional_build_whose_exporter_is_missing_is_left_out_and_said_so(monkeypatch):
    """The x86 profile's ExecuTorch rows where ExecuTorch is not installed (its format entry
    pointed at a module that does not exist here)."""
    import dataclasses

    from edgetl.benchmarking.targets import load_target
    from edgetl.benchmarking.verdict import verdict, verdict_text
    from edgetl.exporting.formats import FORMATS
    absent = dataclasses.replace(FORMATS["executorch"],
                                 package=("edgetl_absent_module", "edgetl[executorch]"))
    monkeypatch.setitem(FORMATS, "executorch", absent)
    target = load_target("x86-cpu")
    assert [b.build for b, _ in target.left_out] == ["executorch-fp32", "executorch-int8"]
    assert "executorch" not in target.formats.split(",")
    v = verdict([], target)
    assert {c["build"] for c in v["checks"]} == {"onnx-fp32", "onnx-int8", "tflite-fp32",
                                                 "tflite-int8"}
    text = verdict_text({"verdict": v, "target": {"name": "x86-cpu"}})
    assert "--   executorch-int8 (executorch): optional; its exporter is not installed here " \
           "(pip install 'edgetl[executorch]')" in text
    with pytest.raises(edgetl.ConfigError, match="--formats executorch: its exporter is not "
                                                 "installed; pip install 'edgetl\\[executorch"):
        edgetl.export("nowhere", formats="onnx,executorch")
