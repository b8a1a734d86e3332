#!/usr/bin/env python3
"""Build a TensorRT engine from this bundle's ONNX file on the device that will run it.

  python3 build_engine.py            reads build_settings.json, writes model.<precision>.plan

Uses the TensorRT Python API and chooses by its major version (build_settings.json has one entry
per line): TensorRT 8.6/10 (JetPack 6) builds with precision flags from the ONNX file with fp32
float parts; TensorRT 11 (strongly typed: no precision flags) from the file whose float parts are
fp16. int8 is explicit quantization from the QDQ nodes either way; an optimization profile spans
the batch dimension. The bundle runner calls `cached_or_build`: one engine per (ONNX sha256,
TensorRT version, GPU), kept in a cache folder and written atomically, so a bench builds it once
and every trial reuses it. Needs what JetPack ships: TensorRT's Python package and libcudart.
"""
import hashlib
import json
import os
import sys


class EngineBuildError(Exception):
    """TensorRT could not parse the ONNX file or build the engine."""


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomically(path, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _gpu_name() -> str:
    """The GPU's compute capability through libcudart (what TensorRT itself loads)."""
    import ctypes
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
        try:
            cudart = ctypes.CDLL(name)
        except OSError:
            continue
        major, minor = ctypes.c_int(), ctypes.c_int()
        if cudart.cudaDeviceGetAttribute(ctypes.byref(major), 75, 0) == 0 and \
                cudart.cudaDeviceGetAttribute(ctypes.byref(minor), 76, 0) == 0:
            return f"sm_{major.value}{minor.value}"     # 75, 76: compute capability
    return "unknown"


def line_for(s: dict, version: str) -> dict:
    """The settings of the TensorRT line `version` belongs to: 11 and later strongly typed,
    earlier ones with precision flags."""
    return s["tensorrt"]["11" if int(version.split(".")[0]) >= 11 else "10"]


def serialize(onnx_path: str, s: dict) -> bytes:
    import tensorrt as trt
    line = line_for(s, trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in ("EXPLICIT_BATCH", "STRONGLY_TYPED" if line["strongly_typed"] else ""):
        if hasattr(trt.NetworkDefinitionCreationFlag, name):     # gone where it is the default
            flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s["workspace_mb"] << 20)
    for flag in line["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    shape = lambda b: (b, 3, s["img_size"], s["img_size"])
    profile.set_shape(s["input"], shape(s["min_batch"]), shape(s["opt_batch"]),
                      shape(s["max_batch"]))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError("TensorRT engine build failed (see the log above)")
    return bytes(plan)


def _check_owner(path: str) -> None:
    """A cached engine is code TensorRT runs: never one another user could have written."""
    if not os.path.exists(path):
        return
    st = os.stat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise EngineBuildError(f"{path} belongs to another user or others may write to it: "
                               "not loading it; set EDGETL_ENGINE_CACHE to a folder of your own")


def cached_or_build(folder: str, settings_path: str, cache_dir: str) -> str:
    """Path of the engine for the bundle's ONNX file of this TensorRT version, and this GPU:
    reused when its record matches, else built now and written atomically."""
    import tensorrt as trt
    with open(settings_path) as f:
        s = json.load(f)
    onnx_path = os.path.join(folder, line_for(s, trt.__version__)["onnx"])
    record = {"onnx_sha256": _sha256(onnx_path), "tensorrt_version": trt.__version__,
              "gpu": _gpu_name(), "settings": s}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:24]
    os.makedirs(cache_dir, exist_ok=True)
    plan = os.path.join(cache_dir, f"{s['precision']}-{key}.plan")
    for path in (cache_dir, plan, plan + ".json"):
        _check_owner(path)
    try:
        with open(plan + ".json") as f:
            if json.load(f) == record and os.path.isfile(plan):
                return plan
    except (OSError, ValueError):
        pass
    _write_atomically(plan, serialize(onnx_path, s))
    _write_atomically(plan + ".json", json.dumps(record, indent=2).encode())
    return plan


if __name__ == "__main__":
    import tensorrt
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "build_settings.json")) as f:
        settings = json.load(f)
    source = os.path.join(here, line_for(settings, tensorrt.__version__)["onnx"])
    if not os.path.isfile(source):
        sys.exit(f"{source} not found: copy the bundle again from RUN/export/")
    out = os.path.join(here, f"model.{settings['precision']}.plan")
    try:
        _write_atomically(out, serialize(source, settings))
    except EngineBuildError as e:
        sys.exit(str(e))
    print(out)
