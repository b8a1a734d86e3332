#!/usr/bin/env python3
"""Build a TensorRT engine from this bundle's ONNX file on the device that will run it.

  python3 build_engine.py            reads build_settings.json, writes model.<precision>.plan

Uses the TensorRT Python API (8.6 or 10.x, as on JetPack 6): explicit quantization from the QDQ
ONNX for int8, an optimization profile over the batch dimension.
"""
import glob
import json
import os
import sys


def build(onnx_path: str, settings_path: str) -> str:
    import tensorrt as trt
    with open(settings_path) as f:
        s = json.load(f)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise SystemExit(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s["workspace_mb"] << 20)
    for flag in s["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    shape = lambda b: (b, 3, s["img_size"], s["img_size"])
    profile.set_shape(s["input"], shape(s["min_batch"]), shape(s["opt_batch"]),
                      shape(s["max_batch"]))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise SystemExit("TensorRT engine build failed (see the log above)")
    out = os.path.join(os.path.dirname(os.path.abspath(onnx_path)),
                       f"model.{s['precision']}.plan")
    with open(out, "wb") as f:
        f.write(plan)
    with open(out + ".json", "w") as f:
        json.dump({"tensorrt_version": trt.__version__, **s}, f, indent=2)
    return out


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    onnx_files = sorted(glob.glob(os.path.join(here, "*.onnx")))
    if not onnx_files:
        sys.exit("no .onnx file next to build_engine.py")
    print(build(onnx_files[0], os.path.join(here, "build_settings.json")))
