"""Fault suite, training and export: tiny data sets, interrupts, killed processes, moved files
and changed options never hang a stage, never leave half an export, never keep a stale one."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import edgetl

from conftest import FAST, make_folder

PROFILE = ('name = "tiny"\ndevice = "local"\nimg_size = 32\nthreads = 1\n'
           'latency_budget_ms = 10000\nmin_top1 = 0.0\n[[builds]]\nbuild = "onnx-int8"\n'
           'runtime = "onnxruntime"\n')
OPTIONS = {k: v for k, v in FAST.items() if k not in ("model", "img_size")}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A trained run whose train split (10 images) is smaller than one QAT batch (32)."""
    root = tmp_path_factory.mktemp("small")
    data = make_folder(root / "data", classes=2, per_class=5)
    edgetl.train(data, root / "run", **FAST)
    return root / "run"


def _copy(run, dest):
    shutil.copytree(run, dest)
    return dest


def test_qat_on_fewer_images_than_a_batch_finishes(small_run, tmp_path):
    run = _copy(small_run, tmp_path / "run")
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "edgetl", "export", str(run), "--formats", "onnx",
                          "--precision", "int8", "--qat-epochs", "2", "--bundle-size", "4"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, 3), res.stderr[-2000:]     # 3: a parity miss, reported
    assert (run / "export" / "manifest.json").is_file() and time.time() - t0 < 300
    log = (run / "export" / "export.log").read_text()
    assert "QAT: 1 steps (2.00 epochs" in log


def test_sigterm_stops_an_export_within_seconds_leaving_the_old_one(small_run, tmp_path):
    run = _copy(small_run, tmp_path / "run")
    edgetl.export(run, formats="onnx", precisions="fp32", bundle_size=4)
    before = (run / "export" / "manifest.json").read_text()
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "export", str(run), "--overwrite",
                             "--formats", "onnx", "--precision", "int8", "--qat-epochs", "100",
                             "--bundle-size", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list(run.glob(".export.tmp*/calibration.json")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)                                         # well into QAT's training steps
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 15 and proc.returncode == 130, err[-2000:]
    assert "previous export (if any) is unchanged" in err
    assert (run / "export" / "manifest.json").read_text() == before
    assert not list(run.glob(".export.*"))


def test_leftovers_of_a_killed_export_are_cleaned_and_a_half_swap_is_undone(small_run, tmp_path):
    run = _copy(small_run, tmp_path / "run")
    edgetl.export(run, formats="onnx", precisions="fp32", bundle_size=4)
    dead = 999999                                          # no such process
    (run / f".export.tmp{dead}").mkdir()
    os.replace(run / "export", run / f".export.old{dead}")  # killed between the two renames
    with pytest.raises(edgetl.RunError, match="already exists"):   # export() undid the swap
        edgetl.export(run, formats="onnx", precisions="fp32", bundle_size=4)
    assert (run / "export" / "manifest.json").is_file()
    assert not list(run.glob(".export.*"))


def test_export_does_not_need_the_checkpoint_training_started_from(small_run, tmp_path):
    base = _copy(small_run, tmp_path / "base")
    data = json.loads((base / "train" / "config.json").read_text())["data"]
    edgetl.train(data, tmp_path / "child", weights=str(base / "train" / "model.safetensors"),
                 **FAST)
    shutil.rmtree(base)
    m = edgetl.export(tmp_path / "child", formats="onnx", precisions="fp32", bundle_size=4)
    assert m["artifacts"][0]["parity"]["passed"]


@pytest.mark.slow
def test_run_rebuilds_an_export_made_with_other_options_and_remembers_a_parity_miss(tmp_path,
                                                                                    capsys):
    data = make_folder(tmp_path / "data", per_class=8)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE)
    out, quick = tmp_path / "run", dict(iters=3, trials=1, warmup=0)
    edgetl.run(data, profile, out, quant="ptq", train_options=OPTIONS,
               export_options={"bundle_size": 4}, bench_options=quick)
    assert json.loads((out / "export/manifest.json").read_text())["settings"]["quant"] == "ptq"
    again = edgetl.run(data, profile, out, quant="qat", train_options=OPTIONS,
                       export_options={"bundle_size": 4, "qat_epochs": 0.5}, bench_options=quick)
    assert again["skipped"] == ["train"]
    manifest = json.loads((out / "export/manifest.json").read_text())
    assert manifest["settings"]["quant"] == "qat"
    manifest["failed"] = ["onnx-int8: agreement 0.9000 (0 near-ties left out) < 0.99"]
    (out / "export/manifest.json").write_text(json.dumps(manifest))   # as a real miss records
    from edgetl import cli
    third = edgetl.run(data, profile, out, quant="qat", train_options=OPTIONS,
                       export_options={"bundle_size": 4, "qat_epochs": 0.5}, bench_options=quick)
    assert third["skipped"] == ["train", "export"]
    assert cli._job_exit(third) == 1
    assert "onnx-int8: agreement 0.9000" in capsys.readouterr().err


def test_a_last_batch_of_one_image_trains(tmp_path):
    """18 train images in batches of 17: the last batch holds one image, whose 1x1 feature maps
    BatchNorm cannot normalise in training mode."""
    data = make_folder(tmp_path / "d", per_class=9)
    m = edgetl.train(data, tmp_path / "run", **{**FAST, "strategy": "full", "weights": "none",
                                               "batch_size": 17, "epochs": 2})
    assert m["epochs_run"] == 2


@pytest.mark.parametrize("args, message", [
    (["--bundle-size", "0"], "bundle_size=0 is out of range"),
    (["--qat-epochs", "nan"], "qat_epochs=nan: must be a finite number"),
    (["--max-int8-drop", "-1"], "max_int8_drop=-1.0 is out of range"),
    (["--float-blocks", "features.99"], "not a block of this model"),
])
def test_bad_export_options_are_one_line(small_run, tmp_path, args, message):
    run = _copy(small_run, tmp_path / "run")
    res = subprocess.run([sys.executable, "-m", "edgetl", "export", str(run), "--formats",
                          "onnx", "--precision", "int8", "--qat-epochs", "0", *args],
                         capture_output=True, text=True, timeout=600)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr[-2000:]
    assert not (run / "export").exists() and not list(run.glob(".export.*"))


def test_a_stop_lost_in_a_finalizer_still_stops_at_the_next_step():
    """A SIGTERM whose KeyboardInterrupt lands in a finalizer or fork hook (where Python only
    prints it) must still stop the work: the next progress step raises it again."""
    code = textwrap.dedent("""
        import os, signal
        from edgetl import cli
        from edgetl.core import console
        signal.signal(signal.SIGTERM, cli._interrupt)
        class Finalizer:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(100000))               # the handler runs here; Python ignores it
        Finalizer()
        try:
            for step in console.bar(range(5), disable=True):
                pass
        except KeyboardInterrupt:
            raise SystemExit(130)
        raise SystemExit(0)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "Exception ignored" in res.stderr and res.returncode == 130, res.stderr[-2000:]
