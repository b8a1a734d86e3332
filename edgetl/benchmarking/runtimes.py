"""The runtime registry: which runtime runs which format, and whether it is installed here.
(The bundle runner knows how to load each one; this is what the package plans with.)"""
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    name: str
    format: str          # the build format it runs: tflite, onnx, tensorrt, pytorch
    module: str          # what must be importable
    provider: str = ""   # onnxruntime execution provider


REGISTRY = {r.name: r for r in (
    Runtime("litert", "tflite", "ai_edge_litert"),
    Runtime("tflite-runtime", "tflite", "tflite_runtime"),
    Runtime("onnxruntime", "onnx", "onnxruntime", "CPUExecutionProvider"),
    Runtime("onnxruntime-cuda", "onnx", "onnxruntime", "CUDAExecutionProvider"),
    Runtime("onnxruntime-tensorrt", "onnx", "onnxruntime", "TensorrtExecutionProvider"),
    Runtime("tensorrt", "tensorrt", "tensorrt"),
    Runtime("torch", "pytorch", "torch"),
)}
NAMES = tuple(REGISTRY)


def for_format(fmt: str) -> tuple:
    """Names of the runtimes that run builds of `fmt`, in order of preference."""
    return tuple(r.name for r in REGISTRY.values() if r.format == fmt)


def installed(name: str) -> bool:
    rt = REGISTRY[name]
    if importlib.util.find_spec(rt.module) is None:
        return False
    if rt.provider:
        import onnxruntime
        return rt.provider in onnxruntime.get_available_providers()
    if name == "tensorrt":
        import torch
        return torch.cuda.is_available()
    return True
