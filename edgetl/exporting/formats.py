"""The format table: one entry per deployable format, read by export (how to build it from the
converted graph), the bundle (its file name, I/O description and extras), the runner's planning
(which runtimes run it) and the bench (which devices take it). Adding a format is one module
that builds its bytes plus one entry here; tests/test_formats.py walks the table.

Converters import their heavy libraries (litert-torch, onnx) only when they run."""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..bundle_runner import runtimes_for

# x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 pairs into saturating int16; with
# full-range int8 weights onnxruntime's default kernels overflow there. This option makes it use
# exact u8 x u8 kernels (tests/test_emulated_cpu.py shows both on an emulated Haswell); on CPUs
# with VNNI it only slows int8 down, so the runner sets it where the CPU lacks VNNI. Anyone
# loading the .onnx with their own code on such a CPU must set it too.
ORT_INT8_OPTIONS = {"x86_without_vnni": {"session.x64quantprecision": "1"}}


def _onnx_graph(source, build, spec, meta) -> bytes:
    from . import onnx as onnx_export
    return onnx_export.build(source, build.precision, spec.img_size, metadata=meta)


def _tflite_graph(source, build, spec, meta) -> bytes:
    from . import tflite
    return tflite.convert(source, build.precision, spec.img_size, build_layout(build))


def _executorch_graph(source, build, spec, meta) -> bytes:
    from . import executorch
    return executorch.lower(source, build.precision, spec.img_size, meta)


def _onnx_file(graph: bytes, build, meta) -> bytes:
    if build.precision != "int8":
        return graph
    import onnx
    from . import onnx_ort                      # onnxruntime's own integer form
    return onnx_ort.for_onnxruntime(onnx.load_from_string(graph)).SerializeToString()


def _tflite_file(graph: bytes, build, meta) -> bytes:
    from . import tflite
    return tflite.finish(graph, "float" if build.variant == "float-io" else "int8", meta)


def _tensorrt_file(graph: bytes, build, meta) -> bytes:
    from . import onnx as onnx_export
    onnx_export.check_tensorrt_ready(graph, f"{build.name} ({model_file(build)})")
    return graph


def _float_io(build, model_path, spec) -> tuple:
    """(input, output) of an ONNX-family file: float NCHW in, logits out."""
    dtype = "float16" if build.precision == "fp16" else "float32"
    return ({"name": "input", "shape": ["batch", 3, spec.img_size, spec.img_size],
             "dtype": dtype, "layout": "NCHW", "quantization": None},
            {"name": "logits", "shape": ["batch", len(spec.labels)], "dtype": dtype,
             "quantization": None})


def _batch_one_io(build, model_path, spec) -> tuple:
    """(input, output) of a program exported at batch 1 (ExecuTorch)."""
    inp, out = _float_io(build, model_path, spec)
    return {**inp, "shape": [1] + inp["shape"][1:]}, {**out, "shape": [1] + out["shape"][1:]}


def _tflite_io(build, model_path, spec) -> tuple:
    """(input, output) read from the .tflite file itself (int8 I/O carries its scales)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(model_path))
    section = lambda d: {"name": d["name"], "shape": d["shape"].tolist(),
                         "dtype": np.dtype(d["dtype"]).name,
                         "quantization": {"scale": float(d["quantization"][0]),
                                          "zero_point": int(d["quantization"][1])}
                         if d["quantization"][0] else None}
    return ({**section(it.get_input_details()[0]), "layout": build_layout(build)},
            section(it.get_output_details()[0]))


def _onnx_extras(folder, build, spec, meta) -> dict:
    return {"runtime_options": {"onnxruntime": ORT_INT8_OPTIONS}} \
        if build.precision == "int8" else {}


def _tensorrt_extras(folder, build, spec, meta) -> dict:
    from . import tensorrt
    floats = (meta.get("quantization") or {}).get("float_blocks", [])
    return {"tensorrt": tensorrt.write_bundle_files(folder, model_file(build), build.precision,
                                                    spec.img_size, floats)}


def _executorch_extras(folder, build, spec, meta) -> dict:
    """What XNNPACK runs and what stays on portable kernels, read from the program."""
    from . import executorch
    return {"executorch": executorch.delegation((folder / model_file(build)).read_bytes())}


def _tensorrt_stand_ins(bundle) -> list:
    from . import tensorrt
    int8 = bundle["precision"] == "int8"
    return tensorrt.stand_ins(bundle, ORT_INT8_OPTIONS if int8 else {})


def _tensorrt_here() -> bool:
    from . import tensorrt
    return tensorrt.available()


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str                       # of the model file in the bundle
    precisions: tuple                 # what it is built at
    graph: Callable                   # (source, build, spec, meta) -> bytes, once per graph key
    graph_key: str                    # formats with the same key share the converted graph
    finish: Callable                  # (graph bytes, build, meta) -> the deployable file
    io: Callable = _float_io          # (build, model path, spec) -> (input, output) sections
    extras: Callable = None           # (folder, build, spec, meta) -> manifest additions
    variants: dict = field(default_factory=dict)   # precision -> extra variants of it
    file_per_precision: bool = False  # model.<precision><suffix> (TensorRT: the engine's name)
    runs_here: Callable = lambda: True   # can the export check it on this machine?
    needs_gpu: bool = False           # an emulated CPU cannot run it
    phone_tool: str = ""              # the vendor's timing binary on adb phones (adb.py's table)
    package: tuple = ()               # (module, pip requirement) the export needs beyond edgetl's
    stand_ins: Callable = None        # (bundle) -> [(file, runner manifest)]: where its runtime
                                      # is not here, each file is checked in onnxruntime instead

    @property
    def runtimes(self) -> tuple:
        """The runner's runtimes for it, in order of preference (the runner's table)."""
        return runtimes_for(self.name)


FORMATS = {f.name: f for f in (
    Format("onnx", ".onnx", ("fp32", "fp16", "int8"), _onnx_graph, "onnx", _onnx_file,
           extras=_onnx_extras),
    Format("tflite", ".tflite", ("fp32", "fp16", "int8"), _tflite_graph, "tflite", _tflite_file,
           io=_tflite_io, variants={"int8": ("float-io", "nhwc")}, phone_tool="benchmark_model"),
    Format("tensorrt", ".onnx", ("fp16", "int8"), _onnx_graph, "onnx", _tensorrt_file,
           extras=_tensorrt_extras, file_per_precision=True, runs_here=_tensorrt_here,
           needs_gpu=True, stand_ins=_tensorrt_stand_ins),
    Format("executorch", ".pte", ("fp32", "fp16", "int8"), _executorch_graph, "executorch",
           lambda graph, build, meta: graph, io=_batch_one_io, extras=_executorch_extras,
           package=("executorch.exir", "edgetl[executorch]"), phone_tool="executor_runner"),
)}


def missing_package(fmt_name: str) -> str:
    """The pip requirement a format's export lacks here, or ''."""
    import importlib.util
    package = FORMATS[fmt_name].package
    try:
        return package[1] if package and importlib.util.find_spec(package[0]) is None else ""
    except ModuleNotFoundError:             # its parent package is missing too
        return package[1]


def build_layout(build) -> str:
    return "NHWC" if build.variant == "nhwc" else "NCHW"


def model_file(build) -> str:
    fmt = FORMATS[build.format]
    return (f"model.{build.precision}" if fmt.file_per_precision else "model") + fmt.suffix


def graph_key(build) -> tuple:
    """Builds with the same key share one converted graph (`convert`), each then `finish`ed."""
    return FORMATS[build.format].graph_key, build.precision, build_layout(build)


def convert(source, build, spec, meta) -> bytes:
    """The converted graph of `build`'s key, from the float model or the int8 graph."""
    return FORMATS[build.format].graph(source, build, spec, meta)


def finish(build, graph: bytes, meta) -> bytes:
    """The deployable file of `build` from its key's converted graph."""
    return FORMATS[build.format].finish(graph, build, meta)
