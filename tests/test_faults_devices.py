"""Fault suite, second round, bundles, bench and devices: no code in a bundle runs before its
check, no export of an older checkpoint is measured as current, an environment fault is a row
(never a lost report), a stopped bench leaves the previous report, the phone path passes or
fails on what the phone measured, and device strings never carry a password."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import edgetl
from edgetl import cli
from edgetl.benchmarking import emulated, session
from edgetl.benchmarking.devices import parse_device

from test_faults_bench import phone_with_tool
from test_remote import NEW, OLD

QUICK = dict(warmup=0, iters=2, trials=1)


def _copy_run(exported, dest):
    run, _ = exported
    for stage in ("train", "export"):
        shutil.copytree(run / stage, dest / stage)
    return dest


def _plant(bundle, name="numpy.py"):
    """A module dropped beside run.py that would leave a mark if it ever ran."""
    mark = bundle.parent / f"RAN-{name}"
    (bundle / name).write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    return mark


@pytest.mark.parametrize("name", ["numpy.py", "json.py"])
def test_code_dropped_into_a_bundle_never_runs_and_is_refused(exported, tmp_path, name):
    run = _copy_run(exported, tmp_path)
    bundle = run / "export" / "onnx-fp32"
    mark = _plant(bundle, name)
    for args in ([], ["--bench", "--iters", "1", "--trials", "1"]):
        res = subprocess.run([sys.executable, "run.py", *args], cwd=bundle, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 2 and f"{name}: not listed in the manifest" in res.stderr
        assert not mark.exists() and "Traceback" not in res.stderr
    row = session.benchmark(bundle, out=tmp_path / "b", **QUICK)["results"][0]
    assert row["status"] == "failed" and "not listed in the manifest" in row["error"]
    assert not mark.exists()


def test_every_file_a_build_needs_is_listed(exported, tmp_path):
    run = _copy_run(exported, tmp_path)
    bundle = run / "export" / "tensorrt-int8"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {"run.py", "eval.npz", "build_engine.py", "build_settings.json",
            manifest["model_file"]} <= set(manifest["sha256"])
    del manifest["sha256"]["build_engine.py"]                 # an older manifest's omission
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    res = subprocess.run([sys.executable, "run.py"], cwd=bundle, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and "build_engine.py (no sha256 in manifest)" in res.stderr


def test_an_export_of_an_older_checkpoint_is_never_measured_as_current(exported, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file
    run = _copy_run(exported, tmp_path)
    ckpt = run / "train" / "model.safetensors"
    with safe_open(str(ckpt), "pt") as f:                       # train --overwrite, in effect
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, str(ckpt), metadata=meta)
    for path in (run, run / "export" / "onnx-fp32"):
        with pytest.raises(edgetl.RunError, match="older checkpoint"):
            session.benchmark(path, **QUICK)
    assert not (run / "bench").exists()


def test_a_bundle_of_a_run_is_benched_into_the_run_not_into_export(exported, tmp_path, capsys):
    run = _copy_run(exported, tmp_path)
    before = sorted(p.name for p in (run / "export").iterdir())
    assert cli.main(["bench", str(run / "export" / "onnx-fp32"), "--iters", "2",
                     "--trials", "1"]) == 0
    assert (run / "bench" / "onnx-fp32" / "report.json").is_file()
    assert sorted(p.name for p in (run / "export").iterdir()) == before


def test_an_environment_fault_is_a_row_and_the_report_is_kept(exported, tmp_path, monkeypatch):
    run = _copy_run(exported, tmp_path)
    bundle = run / "export" / "onnx-fp32"
    out = tmp_path / "b"
    session.benchmark(bundle, out=out, **QUICK)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))                      # no ssh client at all
    result = session.benchmark(bundle, device="ssh://pi@192.0.2.1", out=out, **QUICK)
    row = result["results"][0]
    assert row["status"] == "failed" and "cannot start 'ssh'" in row["error"]
    assert "\n" not in row["error"] and (out / "report.json").is_file()
    assert len(list((out / "history").iterdir())) == 1           # the earlier report, kept


def test_a_damaged_report_or_one_of_the_same_second_never_blocks_or_overwrites(exported,
                                                                           tmp_path):
    run = _copy_run(exported, tmp_path)
    bundle, out = run / "export" / "onnx-fp32", tmp_path / "b"
    out.mkdir()
    (out / "report.json").write_text("{damaged")
    for _ in range(3):                                          # within seconds of each other
        session.benchmark(bundle, out=out, **QUICK)
    kept = sorted((out / "history").iterdir())
    assert len(kept) == 3
    assert "{damaged" in [(k / "report.json").read_text() for k in kept]


def test_a_stopped_bench_leaves_the_previous_report_in_place(exported, tmp_path):
    run = _copy_run(exported, tmp_path)
    bundle, out = run / "export" / "onnx-fp32", tmp_path / "b"
    session.benchmark(bundle, out=out, **QUICK)
    before = (out / "report.json").read_text()
    hang = tmp_path / "slow-python"
    hang.write_text("#!/bin/sh\nexec sleep 296\n")
    hang.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "bench", str(bundle), "--out",
                             str(out), "--python", str(hang)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and subprocess.run(["pgrep", "-f", "sleep 296"],
                                                    capture_output=True).returncode:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert (out / "report.json").read_text() == before and not (out / "history").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", "report.md", "latency_vs_accuracy.png", "bench.log"])


def test_device_strings_never_carry_a_password():
    with pytest.raises(edgetl.ConfigError) as err:
        parse_device("ssh://pi:hunter2@raspberrypi.local")
    assert "hunter2" not in str(err.value) and "ssh-copy-id" in str(err.value)


@pytest.mark.parametrize("capture", [OLD, NEW], ids=["old-format", "logcat-percentiles"])
def test_the_phone_path_runs_to_a_verdict_on_what_the_phone_measured(exported, tmp_path,
                                                                    monkeypatch, capsys,
                                                                    capture):
    """`--target android-arm64` end to end, against an adb stand-in replaying benchmark_model
    output captured on real ARM boards: default trials, a verdict from the phone's latency,
    and no host top-1 passed off as the phone's."""
    run = _copy_run(exported, tmp_path)
    bm = phone_with_tool(tmp_path, monkeypatch, "benchmark_model", capture)
    code = cli.main(["bench", str(run), "--target", "android-arm64", "--adb-binary", str(bm),
                     "--min-seconds", "0.5", "--out", str(tmp_path / "phone")])
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "phone" / "report.json").read_text())
    for row in report["results"]:
        assert row["status"] == "ok" and row["runtime"] == "litert", row
        assert row["top1"] is None and row["host_top1"] is not None
    for check in report["verdict"]["checks"]:                 # seconds per image: too slow
        assert "> budget 20 ms" in check["reason"] and "not measured" not in check["reason"]
    assert code == 1 and "target android-arm64: FAIL" in text
    assert "not scored on the device" in text          # the table says whose top-1 it is
    assert all(r["conditions_summary"]["loadavg_1min"] for r in report["results"])
    argv = json.loads((tmp_path / "benchmark_model.log").read_text().splitlines()[0])
    assert "--min_secs=0.5" in argv and "--num_threads=4" in argv
    profile = tmp_path / "slow-phone.toml"
    profile.write_text((edgetl.benchmarking.targets.resolve("android-arm64")).read_text()
                       .replace("latency_budget_ms = 20.0", "latency_budget_ms = 5000.0")
                       .replace('device = "adb"', 'device = "adb"\nbenchmark_model_flags = '
                                '["--use_xnnpack=true"]'))
    assert cli.main(["bench", str(run), "--target", str(profile), "--adb-binary", str(bm),
                     "--out", str(tmp_path / "phone2")]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "min_top1 is not judged" in text
    assert "--use_xnnpack=true" in (tmp_path / "benchmark_model.log").read_text()


def test_missing_tools_and_runtimes_are_one_line(monkeypatch, tmp_path):
    with pytest.raises(edgetl.ConfigError, match="unknown runtime 'coreml'"):
        emulated.build(tmp_path, runtimes=["coreml"])
    monkeypatch.setenv("PATH", str(tmp_path))            # no qemu on the PATH
    with pytest.raises(edgetl.ConfigError, match="not found: sudo apt-get install "
                                                 "qemu-user-static debootstrap"):
        emulated.build(tmp_path / "dev")


def test_the_emulator_builds_only_into_a_folder_edgetl_owns(tmp_path):
    mine = tmp_path / "mine"
    (mine / "root").mkdir(parents=True)
    (mine / "root" / "thesis.tex").write_text("years of work")
    (mine / "site").mkdir()
    res = subprocess.run([sys.executable, "-m", "edgetl", "device", "emulate", "arm64", "--dir",
                          str(mine)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "holds files edgetl did not write" in res.stderr
    assert (mine / "root" / "thesis.tex").read_text() == "years of work"
    assert (mine / "site").is_dir()


def test_tests_of_a_device_group_fail_under_ci_when_its_tools_are_missing(tmp_path):
    """A green CI run means the device groups ran: without qemu, the emulated-CPU group skips
    for a user and fails under CI."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "EDGETL_REQUIRE_DEVICE_TESTS")}
    env["PATH"] = str(tmp_path)
    here = os.path.dirname(__file__)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           os.path.join(here, "test_emulated_cpu.py")]
    user = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert user.returncode in (0, 5) and "skipped" in user.stdout, user.stdout[-2000:]
    ci = subprocess.run(cmd, capture_output=True, text=True, env={**env, "CI": "true"},
                        timeout=300, cwd=tmp_path)
    assert ci.returncode != 0 and "requires this group" in ci.stdout, ci.stdout[-2000:]


def test_documents_carry_their_version_older_ones_are_read_newer_ones_refused(exported,
                                                                            tmp_path):
    run = _copy_run(exported, tmp_path)
    export = run / "export" / "manifest.json"
    bundle = run / "export" / "onnx-fp32" / "manifest.json"
    for path in (export, bundle):
        doc = json.loads(path.read_text())
        assert (doc["document"], doc["version"]) in (("export", 2), ("bundle", 3))
        path.write_text(json.dumps({k: v for k, v in doc.items()
                                    if k not in ("document", "version")}))   # as 0.2 wrote it
    report = session.benchmark(run / "export" / "onnx-fp32", out=tmp_path / "b", **QUICK)
    assert report["results"][0]["status"] == "ok"
    assert json.loads((tmp_path / "b" / "report.json").read_text())["document"] == "bench"
    export.write_text(json.dumps({**json.loads(export.read_text()), "document": "export",
                                  "version": 9}))
    with pytest.raises(edgetl.RunError, match="written by a newer edgetl"):
        session.benchmark(run, out=tmp_path / "c", **QUICK)


THERMAL_AND_BATTERY = """0.52 0.61 0.70 2/1234 5678
IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
Thermal Status: 2
Cached temperatures:
\tTemperature{mValue=41.0, mType=0, mName=cpu0, mStatus=2}
HAL Ready: true
HAL connection:
\tThermalHAL 2.0 connected: yes
Current temperatures from HAL:
\tTemperature{mValue=44.5, mType=0, mName=cpu0, mStatus=2}
\tTemperature{mValue=33.1, mType=3, mName=skin, mStatus=0}
Current Battery Service state:
  AC powered: false
  USB powered: true
  level: 81
  temperature: 312
"""


def test_the_phone_state_is_read_from_its_own_shell():
    """/proc/loadavg, `dumpsys thermalservice` and `dumpsys battery` in AOSP's dump format:
    the row's conditions are the phone's (its thermal status and temperatures)."""
    from edgetl.benchmarking.adb import parse_phone_state
    state = parse_phone_state(THERMAL_AND_BATTERY)
    assert state["loadavg"] == [0.52, 0.61, 0.70]
    assert state["throttled"].startswith("thermal status 2")
    assert state["temperatures_c"] == {"cpu0": 44.5, "skin": 33.1, "battery": 31.2}
    assert parse_phone_state("") == {}
