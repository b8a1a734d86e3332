"""An ARM edge device in every test run: a Debian 12 arm64 userland run by qemu-user, built once
(cached in ~/.cache/edgetl) and reached over the real loopback sshd with its launcher as the
device's Python, and as the local shortcut emulated:arm64. The bundles run on ARM kernels and
must agree with the export as on x86; latency is never reported for them."""
import json
import subprocess
import sys

import pytest

from edgetl.benchmarking import emulated, session

from conftest import need_tools

need_tools("emulated ARM tests", "qemu-aarch64-static", "debootstrap", "dpkg-deb")
QUICK = dict(warmup=1, iters=2, trials=1)


@pytest.fixture(scope="session")
def arm64():
    """The emulated device with tflite-runtime 2.14 and onnxruntime (aarch64 wheels)."""
    return emulated.build(runtimes=["tflite-runtime", "onnxruntime"], log=lambda *_: None)


def test_the_device_is_built_once_and_says_how_to_use_it(arm64):
    res = subprocess.run([sys.executable, "-m", "edgetl", "device", "emulate", "arm64"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "emulated arm64 device ready" in res.stdout and "--device emulated:arm64" in res.stdout
    assert "installing" not in res.stdout + res.stderr            # nothing rebuilt
    out = subprocess.run([str(arm64), "-c", "import platform, tflite_runtime, onnxruntime; "
                          "print(platform.machine(), tflite_runtime.__version__)"],
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["aarch64", "2.14.0"], out.stderr[-2000:]


def test_bundles_run_on_arm_over_ssh_and_agree_with_the_export(exported, sshd, arm64,
                                                              tmp_path):
    run, manifest = exported
    result = session.benchmark(run, device="ssh://edge-device", ssh_config=sshd["config"](),
                               python=str(arm64), runtimes="tflite-runtime,onnxruntime",
                               out=tmp_path / "b", **QUICK)
    rows = {r["build"]: r for r in result["results"]}
    for name in ("tflite-int8", "tflite-fp32", "tflite-int8-nhwc", "onnx-int8", "onnx-fp32"):
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["emulated"] and row["latency_ms"] is None
        bundle = json.loads((run / "export" / name / "manifest.json").read_text())
        assert row["top1"] == pytest.approx(bundle["eval_top1"], abs=0.051)
        assert row["top1_agreement"] >= (0.995 if "fp32" in name else 0.95)
    assert result["machine"]["machine"] == "aarch64" and result["machine"]["emulated"]
    assert "peak" not in result["machine"]        # never probed under qemu (it takes minutes)
    assert "emulated CPU" in (tmp_path / "b" / "report.md").read_text()


def test_the_emulated_profile_gives_accuracy_verdicts_and_predicted_floors(exported, arm64,
                                                                         tmp_path, capsys):
    run, _ = exported
    from edgetl import cli
    code = cli.main(["bench", str(run), "--target", "raspberry-pi-5-emulated", "--out",
                     str(tmp_path / "pi"), "--iters", "1", "--trials", "1",
                     "--allow-inconclusive"])   # 20 bundle images cannot show top-1 >= 0.85
    text = capsys.readouterr().out
    assert code == 0 and "target raspberry-pi-5-emulated: PASS" in text
    assert "latency not measured: emulated CPU" in text or "emulated CPU" in text
    report = json.loads((tmp_path / "pi" / "report.json").read_text())
    rows = report["results"]
    assert {r["build"] for r in rows} == {"tflite-int8", "tflite-fp32", "onnx-int8"}
    for r in rows:
        assert r["emulated"] and r["latency_ms"] is None and r["predicted_floor_ms"] > 0
        assert "Raspberry Pi" in r["floor_peak"] or "raspberry" in r["floor_peak"]
    for c in report["verdict"]["checks"]:       # accuracy judged on its interval, on ARM
        assert "latency not measured" in c["reason"] and "n=20" in c["reason"], c
        assert c["outcome"] in ("pass", "inconclusive") and c["top1_ci95"]


def test_the_emulated_cpu_is_the_boards_core_so_runtimes_pick_its_kernels(arm64):
    """qemu runs a Cortex-A76 (the Pi 5's core): dot-product, no SVE, in the hardware
    capabilities (AT_HWCAP) that XNNPACK, onnxruntime and numpy pick their kernels from; qemu's
    default 'max' CPU would offer SVE, which the board lacks."""
    code = ("import ctypes; get = ctypes.CDLL(None).getauxval; get.restype = ctypes.c_ulong; "
            "v = get(16); print(bool(v >> 20 & 1), bool(v >> 22 & 1))")  # ASIMDDP, SVE
    out = subprocess.run([str(arm64), "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]
    board = subprocess.run([str(arm64), "-c", code], capture_output=True, text=True,
                           timeout=300, env={**__import__("os").environ, "QEMU_CPU": "max"})
    assert board.stdout.split() == ["True", "True"]       # the check can tell them apart
