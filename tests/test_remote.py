"""Remote devices: the SSH path against a real OpenSSH server on 127.0.0.1 (throwaway keys,
a Pi-like Python), its failure modes, and the adb benchmark_model parser on real output."""
import getpass
import subprocess
import time

import pytest

from edgetl.benchmarking import session
from edgetl.benchmarking.adb import parse_benchmark_model

from conftest import free_port

QUICK = dict(warmup=1, iters=5, trials=2)


def test_bench_over_ssh_runs_the_bundle_with_the_devices_python(exported, sshd, pi_like_venv,
                                                                tmp_path):
    run, _ = exported
    bundle = run / "export" / "tflite-int8"
    result = session.benchmark(bundle, device="ssh://edge-device", ssh_config=sshd["config"](),
                         python=str(pi_like_venv), threads=1, out=tmp_path / "a", **QUICK)
    row = result["results"][0]
    assert row["status"] == "ok", row
    assert (row["runtime"], row["runtime_version"]) == ("tflite-runtime", "2.14.0")
    manifest = __import__("json").loads((bundle / "manifest.json").read_text())
    assert row["top1"] == pytest.approx(manifest["eval_top1"], abs=0.051)
    assert row["latency_ms"]["p50"] > 0 and row["threads"] == 1
    assert result["machine"]["device"] == "ssh://edge-device" and result["machine"]["peak"]
    assert (tmp_path / "a" / "report.json").is_file()
    user = getpass.getuser()
    url = f"ssh://{user}@127.0.0.1:{sshd['port']}"          # the URL form, port given in it
    result = session.benchmark(bundle, device=url, ssh_config=sshd["config"](), out=tmp_path / "b",
                         python=str(pi_like_venv), runtimes="tflite-runtime", **QUICK)
    assert result["results"][0]["status"] == "ok", result["results"][0]


@pytest.mark.parametrize("case, message", [
    ("unknown host key", "unknown or changed host key"),
    ("wrong key", "authentication refused"),
    ("closed port", "connection refused"),
    ("no python", "no '/nonexistent/python3' on the device"),
    ("no runtime", "onnxruntime is not installed"),
    ("hang", "no answer within"),
])
def test_ssh_faults_get_one_clear_line_and_the_report_is_kept(exported, sshd, pi_like_venv,
                                                             tmp_path, case, message):
    run, _ = exported
    bundle = run / "export" / ("onnx-fp32" if case == "no runtime" else "tflite-int8")
    kw = dict(device="ssh://edge-device", ssh_config=sshd["config"](), python=str(pi_like_venv),
              out=tmp_path, **QUICK)
    if case == "unknown host key":
        kw["ssh_config"] = sshd["config"](known="empty_known_hosts", name="c2")
    elif case == "wrong key":
        kw["ssh_config"] = sshd["config"](key=sshd["stranger"], name="c3")
    elif case == "closed port":
        kw["device"] = f"ssh://{getpass.getuser()}@127.0.0.1:{free_port()}"
    elif case == "no python":
        kw["python"] = "/nonexistent/python3"
    elif case == "hang":                        # a runner that never answers
        hang = tmp_path / "hanging-python"
        hang.write_text("#!/bin/sh\nexec sleep 299\n")
        hang.chmod(0o755)
        kw.update(python=str(hang), timeout=2)
    result = session.benchmark(bundle, **kw)
    row = result["results"][0]
    assert row["status"] in ("failed", "skipped") and message in row["error"], row["error"]
    assert "\n" not in row["error"] and ("edge-device" in row["error"] or "127.0.0.1" in
                                         row["error"])
    assert (tmp_path / "report.json").is_file()
    if case == "hang":                          # stopped on the device too: no orphan left
        left = subprocess.run(["pgrep", "-f", "sleep 299"], capture_output=True, text=True)
        assert left.stdout.strip() == "", left.stdout


# Real benchmark_model output: TFLite 2.x on a QEMU aarch64 board (mobilenet_v1, op profiling
# trimmed) and a newer build logging through Android logcat with percentiles.
OLD = """STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [./mobilenet_v1_1.0_224.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model ./mobilenet_v1_1.0_224.tflite
The input model file size (MB): 16.9008
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""
NEW = """I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533
I tflite  : Inference timings in us: Init: 92318, First inference: 187533, Warmup (avg): 211669, Inference (avg): 145528
I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
"""


def test_benchmark_model_output_is_parsed():
    old = parse_benchmark_model(OLD)
    assert old["load_ms"] == pytest.approx(17.187) and old["threads"] == 4
    assert old["first_inference_ms"] == pytest.approx(3512.391)
    assert old["latency_ms"]["mean"] == pytest.approx(2950.34)
    assert old["latency_ms"]["runs"] == 50 and old["latency_ms"]["std"] == pytest.approx(109.798)
    assert old["peak_rss_mb"] == pytest.approx(46.0859)
    new = parse_benchmark_model(NEW)
    assert new["latency_ms"]["p50"] == pytest.approx(141.253)
    assert new["latency_ms"]["p95"] == pytest.approx(187.533)
    assert new["latency_ms"]["mean"] == pytest.approx(145.528)
    assert new["peak_rss_mb"] == pytest.approx(73.4102)
    with pytest.raises(Exception, match="no 'Inference timings' line.*Segmentation fault"):
        parse_benchmark_model("STARTING!\nLoaded model m.tflite\nSegmentation fault\n")


# executor_runner's log. No run of it was captured (no phone, and the executorch wheel ships no
# runner binary): these lines follow the ET_LOG format strings of
# examples/portable/executor_runner/executor_runner.cpp (pytorch/executorch 018a3a5) with the
# log prefix of a real run's output (pytorch/executorch issue 1231), whose older runner logged
# no times at all.
EXECUTOR_RUNNER = """I 00:00:00.000412 executorch:executor_runner.cpp:327] Resetting threadpool with num threads = 4
I 00:00:00.003187 executorch:executor_runner.cpp:402] Model file /data/local/tmp/edgetl_executorch-int8.pte is loaded.
I 00:00:00.003201 executorch:executor_runner.cpp:411] Using method forward
I 00:00:00.021954 executorch:executor_runner.cpp:571] Model loaded in 18.412000 ms.
I 00:00:00.052811 executorch:executor_runner.cpp:711] Iteration 1 of 5: 30.551000 ms
I 00:00:00.064301 executorch:executor_runner.cpp:711] Iteration 2 of 5: 11.402000 ms
I 00:00:00.075552 executorch:executor_runner.cpp:711] Iteration 3 of 5: 11.187000 ms
I 00:00:00.087121 executorch:executor_runner.cpp:711] Iteration 4 of 5: 11.493000 ms
I 00:00:00.098390 executorch:executor_runner.cpp:711] Iteration 5 of 5: 11.201000 ms
I 00:00:00.098402 executorch:executor_runner.cpp:720] Model executed successfully 5 time(s) in 75.834000 ms.
I 00:00:00.098410 executorch:executor_runner.cpp:726] 1 outputs:
"""
OLD_EXECUTOR_RUNNER = """I 00:00:00.382397 executorch:executor_runner.cpp:133] Model file ./resnet18.pte is loaded.
I 00:00:00.437405 executorch:executor_runner.cpp:219] Inputs prepared.
I 00:02:23.767346 executorch:executor_runner.cpp:228] Model executed successfully.
"""


def test_executor_runner_output_is_parsed_warm_up_left_out():
    from edgetl.benchmarking.adb import parse_executor_runner
    row = parse_executor_runner(EXECUTOR_RUNNER, warmup=1)
    assert row["load_ms"] == pytest.approx(18.412) and row["threads"] == 4
    assert row["first_inference_ms"] == pytest.approx(30.551)
    lat = row["latency_ms"]
    assert lat["runs"] == 4 and lat["max"] == pytest.approx(11.493)     # the first left out
    assert lat["p50"] == pytest.approx((11.201 + 11.402) / 2)
    total_only = parse_executor_runner(EXECUTOR_RUNNER.replace("Iteration", "Step"), warmup=1)
    assert total_only["latency_ms"]["mean"] == pytest.approx(75.834 / 5)
    assert "warm-up included" in total_only["latency_ms"]["note"]
    with pytest.raises(Exception, match="time\\(s\\) in X ms' line.*too old to time"):
        parse_executor_runner(OLD_EXECUTOR_RUNNER)            # a runner too old to time


def test_a_stopped_ssh_bench_stops_its_runner_on_the_device(exported, sshd, tmp_path):
    """Ctrl-C or SIGTERM here, or a lost link: the device's watchdog stops the runner within
    seconds (not at --timeout), so the next bench there is not measured under its load."""
    import signal
    import sys
    import time
    run, _ = exported
    hang = tmp_path / "hanging-python"
    hang.write_text("#!/bin/sh\nexec sleep 295\n")
    hang.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "edgetl", "bench",
                             str(run / "export" / "tflite-int8"), "--device", "ssh://edge-device",
                             "--ssh-config", sshd["config"](), "--python", str(hang),
                             "--timeout", "300", "--out", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = lambda: subprocess.run(["pgrep", "-f", "sleep 295"], capture_output=True,
                                     text=True).stdout.strip()
    deadline = time.time() + 60
    while time.time() < deadline and not running():
        time.sleep(0.2)
    assert running(), "the runner never started on the device"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    deadline = time.time() + 15
    while time.time() < deadline and running():
        time.sleep(0.5)
    assert not running(), "the runner outlived the bench on the device"


def test_a_runner_killed_on_the_device_is_not_called_a_timeout(exported, sshd, tmp_path):
    run, _ = exported
    oom = tmp_path / "oom-python"
    oom.write_text("#!/bin/sh\nkill -9 $$\n")
    oom.chmod(0o755)
    row = session.benchmark(run / "export" / "tflite-int8", device="ssh://edge-device",
                            ssh_config=sshd["config"](), python=str(oom), out=tmp_path,
                            **QUICK)["results"][0]
    assert row["status"] == "failed" and "killed on the device (signal 9)" in row["error"]
    assert "no answer within" not in row["error"]


def test_code_dropped_into_a_bundle_never_runs_on_the_device(exported, sshd, pi_like_venv,
                                                            tmp_path):
    import shutil
    run, _ = exported
    bundle = tmp_path / "tflite-int8"
    shutil.copytree(run / "export" / "tflite-int8", bundle)
    mark = tmp_path / "RAN"
    (bundle / "numpy.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    row = session.benchmark(bundle, device="ssh://edge-device", ssh_config=sshd["config"](),
                            python=str(pi_like_venv), out=tmp_path / "b", **QUICK)["results"][0]
    assert row["status"] == "failed" and "numpy.py: not listed in the manifest" in row["error"]
    assert not mark.exists()


def test_a_bundle_of_an_older_edgetl_is_checked_and_measured_as_it_is(exported, sshd,
                                                                     pi_like_venv, tmp_path):
    """The bundle travels unchanged (its own run.py included, checked against its own hash)
    and this edgetl's runner measures it from outside the bundle."""
    import json
    import shutil
    from edgetl.exporting.bundle import seal
    run, _ = exported
    bundle = tmp_path / "tflite-int8"
    shutil.copytree(run / "export" / "tflite-int8", bundle)
    older = (bundle / "run.py").read_text().replace('"""Standalone runner', '"""(an older '
                                                    'edgetl) Standalone runner', 1)
    (bundle / "run.py").write_text(older)
    manifest = json.loads((bundle / "manifest.json").read_text())
    seal(bundle, manifest)                               # as that edgetl sealed it
    row = session.benchmark(bundle, device="ssh://edge-device", ssh_config=sshd["config"](),
                            python=str(pi_like_venv), out=tmp_path / "b", **QUICK)["results"][0]
    assert row["status"] == "ok", row
    assert (bundle / "run.py").read_text() == older       # not replaced, here or there


def test_device_check_says_what_a_device_lacks_before_a_long_run(sshd, pi_like_venv, tmp_path,
                                                                  image_folder):
    """`edgetl device check` over a real SSH connection to a Pi-like Python (numpy<2 and
    tflite-runtime only): ready for the Pi profile; for the Jetson's, TensorRT and a GPU are
    named with their fix; `edgetl run` refuses before training when the device is not ready."""
    from conftest import cli, one_line
    ssh = ["--ssh-config", sshd["config"](), "--python", str(pi_like_venv)]
    res = cli("device", "check", "ssh://edge-device", "--target", "raspberry-pi-5", *ssh)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ssh://edge-device: ready" in res.stdout and "runtime tflite-runtime: 2.14.0" \
        in res.stdout and "numpy: 1." in res.stdout
    res = cli("device", "check", "ssh://edge-device", "--target", "jetson-orin-nano", *ssh)
    assert res.returncode == 2 and "NOT ready" in res.stdout
    assert "MISSING runtime tensorrt: not installed  -> JetPack: sudo apt install " \
        "python3-libnvinfer" in res.stdout and "MISSING CUDA GPU: 0 device(s)" in res.stdout
    t0 = time.time()
    line = one_line(cli("run", image_folder, "--target", "raspberry-pi-5", "--out",
                        tmp_path / "run", "--device", "ssh://edge-device", "--ssh-config",
                        sshd["config"](), "--python", "/nonexistent/python3", "--epochs", "1"))
    assert "is not ready for raspberry-pi-5" in line and "nothing was trained" in line
    assert time.time() - t0 < 60 and not (tmp_path / "run" / "train").exists()
