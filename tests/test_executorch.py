"""ExecuTorch builds on a tiny model: int8 lowered from the export's own int8 graph (the same
scales and float blocks as the ONNX int8 build), fully delegated to XNNPACK, its parity
checked in ExecuTorch's runtime, its bundle run as a user runs it, and benched."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgetl
from edgetl.benchmarking import session
from edgetl.exporting import executorch
from edgetl.summaries import export_summary


@pytest.fixture(scope="module")
def int8_run(exported, tmp_path_factory):
    run = tmp_path_factory.mktemp("executorch") / "run"
    shutil.copytree(exported[0] / "train", run / "train")
    manifest = edgetl.export(run, formats="onnx,executorch", precisions="fp32,int8",
                             quant="ptq", calib_size=24, bundle_size=12, max_int8_drop=None,
                             float_blocks="features.1")
    return run, manifest


def test_int8_comes_from_the_same_graph_as_onnx_and_xnnpack_takes_all_of_it(int8_run):
    run, manifest = int8_run
    made = {a["name"]: a for a in manifest["artifacts"]}
    et, onnx = made["executorch-int8"], made["onnx-int8"]
    assert et["runtime"] == "executorch" and et["parity"]["passed"], et["parity"]
    assert et["parity"]["reference"] == onnx["parity"]["reference"]       # the same int8 graph
    bundles = {n: json.loads((run / "export" / n / "manifest.json").read_text())
               for n in ("executorch-int8", "onnx-int8")}
    assert bundles["executorch-int8"]["quantization"] == bundles["onnx-int8"]["quantization"]
    assert bundles["executorch-int8"]["quantization"]["float_blocks"] == ["features.1"]
    # the two int8 files rest on the same scales: on the held-out images they agree as
    # closely as each agrees with the PyTorch int8 graph
    same = np.mean(np.array(et["held_out_predictions"]) == onnx["held_out_predictions"])
    assert same >= min(et["parity"]["top1_agreement"], onnx["parity"]["top1_agreement"]) - 0.05
    for name in ("executorch-fp32", "executorch-int8"):
        delegation = bundles.get(name) or json.loads(
            (run / "export" / name / "manifest.json").read_text())
        assert delegation["executorch"]["fully_delegated"], delegation["executorch"]
        assert delegation["executorch"]["delegate_calls"] == {"XnnpackBackend": 1}
    assert "executorch-int8: fully delegated to XnnpackBackend" in export_summary(manifest)
    pte = run / "export" / "executorch-int8" / "model.pte"
    carried = executorch.read_metadata(pte)                # the program carries its metadata
    assert carried["source_checkpoint_sha256"] == manifest["source_checkpoint_sha256"]
    assert carried["quantization"]["float_blocks"] == ["features.1"]


def test_the_bundle_runs_as_a_user_runs_it_and_benches_in_executorch(int8_run, tmp_path):
    run, _ = int8_run
    folder = run / "export" / "executorch-int8"
    out = subprocess.run([sys.executable, "run.py"], cwd=folder, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    bundle = json.loads((folder / "manifest.json").read_text())
    assert result["runtime"] == "executorch" and result["top1"] == bundle["eval_top1"]
    report = session.benchmark(run, runtimes="executorch", warmup=1, iters=5, trials=2,
                               wait_idle=0, out=tmp_path / "bench")
    rows = {r["build"]: r for r in report["results"] if r["runtime"] == "executorch"}
    assert set(rows) == {"executorch-fp32", "executorch-int8"}
    assert {r["status"] for r in rows.values()} == {"ok"}, rows
    assert rows["executorch-int8"]["provider"] == "XnnpackBackend"
    assert rows["executorch-int8"]["latency_ms"]["p50"] > 0
    for r in rows.values():     # torch, which the bindings bring, is timed apart from the load
        assert r["import_ms"] > r["load_ms"] > 0, r
    md = (tmp_path / "bench" / "report.md").read_text()
    assert "executorch-int8" in md and "XnnpackBackend" in md


def test_a_trial_opens_the_program_without_importing_the_exporter(int8_run):
    """Every bench trial starts a fresh runner: executorch.runtime pulls in the exporter
    (executorch.exir, torch._dynamo), seconds of each trial's start that a device never pays."""
    folder = int8_run[0] / "export" / "executorch-int8"
    result = _open_and_run(folder, "")
    assert result["exir"] == []
    assert np.array(result["logits"]).shape == (2, len(json.loads(
        (folder / "manifest.json").read_text())["labels"]))
    # another ExecuTorch's bindings: the runner falls back to the public API, same outputs
    fallback = _open_and_run(folder, "model.method = run._executorch_method_public("
                                     "m['model_file'], 1); ")
    assert fallback["exir"] and fallback["logits"] == result["logits"]


def _open_and_run(folder, then: str) -> dict:
    """The bundle's run.py opens its program (then runs `then`) and runs two images, in a
    fresh process: the executorch.exir modules it loaded and the logits."""
    code = ("import json, sys, numpy as np; sys.path.insert(0, '.'); import run; "
            "m = run.load_manifest('.'); model = run.open_model(m, '.', threads=1); " + then +
            "x = run.to_input(np.load('eval.npz')['images'][:2], m); "
            "exir = [k for k in sys.modules if k.startswith('executorch.exir')]; "
            "print(json.dumps({'exir': exir, 'logits': model(x).tolist()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_a_batch_the_program_was_not_exported_at_is_refused_in_one_line(int8_run):
    run, _ = int8_run
    folder = run / "export" / "executorch-fp32"
    out = subprocess.run([sys.executable, "run.py", "--bench", "--batch", "4"], cwd=folder,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "exported at batch 1" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_program_xnnpack_does_not_fully_take_says_so():
    import torch

    class Cumulative(torch.nn.Module):             # cumsum has no XNNPACK kernel
        def forward(self, x):
            return torch.nn.functional.linear(x.mean((2, 3)), torch.ones(2, 3)).cumsum(-1)

    d = executorch.delegation(executorch.lower(Cumulative(), "fp32", 8))
    assert not d["fully_delegated"] and any("cumsum" in op for op in d["portable_ops"]), d
    from edgetl.summaries import delegation_text
    assert delegation_text(d).startswith("NOT fully delegated")


def test_the_phone_path_times_the_program_with_executor_runner(int8_run, tmp_path,
                                                               monkeypatch):
    """`--target android-arm64-executorch` against an adb stand-in replaying executor_runner's
    log: its argv, warm-up left out, the row in the runtime that ran."""
    from test_faults_bench import phone_with_tool
    from test_remote import EXECUTOR_RUNNER
    run, _ = int8_run
    runner = phone_with_tool(tmp_path, monkeypatch, "executor_runner", EXECUTOR_RUNNER)
    report = session.benchmark(run, target="android-arm64-executorch", adb_binary=str(runner),
                               warmup=1, iters=4, trials=2, out=tmp_path / "phone")
    row = report["results"][0]
    assert row["status"] == "ok" and row["runtime"] == "executorch", row
    assert row["tool"] == "executor_runner" and row["top1"] is None
    assert row["latency_ms"]["p50"] == pytest.approx((11.201 + 11.402) / 2)
    argv = json.loads((tmp_path / "executor_runner.log").read_text().splitlines()[0])
    assert "--num_executions=5" in argv and "--cpu_threads=4" in argv
    assert any(a.startswith("--model_path=/data/local/tmp/edgetl_executorch-int8")
               and a.endswith(".pte") for a in argv)
    assert report["verdict"]["checks"][0]["build"] == "executorch-int8"


def test_an_executorch_row_over_ssh_comes_from_the_devices_runtime(int8_run, sshd, tmp_path):
    """A real OpenSSH server on loopback; the device's Python has ExecuTorch."""
    run, _ = int8_run
    bundle = run / "export" / "executorch-int8"
    result = session.benchmark(bundle, device="ssh://edge-device", ssh_config=sshd["config"](),
                               python=sys.executable, threads=1, warmup=1, iters=5, trials=2,
                               wait_idle=0, out=tmp_path / "ssh")
    row = result["results"][0]
    assert row["status"] == "ok" and row["runtime"] == "executorch", row
    assert row["top1"] == json.loads((bundle / "manifest.json").read_text())["eval_top1"]
    assert result["machine"]["device"] == "ssh://edge-device"
