"""Full-range int8 weights on x86 CPUs without VNNI: their u8 x s8 kernels add pairs of products
into saturating int16, so onnxruntime's default int8 kernels overflow there. The ONNX bundles
carry session.x64quantprecision, which selects exact kernels. Shown on an emulated Haswell
(AVX2, no VNNI): qemu-user (.ci/run installs qemu-user-static) runs this machine's Python."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import need_tools

QEMU = need_tools("emulated x86 CPU tests", "qemu-x86_64-static")["qemu-x86_64-static"]
SITE = [p for p in sys.path if p.endswith("site-packages")]


def _haswell(args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(SITE + [str(Path.cwd())])}
    return subprocess.run([QEMU, "-cpu", "Haswell", os.path.realpath(sys.executable), *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def _saturating_model(path: Path) -> np.ndarray:
    """One int8 1x1 conv whose products pair up past int16 with full-range weights."""
    w = np.full((4, 64, 1, 1), 120, np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "ys", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "z"], ["out"])]
    inits = [numpy_helper.from_array(np.array(0.01, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
             numpy_helper.from_array(np.array(1.0, np.float32), "ys")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 64, 2, 2])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, [1, 4, 2, 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return np.clip(np.round(64 * 127 * 120 * 1e-4), -128, 127) * np.ones((1, 4, 2, 2))


RUN_SATURATING = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions()
if sys.argv[2] == "exact":
    o.add_session_config_entry("session.x64quantprecision", "1")
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
print(float(s.run(None, {"x": np.full((1, 64, 2, 2), 1.27, np.float32)})[0].max()))
"""


def test_the_emulated_cpu_saturates_without_the_option_and_not_with_it(tmp_path):
    expected = _saturating_model(tmp_path / "sat.onnx").max()
    got = {mode: float(_haswell(["-c", RUN_SATURATING, str(tmp_path / "sat.onnx"), mode])
                       .stdout.strip() or "nan") for mode in ("default", "exact")}
    assert got["exact"] == expected                    # exact with the option
    assert got["default"] < expected - 10              # the AVX2 u8 x s8 kernel saturated


def test_int8_onnx_bundles_predict_the_same_on_an_avx2_cpu(exported):
    run, _ = exported
    folder = run / "export" / "onnx-int8"
    native = json.loads(subprocess.run([sys.executable, "run.py"], cwd=folder, check=True,
                                       capture_output=True, text=True).stdout)
    res = _haswell(["run.py"], cwd=folder)
    assert res.returncode == 0, res.stderr[-2000:]
    haswell = json.loads(res.stdout.strip().splitlines()[-1])
    assert haswell["predictions"] == native["predictions"]
    assert json.loads((folder / "manifest.json").read_text())["runtime_options"] == \
        {"onnxruntime": {"x86_without_vnni": {"session.x64quantprecision": "1"}}}
    assert "session.x64quantprecision=1" in subprocess.run(
        [QEMU, "-cpu", "Haswell", os.path.realpath(sys.executable), "run.py", "--bench",
         "--iters", "1", "--warmup", "0", "--trials", "1", "--no-score"], cwd=folder,
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(SITE)}).stdout
