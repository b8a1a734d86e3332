"""Export stage on a tiny real run: every build written, run in its own runtime, checked."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgetl
from edgetl.core.files import sha256
from edgetl.exporting import parity, tflite_graph
from edgetl.quantizing import calibration
from edgetl.exporting import onnx as onnx_export


def _artifact(manifest, name):
    return next(a for a in manifest["artifacts"] if a["name"] == name)


def test_every_build_is_listed_with_its_parity(exported):
    run, manifest = exported
    names = {a["name"] for a in manifest["artifacts"]}
    assert names == {"onnx-fp32", "onnx-fp16", "onnx-int8", "tflite-fp32", "tflite-fp16",
                     "tflite-int8", "tflite-int8-float-io", "tflite-int8-nhwc",
                     "tensorrt-fp16", "tensorrt-int8"}
    on_disk = json.loads((run / "export" / "manifest.json").read_text())
    assert on_disk == manifest
    for a in manifest["artifacts"]:
        path = run / a["path"]
        assert path.stat().st_size == a["size_bytes"]
        assert sha256(path) == a["sha256"]
        if a["format"] != "tensorrt" and a["precision"] != "int8":
            assert a["parity"]["passed"], a
            assert a["test_top1"] >= 0.9
    fp32 = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert all(a["parity"]["top1_agreement"] >= 0.995 for a in fp32)


def test_int8_builds_agree_with_the_quantized_reference(exported):
    run, manifest = exported
    for a in manifest["artifacts"]:
        if a["precision"] == "int8" and a["format"] != "tensorrt":
            assert a["parity"]["passed"], a
    assert manifest["quantization"]["method"] == "qat"
    assert not list(run.glob(".export.tmp*"))


def test_int8_parity_leaves_out_only_near_ties_of_the_reference():
    step = 0.025                                  # the int8 output scale
    reference = np.array([[40, 38, 0], [40, 20, 0], [-3, 10, 5], [7, 7, 1]]) * step
    assert parity.decided_samples(reference.astype(np.float32)).tolist() == \
        [False, True, True, False]


def test_int8_tflite_is_fully_integer_and_small(exported):
    run, manifest = exported
    int8 = (run / _artifact(manifest, "tflite-int8")["path"]).read_bytes()
    inv = tflite_graph.op_inventory(int8)
    assert tflite_graph.integer_violations(inv, nchw_input=True) == [], inv
    assert inv["io"] == {"input": "INT8", "output": "INT8"}
    assert inv["ops"].get("TRANSPOSE", 0) <= 1 and "QUANTIZE" not in inv["ops"]
    nhwc = tflite_graph.op_inventory(
        (run / _artifact(manifest, "tflite-int8-nhwc")["path"]).read_bytes())
    assert tflite_graph.integer_violations(nhwc, nchw_input=False) == [], nhwc
    float_io = tflite_graph.op_inventory(
        (run / _artifact(manifest, "tflite-int8-float-io")["path"]).read_bytes())
    assert float_io["io"] == {"input": "FLOAT32", "output": "FLOAT32"}
    assert float_io["ops"]["QUANTIZE"] == 1 and float_io["ops"]["DEQUANTIZE"] == 1
    assert tflite_graph.integer_violations(float_io, nchw_input=True) == []
    fp32_size = _artifact(manifest, "tflite-fp32")["size_bytes"]
    assert _artifact(manifest, "tflite-int8")["size_bytes"] <= 0.30 * fp32_size
    assert _artifact(manifest, "tflite-fp16")["size_bytes"] <= 0.55 * fp32_size


def test_every_artifact_carries_its_preprocessing(exported):
    run, manifest = exported
    tfl = tflite_graph.read_metadata((run / _artifact(manifest, "tflite-int8")["path"])
                                     .read_bytes(), "edgetl")
    onx = onnx_export.read_metadata((run / _artifact(manifest, "onnx-int8")["path"])
                                    .read_bytes())
    for meta in (tfl, onx):
        assert meta["spec"]["labels"] == ["class0", "class1", "class2"]
        assert meta["spec"]["img_size"] == 48 and len(meta["spec"]["mean"]) == 3
        assert meta["source_checkpoint_sha256"] == manifest["source_checkpoint_sha256"]
    assert tfl["quantization"]["scheme"]["activations"].startswith("int8 symmetric")


def test_qdq_onnx_is_symmetric_and_tensorrt_ready(exported):
    run, manifest = exported
    data = (run / _artifact(manifest, "tensorrt-int8")["path"]).read_bytes()
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in quant:
        if len(node.input) > 2 and node.input[2] in inits:
            assert np.all(inits[node.input[2]] == 0)
    assert onnx_export.tensorrt_readiness(data) == []
    trt = run / "export" / "tensorrt-int8"
    assert (trt / "build_engine.py").is_file() and "trtexec --onnx=" in \
        (trt / "trtexec.sh").read_text()
    assert json.loads((trt / "build_settings.json").read_text())["explicit_quantization"]


def test_tensorrt_bundles_build_on_tensorrt_10_and_11_from_files_checked_here(exported,
                                                                             tmp_path):
    """TensorRT is not here: each ONNX file a TensorRT bundle builds from is checked in
    onnxruntime with the gates of every build, and only then stamped ready."""
    from edgetl.exporting import build_engine
    run, manifest = exported
    for name, strong_file in (("tensorrt-fp16", "model.fp16.onnx"),
                              ("tensorrt-int8", "model.int8.fp16.onnx")):
        folder, a = run / "export" / name, _artifact(manifest, name)
        bundle = json.loads((folder / "manifest.json").read_text())
        lines = json.loads((folder / "build_settings.json").read_text())["tensorrt"]
        assert not lines["11"]["builder_flags"] and lines["11"]["strongly_typed"]
        assert lines["11"]["onnx"] == strong_file and strong_file in bundle["sha256"]
        assert lines["10"]["onnx"] == bundle["model_file"] and "FP16" in \
            lines["10"]["builder_flags"]
        assert build_engine.line_for({"tensorrt": lines}, "10.3.0") == lines["10"]
        assert build_engine.line_for({"tensorrt": lines}, "8.6.1") == lines["10"]
        assert build_engine.line_for({"tensorrt": lines}, "11.4.0") == lines["11"]
        files = a["parity"]["files"]
        assert set(files) == {lines["10"]["onnx"], lines["11"]["onnx"]}
        assert all(f["passed"] and f["held_out_top1"] is not None for f in files.values()), files
        assert a["tensorrt_ready"] is True and a["runtime"] == "onnxruntime (stand-in)"
        model = onnx.load(str(folder / strong_file))
        onnx.checker.check_model(model)
        floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
        kinds = {i.data_type for i in model.graph.initializer} & floats
        assert kinds == {onnx.TensorProto.FLOAT16}      # every float tensor at fp16
        assert onnx_export.tensorrt_readiness(model.SerializeToString()) == []
    int8 = onnx.load(str(run / "export" / "tensorrt-int8" / "model.int8.fp16.onnx"))
    assert max(o.version for o in int8.opset_import if o.domain in ("", "ai.onnx")) >= 19
    assert int8.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # trtexec.sh by hand: a trtexec on PATH that prints what it was given
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "trtexec").write_text("#!/bin/sh\necho \"$@\"\n")
    (shim / "trtexec").chmod(0o755)
    env = {"PATH": f"{shim}:/usr/bin:/bin"}
    said = {v: subprocess.run(["sh", "trtexec.sh", v], cwd=run / "export" / "tensorrt-int8",
                              capture_output=True, text=True, env=env).stdout
            for v in ("10", "11")}
    assert "--onnx=model.int8.onnx " in said["10"] and "--int8 --fp16" in said["10"]
    assert "--onnx=model.int8.fp16.onnx " in said["11"] and "--int8" not in said["11"] \
        and "--fp16" not in said["11"]


def test_tensorrt_readiness_rejects_asymmetric_quantization(exported):
    run, manifest = exported
    model = onnx.load_from_string((run / _artifact(manifest, "tensorrt-int8")["path"])
                                  .read_bytes())
    zero_points = {n.input[2] for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2}
    inits = [i for i in model.graph.initializer if i.name in zero_points]
    consts = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] in zero_points]
    assert inits or consts, "QuantizeLinear zero points not found"
    if inits:
        arr = numpy_helper.to_array(inits[0])
        inits[0].CopyFrom(numpy_helper.from_array(np.full_like(arr, 3), inits[0].name))
    else:
        arr = numpy_helper.to_array(consts[0].attribute[0].t)
        consts[0].attribute[0].t.CopyFrom(numpy_helper.from_array(np.full_like(arr, 3)))
    problems = onnx_export.tensorrt_readiness(model.SerializeToString())
    assert problems and "zero point" in problems[0]


def test_bundle_runner_alone_reproduces_eval_top1(exported):
    run, manifest = exported
    for name in ("tflite-int8", "onnx-int8", "tflite-int8-nhwc"):
        folder = run / "export" / name
        inside = subprocess.run([sys.executable, "run.py", "--json", "r.json"], cwd=folder,
                                capture_output=True, text=True, timeout=300)
        assert inside.returncode == 2 and "write it elsewhere" in inside.stderr  # stays sealed
        out = subprocess.run([sys.executable, "run.py", "--json", f"../{name}.json"],
                             cwd=folder, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        bundle = json.loads((folder / "manifest.json").read_text())
        assert result["top1"] == bundle["eval_top1"] and result["n"] == 20
        assert json.loads((folder.parent / f"{name}.json").read_text())["top1"] == \
            result["top1"]
        for key in ("latency_ms", "runtime", "runtime_version"):
            assert key in result


def test_bundle_runner_classifies_image_files(exported, tmp_path):
    run, _ = exported
    from conftest import draw
    import random
    draw(2, random.Random(7)).save(tmp_path / "blue.png")
    folder = run / "export" / "tflite-int8-float-io"
    out = subprocess.run([sys.executable, "run.py", str(tmp_path / "blue.png")], cwd=folder,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["predictions"][0]["label"] == "class2"


def test_runner_in_a_pi_like_venv_with_tflite_runtime(exported, pi_like_venv):
    run, _ = exported
    listing = subprocess.run([str(pi_like_venv), "-m", "pip", "list"], capture_output=True,
                             text=True).stdout.lower()
    assert "torch" not in listing and "edgetl" not in listing
    for name in ("tflite-int8", "tflite-int8-float-io", "tflite-fp32"):
        folder = run / "export" / name
        out = subprocess.run([str(pi_like_venv), "run.py"], cwd=folder, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["runtime"] == "tflite-runtime" and result["runtime_version"] == "2.14.0"
        assert result["top1"] == json.loads((folder / "manifest.json").read_text())["eval_top1"]


def test_ptq_with_histogram_observer_records_a_replayable_calibration_set(exported, tmp_path):
    import shutil
    run, _ = exported
    shutil.copytree(run / "train", tmp_path / "run" / "train")
    manifest = edgetl.export(tmp_path / "run", formats="onnx", precisions="int8", quant="ptq",
                             calib_size=12, observer="histogram", bundle_size=8)
    assert manifest["quantization"]["method"] == "ptq"
    recorded = tmp_path / "run" / "export" / "calibration.json"
    samples = calibration.replay(recorded)
    assert len(samples) == 12 and sorted({y for _, y in samples}) == [0, 1, 2]
    image = Path(samples[0][0])
    original = image.read_bytes()              # the shared run's data: restored afterwards
    try:
        image.write_bytes(b"changed")
        with pytest.raises(edgetl.DataError, match="changed or vanished"):
            calibration.replay(recorded)
    finally:
        image.write_bytes(original)
    assert len(calibration.replay(recorded)) == 12
    kept = tmp_path / "calibration" / "clothing-12.json"     # kept for other runs
    kept.parent.mkdir()
    shutil.copy(recorded, kept)
    again = edgetl.export(tmp_path / "run", overwrite=True, formats="onnx", precisions="int8",
                          quant="ptq", calib_manifest=str(kept), bundle_size=8)
    replayed = json.loads((tmp_path / "run" / "export" / "calibration.json").read_text())
    assert [f["path"] for f in replayed["files"]] == [p for p, _ in samples]
    assert again["quantization"]["calib_size"] == 12


def test_bad_export_requests_fail_clearly_and_leave_nothing_half_written(exported, tmp_path):
    run, manifest = exported
    with pytest.raises(edgetl.RunError, match="edgetl train"):
        edgetl.export(tmp_path / "empty")
    with pytest.raises(edgetl.ConfigError, match="unknown format 'coreml'"):
        edgetl.export(run, formats="coreml")
    with pytest.raises(edgetl.ConfigError, match="unknown precision 'int4'"):
        edgetl.export(run, precisions="int4")
    with pytest.raises(edgetl.RunError, match="--overwrite"):
        edgetl.export(run, formats="onnx", precisions="fp32")
    before = (run / "export" / "manifest.json").read_text()
    with pytest.raises(edgetl.DataError, match="calib-size"):
        edgetl.export(run, formats="onnx", precisions="int8", quant="ptq", calib_size=10 ** 6,
                      overwrite=True)
    assert (run / "export" / "manifest.json").read_text() == before
    assert not list(run.glob(".export.tmp*"))


def test_cli_export_prints_the_table(exported, tmp_path):
    run, _ = exported
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(run / "train", copy / "train")
    res = subprocess.run([sys.executable, "-m", "edgetl", "export", str(copy), "--formats",
                          "onnx", "--precision", "fp32"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "onnx-fp32" in res.stdout and "agreement" in res.stdout
