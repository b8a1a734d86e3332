#!/usr/bin/env python3
"""Standalone runner of an edgetl deployment bundle (copied into every bundle as run.py).

Needs only numpy and the bundle's runtime (ai-edge-litert or tflite-runtime for .tflite,
onnxruntime for .onnx); Pillow only to classify image files. No torch, no edgetl.

  python run.py                 evaluate the bundled set (eval.npz), print one JSON object
  python run.py --json out.json ...and write it to a file too
  python run.py photo1.jpg ...  classify images (needs Pillow)
  python run.py --bench --threads 4 --runtime litert
                                latency (warm-up, trials, p50/p90/p99), accuracy, memory

Every file of the bundle is checked against the sha256 in manifest.json before anything runs.
Image files are decoded and cropped exactly as edgetl's training evaluates them (EXIF rotation,
alpha on white, 16-bit scaled to 8-bit, resize of the shorter side, centre crop); edgetl's test
suite checks the two give the same input tensors.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The bundle's own folder is no import path: a numpy.py (or json.py) dropped beside run.py must
# not run before, or instead of, the sha256 check below.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

EXIT_BUNDLE_ERROR = 2                # the bundle is damaged or inconsistent
EXIT_RUNTIME_MISSING = 3             # the runtime a build needs is not installed here
MAX_ASPECT = 12                      # longer side / shorter side of an image file, at most:
                                     # resizing a 1x1000 strip's short side costs gigabytes


# The runtime table, the one place that knows the runtimes: which build format each runs, the
# package whose version it reports, the module that must import, the onnxruntime execution
# provider, and whether it needs a CUDA GPU. edgetl's planning (benchmarking/runtimes.py) reads
# it from here.
Runtime = collections.namedtuple("Runtime", "format package module provider cuda")
RUNTIMES = {
    "litert": Runtime("tflite", "ai_edge_litert", "ai_edge_litert.interpreter", None, False),
    "tflite-runtime": Runtime("tflite", "tflite_runtime", "tflite_runtime.interpreter", None,
                              False),
    "onnxruntime": Runtime("onnx", "onnxruntime", "onnxruntime", "CPUExecutionProvider", False),
    "onnxruntime-cuda": Runtime("onnx", "onnxruntime", "onnxruntime", "CUDAExecutionProvider",
                                True),
    "onnxruntime-tensorrt": Runtime("onnx", "onnxruntime", "onnxruntime",
                                    "TensorrtExecutionProvider", True),
    "tensorrt": Runtime("tensorrt", "tensorrt", "tensorrt", None, True),
    "executorch": Runtime("executorch", "executorch", "executorch.runtime", None, False),
}


def runtimes_for(fmt: str) -> tuple:
    """The runtimes that run builds of `fmt`, in order of preference."""
    return tuple(name for name, r in RUNTIMES.items() if r.format == fmt)


class BundleError(Exception):
    """The bundle cannot be run as it is (missing or changed files, a bad manifest)."""


class RuntimeMissing(BundleError):
    """The runtime a build needs is not installed here."""


# --- the bundle: manifest and integrity ------------------------------------------------------

def load_manifest(folder=HERE) -> dict:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: cannot read the bundle manifest ({e}); copy the bundle "
                          "again from RUN/export/") from None
    name = manifest.get("model_file", "")
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise BundleError(f"{path}: model_file {name!r} must be a file name inside the bundle")
    return manifest


REQUIRED_FILES = {"tensorrt": ("build_engine.py", "build_settings.json")}   # beside these two:
BUNDLE_FILES = ("eval.npz",)                                                 # + the model file


def mismatched_files(manifest: dict, folder=HERE) -> list:
    """Files of the bundle that are missing, unlisted, or no longer match their sha256. The
    manifest must list every file in the folder (an unlisted file or folder is refused: it
    could be code) and the files each build needs (a manifest without hashes proves nothing)."""
    hashes = manifest.get("sha256") or {}
    needed = (str(manifest.get("model_file")),) + BUNDLE_FILES + \
        REQUIRED_FILES.get(manifest.get("format"), ())
    bad = [f"{os.path.join(folder, n)} (no sha256 in manifest)" for n in needed
           if n not in hashes]
    present = sorted(n for n in os.listdir(folder) if n != "manifest.json")
    bad += [f"{os.path.join(folder, n)}: not listed in the manifest (remove it)" for n in present
            if n not in hashes]
    for name, expected in sorted(hashes.items()):
        path = os.path.join(folder, name)
        if os.path.basename(name) != name or not os.path.isfile(path) or \
                _sha256(path) != expected:
            bad.append(f"{path}: missing or its sha256 no longer matches the manifest")
    return bad


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(manifest: dict, folder=HERE) -> None:
    bad = mismatched_files(manifest, folder)
    if bad:
        raise BundleError(f"{'; '.join(bad)}; copy the bundle again from RUN/export/")


# --- runtimes ---------------------------------------------------------------------------------

def _tflite_interpreter(runtime=None):
    import importlib
    for name in ([runtime] if runtime else runtimes_for("tflite")):
        package, module = RUNTIMES[name].package, RUNTIMES[name].module
        try:
            mod, pkg = importlib.import_module(module), importlib.import_module(package)
        except ImportError:
            continue
        return mod.Interpreter, name, getattr(pkg, "__version__", "unknown")
    raise RuntimeMissing(f"no TFLite runtime ({runtime or 'litert or tflite-runtime'}): "
                         "pip install ai-edge-litert (or tflite-runtime)")


# --- the model contract: Model(path, manifest, folder, threads, runtime, batch) opens a build;
# model(x) maps an input batch (numpy, the manifest's layout and dtype) to the output batch;
# model.runtime, model.version and model.provider say what ran it. LOADERS picks the class.

class TFLiteModel:
    def __init__(self, path, manifest, folder, threads=None, runtime=None, batch=1):
        cls, self.runtime, self.version = _tflite_interpreter(runtime)
        self.interpreter = cls(model_path=path, num_threads=threads)
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.batch = batch
        if batch != self.inp["shape"][0]:
            self.interpreter.resize_tensor_input(self.inp["index"],
                                                 [batch] + list(self.inp["shape"][1:]))
        self.interpreter.allocate_tensors()
        self.provider = "XNNPACK (default CPU delegate)"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, x.shape[0], self.batch):
            chunk = x[i:i + self.batch]
            if len(chunk) != self.batch:            # last partial batch: pad, then drop
                chunk = np.concatenate([chunk] + [chunk[-1:]] * (self.batch - len(chunk)))
            self.interpreter.set_tensor(self.inp["index"], chunk)
            self.interpreter.invoke()
            outs.append(self.interpreter.get_tensor(self.out["index"]).copy())
        return np.concatenate(outs)[:x.shape[0]]


class OnnxModel:
    def __init__(self, path, manifest, folder, threads=None, runtime=None, batch=1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeMissing("onnxruntime is not installed: pip install onnxruntime") from None
        provider = RUNTIMES[runtime or "onnxruntime"].provider
        options = manifest.get("runtime_options", {}).get("onnxruntime")
        if provider not in ort.get_available_providers():
            raise RuntimeMissing(f"onnxruntime here has no {provider} "
                                 f"(available: {', '.join(ort.get_available_providers())})")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.options = options_here(options)
        for key, value in self.options.items():
            opts.add_session_config_entry(key, value)
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, opts, providers=[provider])
        self.name = self.session.get_inputs()[0].name
        self.runtime, self.version = runtime or "onnxruntime", ort.__version__
        self.provider = self.session.get_providers()[0] + "".join(
            f" {k}={v}" for k, v in self.options.items())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: x})[0]


def options_here(options) -> dict:
    """The session entries of a manifest's runtime_options that apply on this machine."""
    chosen = {}
    for condition, entries in (options or {}).items():
        if condition == "always" or (condition == "x86_without_vnni" and x86_without_vnni()):
            chosen.update(entries)
    return chosen


def x86_without_vnni() -> bool:
    """An x86 CPU whose int8 dot products saturate (no AVX512-VNNI or AVX-VNNI), read from
    CPUID as numpy sees it (so an emulated CPU is seen as it is emulated)."""
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return False
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return True                     # unknown: take the exact, slower kernels
    return not (features.get("AVX512VNNI") or features.get("AVXVNNI"))


def engine_cache_dir() -> str:
    return os.environ.get("EDGETL_ENGINE_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "edgetl", "engines"))


CUDART = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2          # cudaMemcpyKind


def _cudart():
    """libcudart through ctypes, as TensorRT's own Polygraphy does: no PyTorch on the device."""
    import ctypes
    for name in CUDART:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        p, n = ctypes.c_void_p, ctypes.c_size_t
        for fn, args in (("cudaMalloc", [ctypes.POINTER(p), n]), ("cudaFree", [p]),
                         ("cudaMemcpyAsync", [p, p, n, ctypes.c_int, p]),
                         ("cudaStreamCreate", [ctypes.POINTER(p)]),
                         ("cudaStreamSynchronize", [p]),
                         ("cudaGetDeviceCount", [ctypes.POINTER(ctypes.c_int)])):
            getattr(lib, fn).argtypes = args
        return lib
    return None


def cuda_devices() -> int:
    """CUDA GPUs here (0 without libcudart or a driver)."""
    import ctypes
    lib, count = _cudart(), ctypes.c_int(0)
    return count.value if lib is not None and lib.cudaGetDeviceCount(ctypes.byref(count)) == 0 \
        else 0


class CudaBuffers:
    """Device buffers and a stream for one engine's input and output, by shape."""

    def __init__(self):
        import ctypes
        self.ctypes, self.lib = ctypes, _cudart()
        if self.lib is None:
            raise RuntimeMissing(f"libcudart not found ({', '.join(CUDART)}): JetPack ships "
                                 "it in /usr/local/cuda/lib64 (add it to LD_LIBRARY_PATH)")
        self.stream, self.buffers = ctypes.c_void_p(), {}
        self._check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise BundleError(f"CUDA {what} failed (cudaError {status})")

    def device(self, key: str, nbytes: int):
        """A device buffer of at least `nbytes` for `key` (kept for the next call)."""
        held = self.buffers.get(key)
        if held is None or held[1] < nbytes:
            if held is not None:
                self.lib.cudaFree(held[0])
            ptr = self.ctypes.c_void_p()
            self._check(self.lib.cudaMalloc(self.ctypes.byref(ptr), nbytes), "cudaMalloc")
            self.buffers[key] = held = (ptr, nbytes)
        return held[0]

    def copy(self, dst, src, nbytes: int, kind: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(dst, src, nbytes, kind, self.stream),
                    "cudaMemcpyAsync")

    def sync(self) -> None:
        self._check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class TensorRTModel:
    """A TensorRT engine run through the TensorRT Python API, its buffers through libcudart.
    Engines are built once per (ONNX sha256, TensorRT version, GPU) by the bundle's
    build_engine.py and kept in a cache folder on the device, written atomically."""

    def __init__(self, path, manifest, folder, threads=None, runtime=None, batch=1):
        try:
            import tensorrt as trt
        except ImportError:
            raise RuntimeMissing("TensorRT's Python package is not installed (JetPack ships "
                                 "python3-libnvinfer; elsewhere pip install tensorrt)") from None
        self.cuda = CudaBuffers()
        build_engine = _module_from(os.path.join(folder, "build_engine.py"))
        settings = os.path.join(folder, "build_settings.json")
        with open(settings) as f:          # before edgetl 0.3 one line, one file: its path
            source = folder if "tensorrt" in json.load(f) else path
        try:
            engine_path = build_engine.cached_or_build(source, settings, engine_cache_dir())
        except build_engine.EngineBuildError as e:
            raise BundleError(str(e)) from None
        with open(engine_path, "rb") as f:
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
                f.read())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = lambda n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        self.inp = next(n for n in names if is_input(n))
        self.out = next(n for n in names if not is_input(n))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out)))
        self.runtime, self.version, self.provider = "tensorrt", trt.__version__, "GPU"
        self.engine_file = engine_path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        self.context.set_input_shape(self.inp, tuple(x.shape))
        y = np.empty(tuple(self.context.get_tensor_shape(self.out)), self.out_dtype)
        d_in, d_out = self.cuda.device("in", x.nbytes), self.cuda.device("out", y.nbytes)
        self.cuda.copy(d_in, x.ctypes.data, x.nbytes, HOST_TO_DEVICE)
        self.context.set_tensor_address(self.inp, d_in.value)
        self.context.set_tensor_address(self.out, d_out.value)
        self.context.execute_async_v3(self.cuda.stream.value)
        self.cuda.copy(y.ctypes.data, d_out, y.nbytes, DEVICE_TO_HOST)
        self.cuda.sync()
        return y


class ExecuTorchModel:
    """A .pte program in ExecuTorch's Python runtime (XNNPACK delegate), one image per call as
    it was exported. The runtime's Python bindings exchange torch tensors, so the executorch
    package brings torch with it; run.py itself uses numpy."""

    def __init__(self, path, manifest, folder, threads=None, runtime=None, batch=1):
        try:
            import torch                  # first: the bindings resolve libtorch through it
            from executorch import version
        except ImportError:
            raise RuntimeMissing("ExecuTorch is not installed: pip install executorch") from None
        if batch != 1:
            raise BundleError(f"{path} was exported at batch 1: run it with --batch 1")
        self.torch = torch
        try:
            self.method = _executorch_method(path, threads)
        except (ImportError, AttributeError, TypeError):  # another ExecuTorch's bindings:
            self.method = _executorch_method_public(path, threads)   # its public API
        self.runtime, self.version = "executorch", version.__version__
        where = manifest.get("executorch") or {}
        portable = sum((where.get("portable_ops") or {}).values())
        self.provider = " + ".join([*(where.get("delegate_calls") or {})] + (
            [f"{portable} portable kernel calls"] if portable else [])) or "portable kernels"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        run = lambda one: self.method([self.torch.from_numpy(one)])[0].numpy()
        return np.concatenate([run(x[i:i + 1]) for i in range(x.shape[0])])


def _executorch_method(path, threads):
    """The program's forward through the C++ runtime's bindings, as executorch.runtime's
    Runtime.load_program(path).load_method does, without importing the whole exporter
    (executorch.exir, torch._dynamo) that module pulls in: ~3.5 s of every bench trial's
    start that no device pays (benchmarks/results/trial_start.json)."""
    from executorch.extension.pybindings import _C as bindings
    if threads:                                      # XNNPACK's own thread pool
        bindings._unsafe_reset_threadpool(threads)
    program = bindings._load_program(
        path, enable_etdump=False, debug_buffer_size=0,
        program_verification=bindings.Verification.InternalConsistency, data_path=None)
    method = program.load_method("forward")
    return lambda inputs, program=program: method(inputs)   # the program outlives the call


def _executorch_method_public(path, threads):
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime
    if threads:
        portable_lib._unsafe_reset_threadpool(threads)
    return Runtime.get().load_program(path).load_method("forward").execute


def _module_from(path: str):
    """A checked bundle file imported by its path (no sys.path entry, no __pycache__ left in
    the bundle, where it would be an unlisted file)."""
    import importlib.util
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOADERS = {"tflite": TFLiteModel, "onnx": OnnxModel, "tensorrt": TensorRTModel,
           "executorch": ExecuTorchModel}


# runtime -> the modules its Python bindings import besides RUNTIMES' own: ExecuTorch's bindings
# exchange torch tensors, so `import torch` (~1.2 s) comes with them; an app on ExecuTorch's C++
# runtime never pays it
BINDINGS = {"executorch": ("torch", "executorch.extension.pybindings._C")}


def import_runtime(fmt: str, runtime=None) -> None:
    """Import the Python bindings a build of `fmt` opens with, so that opening the model
    (load_ms) times the model's load alone; what does not import is left to open_model,
    which says what to install."""
    import importlib
    for name in [runtime] if runtime else runtimes_for(fmt):
        try:
            for module in BINDINGS.get(name, (RUNTIMES[name].module,)):
                importlib.import_module(module)
            return
        except ImportError:
            continue


def open_model(manifest: dict, folder=HERE, threads=None, runtime=None, batch=1):
    fmt = manifest["format"]
    if fmt not in LOADERS:
        raise BundleError(f"format {fmt!r} has no standalone runner")
    if runtime and runtime not in runtimes_for(fmt):
        raise BundleError(f"runtime {runtime!r} does not run {fmt} builds: use one of "
                          f"{', '.join(runtimes_for(fmt))}")
    path = os.path.join(folder, manifest["model_file"])
    return LOADERS[fmt](path, manifest, folder, threads, runtime, batch)


# --- preprocessing: the same as edgetl's training evaluation ----------------------------------

def open_rgb(path, draft_size: int = 0):
    """Any common image file -> 8-bit RGB PIL image, upright: JPEGs decoded at reduced size
    (draft, never below `draft_size`), EXIF orientation applied, alpha composited on white,
    16-bit and float images scaled to 8 bits."""
    from PIL import Image, ImageOps
    if str(path).lower().endswith((".heic", ".heif")):
        _open_heif()
    img = Image.open(path)
    w, h = img.size
    if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
        raise ValueError(f"extreme aspect ratio {w}x{h} (over {MAX_ASPECT}:1): crop it to the "
                         "object first")
    if draft_size and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        peak = arr.max() if arr.size else 1.0
        arr = arr / (65535.0 if peak > 255 else 255.0) * 255.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, img)
    return img.convert("RGB")


def _open_heif():
    """Phones' HEIC/HEIF photos: Pillow reads them once pillow-heif registers its opener."""
    try:
        import pillow_heif
    except ImportError:
        raise ValueError("a HEIC/HEIF photo needs pillow-heif: pip install pillow-heif") from None
    pillow_heif.register_heif_opener()


def resize_crop(img, resize_size: int, img_size: int, interpolation: str = "bilinear"):
    """Shorter side to `resize_size`, then the centre `img_size` square; the sizes and the
    filter are torchvision's Resize(int) and CenterCrop on PIL images, to the pixel."""
    from PIL import Image
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize_size, int(resize_size * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != (w, h):
        img = img.resize(size, Image.BICUBIC if interpolation == "bicubic" else Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - img_size) / 2.0)), int(round((w - img_size) / 2.0))
    return img.crop((left, top, left + img_size, top + img_size))


def load_image(path, manifest) -> np.ndarray:
    """uint8 [H, W, 3] crop of an image file, as the model's training evaluation saw it."""
    spec = manifest["preprocessing"]
    img = open_rgb(path, spec["resize_size"])
    return np.asarray(resize_crop(img, spec["resize_size"], spec["img_size"],
                                  spec["interpolation"]), dtype=np.uint8)


def to_input(images_uint8: np.ndarray, manifest: dict) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB crops -> the model's input tensor (layout, dtype, quantization)."""
    spec, inp = manifest["preprocessing"], manifest["input"]
    x = (images_uint8.astype(np.float32) / 255.0 - np.array(spec["mean"], np.float32)) \
        / np.array(spec["std"], np.float32)
    if inp["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    q = inp.get("quantization")
    if q:
        info = np.iinfo(np.dtype(inp["dtype"]))
        x = np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max)
    return np.ascontiguousarray(x.astype(inp["dtype"]))


def to_logits(y: np.ndarray, manifest: dict) -> np.ndarray:
    q = manifest["output"].get("quantization")
    y = y.astype(np.float32)
    return (y - q["zero_point"]) * q["scale"] if q else y


PREDICT_CHUNK = 8      # images per call: a held-out split in one call held its whole input
                       # tensor and activations at once (GBs for a few thousand images)


def predict(model, images_uint8, manifest, chunk: int = PREDICT_CHUNK) -> np.ndarray:
    """Logits of uint8 crops, `chunk` images per model call."""
    return np.concatenate([to_logits(model(to_input(images_uint8[i:i + chunk], manifest)),
                                     manifest) for i in range(0, len(images_uint8), chunk)])


# --- evaluation and timing --------------------------------------------------------------------

def evaluate(model, manifest, folder=HERE, batch=1) -> dict:
    """Top-1 on the bundled set (and agreement with the export-time reference predictions)."""
    data = np.load(os.path.join(folder, "eval.npz"))
    images, labels = data["images"], data["labels"]
    model(to_input(images[:batch], manifest))                   # warm-up
    times, preds = [], []
    for i in range(0, len(images), batch):
        t0 = time.perf_counter()
        y = model(to_input(images[i:i + batch], manifest))
        times.append((time.perf_counter() - t0) * 1000)
        preds += np.argmax(to_logits(y, manifest), axis=-1).tolist()
    preds = np.array(preds)
    result = {"top1": float((preds == labels).mean()), "n": int(len(labels)),
              "latency_ms": float(np.median(times)), "runtime": model.runtime,
              "runtime_version": model.version, "format": manifest["format"],
              "precision": manifest["precision"], "predictions": preds.tolist()}
    if "reference" in data.files:
        result["top1_agreement"] = float((preds == data["reference"]).mean())
    return result


def time_runs(fn, warmup=10, iters=100, min_seconds=0.0, trials=3) -> dict:
    """Latency in ms over `trials` trials, each at least `iters` runs and `min_seconds` long."""
    for _ in range(warmup):
        fn()
    runs, per_trial = [], []
    for _ in range(trials):
        times, end = [], time.perf_counter() + min_seconds
        while len(times) < iters or time.perf_counter() < end:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        runs += times
        per_trial.append(float(np.median(times)))
    t = np.array(runs)
    p50s = np.array(per_trial)
    return {"mean": float(t.mean()), "std": float(t.std()), "p50": float(np.median(t)),
            "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)),
            "min": float(t.min()), "runs": len(runs), "trial_p50": per_trial,
            "trial_spread_pct": float((p50s.max() - p50s.min()) / np.median(p50s) * 100)}


# The int8 peak's model, serialized: one MatMulInteger, uint8 [1024, 1024] x int8 [1024, 1024]
# -> int32, ONNX IR 7, opset 13, as onnx.helper builds it (tests/test_bench.py builds it again
# and compares): the bench looks at the peak every round, and importing onnx took 0.6 s.
PEAK_N = 1024
BLAS_SPIN_S = 0.3       # BLAS threads spin on after a product: int8 timed at once read low
PEAK_INT8_ONNX = ("CAc6ZQoYCgFhCgFiEgF5Ig1NYXRNdWxJbnRlZ2VyEgRwZWFrWhUKAWESEAoOCAISCgoDCIAICgMI"
                  "gAhaFQoBYhIQCg4IAxIKCgMIgAgKAwiACGIVCgF5EhAKDggGEgoKAwiACAoDCIAIQgQKABAN")


def measure_peak(repeats=8) -> dict:
    """This machine's compute peak as one look sees it: best fp32 GEMM throughput (numpy's
    BLAS), then int8 GEMM throughput (onnxruntime MatMulInteger) where onnxruntime exists. The
    bench looks once a round and keeps the best look: one look on a busy machine reads low."""
    n = PEAK_N
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    peak = {"fp32_gflops": 2 * n ** 3 / best / 1e9, "method": f"best of {repeats} {n}x{n} "
            "GEMMs a look, the best look: numpy fp32, onnxruntime MatMulInteger int8"}
    peak["int8_gops"] = _int8_gemm_peak(n, repeats)
    return peak


def _int8_gemm_peak(n, repeats):
    """int8 GEMM throughput (GOP/s) in onnxruntime; None without it."""
    import base64
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    time.sleep(BLAS_SPIN_S)                  # after the fp32 products
    opts = ort.SessionOptions()
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        opts.intra_op_num_threads = int(threads)
    sess = ort.InferenceSession(base64.b64decode(PEAK_INT8_ONNX), opts,
                                providers=["CPUExecutionProvider"])
    feed = {"a": np.random.randint(0, 255, (n, n), dtype=np.uint8),
            "b": np.random.randint(-63, 63, (n, n), dtype=np.int8)}
    return 2 * n ** 3 / min(_timed(lambda: sess.run(None, feed)) for _ in range(repeats)) / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def usable_cpus(cgroup: str = "/sys/fs/cgroup") -> list:
    """The CPUs this process may run on (its affinity), in order, no more than its CPU quota
    pays for (a container run with --cpus 2 on a 32-core host: 2, not 32)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    quota = cpu_quota(cgroup)
    return cpus[:max(1, math.ceil(quota))] if quota else cpus


def cpu_quota(cgroup: str = "/sys/fs/cgroup") -> float:
    """CPUs' worth of time the cgroup quota allows (cgroup v2 cpu.max, else v1
    cpu.cfs_quota_us / cpu.cfs_period_us); 0.0 where none is set ("max", -1) or readable."""
    v2 = _read(f"{cgroup}/cpu.max").split()
    quota, period = v2 if len(v2) == 2 else (_read(f"{cgroup}/cpu/cpu.cfs_quota_us"),
                                             _read(f"{cgroup}/cpu/cpu.cfs_period_us"))
    return int(quota) / int(period) if quota.isdigit() and period.isdigit() and int(period) \
        else 0.0


def pin_threads(threads):
    """Pin this process to the first `threads` CPUs it may use (Linux); the CPU list or None."""
    if not threads or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = usable_cpus()[:threads]
    os.sched_setaffinity(0, cpus)
    return cpus


# --- conditions: what the device is doing, read on the device itself --------------------------

IDLE_PCT = 10.0                      # other processes under this share of one core: idle


def _cpu_ticks() -> tuple:
    """(busy ticks of the whole machine, steal ticks, this process's ticks) from /proc."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        return sum(v[:3]) + sum(v[5:8]), v[7] if len(v) > 7 else 0, int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


class CpuShare:
    """Other processes' CPU use (% of one core) and the hypervisor's steal since start."""

    def __init__(self):
        self.t0, self.ticks = time.monotonic(), _cpu_ticks()

    def result(self) -> dict:
        now = _cpu_ticks()
        wall = (time.monotonic() - self.t0) * os.sysconf("SC_CLK_TCK")
        if not now or not self.ticks or wall <= 0:
            return {}
        busy, steal, own = (b - a for a, b in zip(self.ticks, now))
        return {"others_cpu_pct": max(0.0, (busy - own) / wall * 100),
                "steal_pct": steal / wall * 100}


def wait_idle(seconds: float, window: float = 0.25) -> dict:
    """Wait up to `seconds` for other processes to use under IDLE_PCT of a core (sampled in
    `window`-second windows); what was seen."""
    end, waited = time.monotonic() + seconds, 0.0
    while True:
        sample = CpuShare()
        time.sleep(window)
        share = sample.result()
        idle = bool(share) and share["others_cpu_pct"] < IDLE_PCT
        if not share or idle or time.monotonic() >= end:
            break
        waited += window
    return {"waited_s": round(waited, 2), "idle_before": idle,
            "others_cpu_pct_before": share.get("others_cpu_pct")}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _tool_line(cmd: list):
    """First output line of a device tool (vcgencmd, nvpmodel) where it exists."""
    import shutil
    import subprocess
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return " ".join(out.split()) or None


def device_state(cpus, sysfs: str = "/sys") -> dict:
    """Load average, CPU frequency (MHz) and governor of the CPUs in use, temperatures (C) of
    the thermal zones, and throttling where the board reports it. `sysfs`: where /sys is."""
    cpus = cpus or usable_cpus()
    base = sysfs + "/devices/system/cpu/cpu{}/cpufreq/"
    mhz = [int(v) / 1000 for v in (_read(base.format(c) + "scaling_cur_freq") for c in cpus)
           if v.isdigit()]
    temps, thermal = {}, sysfs + "/class/thermal"
    for zone in sorted(os.listdir(thermal)) if os.path.isdir(thermal) else []:
        t = _read(f"{thermal}/{zone}/temp")
        if t.lstrip("-").isdigit():
            temps[_read(f"{thermal}/{zone}/type") or zone] = int(t) / 1000
    state = {"loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
             "cpu_mhz": mhz or None, "governor": _read(base.format(cpus[0]) +
                                                        "scaling_governor") or None,
             "temperatures_c": temps or None}
    for key, cmd in (("throttled", ["vcgencmd", "get_throttled"]),
                     ("power_mode", ["nvpmodel", "-q"])):
        line = _tool_line(cmd)
        if line:
            state[key] = line
    return state


def speed_probe(repeats=20, n=192) -> float:
    """Best time (us) of a fixed small GEMM: the CPU's speed right now, so a trial run in a
    slow spell of the machine (host contention, clocks) shows as such."""
    a = np.random.rand(n, n).astype(np.float32)
    return min(_timed(lambda: a @ a) for _ in range(repeats)) * 1e6


def sustained(fn, seconds: float, windows: int = 12, cpus=None) -> list:
    """`fn` run back to back for `seconds`; per window: its start (s), p50/p90/p99 (ms), runs,
    and the hottest thermal zone and CPU clock at its end, so throttling shows as drift."""
    out, start = [], time.perf_counter()
    width = seconds / windows
    for w in range(windows):
        times, end = [], start + (w + 1) * width
        while time.perf_counter() < end or not times:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        state = device_state(cpus)
        t = np.array(times)
        out.append({"t_s": round(w * width, 2), "p50": float(np.median(t)),
                    "p90": float(np.percentile(t, 90)), "p99": float(np.percentile(t, 99)),
                    "runs": len(times), "temperature_c_max": max(
                        (state["temperatures_c"] or {}).values(), default=None),
                    "cpu_mhz": state["cpu_mhz"]})
    return out


def end_to_end(model, manifest, folder, runs: int):
    """Decode + resize + normalize + infer on the bundle's sample image files, as an app pays
    per photo (latency in ms, and the preprocessing's share); None without samples."""
    files = [os.path.join(folder, f) for f in manifest.get("samples", [])]
    if not files:
        return None
    try:
        import PIL  # noqa: F401  (image files need Pillow; a device without it times the model)
    except ImportError:
        return None
    total, pre = [], []
    for i in range(max(runs, len(files))):
        t0 = time.perf_counter()
        image = load_image(files[i % len(files)], manifest)
        x = to_input(image[None], manifest)
        t1 = time.perf_counter()
        model(x)
        t2 = time.perf_counter()
        if i >= len(files):                    # the first pass over the files warms up
            total.append((t2 - t0) * 1000)
            pre.append((t1 - t0) * 1000)
    if not total:
        return None
    t = np.array(total)
    return {"p50": float(np.median(t)), "p90": float(np.percentile(t, 90)),
            "p99": float(np.percentile(t, 99)), "preprocess_p50": float(np.median(pre)),
            "runs": len(total), "files": len(files)}


def peak_rss_mb() -> float:
    """This program's peak resident memory in MB. On Linux, VmHWM: the high-water mark of this
    program's own memory. getrusage's ru_maxrss survives fork and exec there, so a runner started
    by a bigger process (edgetl after training: 3 GB) reported its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _machine() -> dict:
    import platform
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = sorted({t for t in line.split(":", 1)[1].split()
                                    if t.startswith(("avx", "amx", "asimd", "sve", "i8mm"))})
                    break
    except OSError:
        pass
    return {"hostname": platform.node(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "emulated": os.environ.get("EDGETL_EMULATED") == "1",   # set by edgetl's launcher
            "usable_cpus": len(usable_cpus()), "cpu_flags": flags,
            "python": platform.python_version(), "numpy": np.__version__}


def measure(manifest, folder, args) -> dict:
    """Import time of the runtime's Python bindings, the model's load time apart from it, first
    inference, latency statistics on real images, accuracy, peak RSS.
    `args`: the command line's settings (BENCH_FLAGS, peak, score)."""
    runtime, threads, batch = args.runtime, args.threads, args.batch
    verify(manifest, folder)
    cpus = pin_threads(threads)
    t0 = time.perf_counter()
    import_runtime(manifest["format"], runtime)
    import_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    model = open_model(manifest, folder, threads, runtime, batch)
    load_ms = (time.perf_counter() - t0) * 1000
    images = np.load(os.path.join(folder, "eval.npz"))["images"]
    x = to_input(np.resize(images, (batch,) + images.shape[1:]), manifest)
    t0 = time.perf_counter()
    model(x)
    first_ms = (time.perf_counter() - t0) * 1000
    machine = _machine()
    # an emulated CPU's timings say nothing about the board, and a GEMM probe under qemu can
    # take minutes: such a runner scores the bundle and never times it
    latency = e2e = conditions = windows = None
    if not machine["emulated"]:
        conditions = {**wait_idle(args.wait_idle), **device_state(cpus)}
        speed_probe()                   # the first after an idle wait pays the CPU's wake-up
        conditions["probe_us_before"] = speed_probe()
        share = CpuShare()
        latency = time_runs(lambda: model(x), args.warmup, args.iters, args.min_seconds,
                            args.trials)
        if args.sustained:
            windows = sustained(lambda: model(x), args.sustained, cpus=cpus)
        conditions.update(share.result(), probe_us_after=speed_probe())
        if batch == 1:
            e2e = end_to_end(model, manifest, folder, max(10, args.iters // 5))
    accuracy = evaluate(model, manifest, folder, batch) if args.score else \
        {"top1": None, "n": None}
    result = {"format": manifest["format"], "precision": manifest["precision"],
              "runtime": model.runtime, "runtime_version": model.version,
              "provider": model.provider, "threads": threads, "pinned_cpus": cpus,
              "batch": batch, "top1": accuracy["top1"], "n": accuracy["n"],
              "top1_agreement": accuracy.get("top1_agreement"),
              "predictions": accuracy.get("predictions"),
              "import_ms": import_ms, "load_ms": load_ms, "first_inference_ms": first_ms,
              "latency_ms": latency,
              "end_to_end_ms": e2e, "conditions": conditions, "sustained": windows,
              "peak_rss_mb": peak_rss_mb(),
              "machine": machine}
    if args.peak and not machine["emulated"]:
        result["machine"]["peak"] = measure_peak()
    return result


# --- command line -----------------------------------------------------------------------------

# The runner's settings, spelled once: its command line is built from this table, and edgetl
# passes each trial's settings through it (benchmarking/devices.runner_args).
BENCH_FLAGS = (
    ("runtime", str, None, " | ".join(RUNTIMES)),
    ("threads", int, None, "runtime threads (and CPUs pinned)"),
    ("batch", int, 1, "images per inference"),
    ("warmup", int, 10, "untimed runs first"),
    ("iters", int, 100, "timed runs per trial (at least)"),
    ("min_seconds", float, 0.0, "...and at least this long"),
    ("trials", int, 3, "trials"),
    ("wait_idle", float, 0.0, "seconds to wait for the device to go idle before timing"),
    ("sustained", float, 0.0, "then run continuously this many seconds, p50 per window"),
)


def probe(names=()) -> dict:
    """What this machine offers a bundle: Python, numpy, each runtime of `names` (default:
    all of RUNTIMES) that imports, with its version, `timeout`, CUDA GPUs, the machine; for
    `edgetl device check`."""
    import importlib
    import shutil
    runtimes = {}
    for name, r in RUNTIMES.items():
        if names and name not in names:
            continue
        try:
            importlib.import_module(r.module)
            pkg = importlib.import_module(r.package)
            runtimes[name] = getattr(pkg, "__version__", None) or getattr(
                importlib.import_module(r.package + ".version"), "__version__", "unknown")
            if r.provider and r.provider not in pkg.get_available_providers():
                runtimes[name] = None          # onnxruntime without that execution provider
        except Exception:                  # noqa: BLE001 - any import failure: not usable here
            runtimes[name] = None
    return {"probe": 1, **_machine(), "runtimes": runtimes,
            "timeout": shutil.which("timeout") is not None, "cuda_devices": cuda_devices()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", help="image files to classify")
    ap.add_argument("--json", help="also write the result to this file")
    ap.add_argument("--bench", action="store_true", help="measure latency, accuracy and memory")
    for name, kind, default, text in BENCH_FLAGS:
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=text)
    ap.add_argument("--peak", action="store_true", help="also measure the machine's GEMM peak")
    ap.add_argument("--no-score", dest="score", action="store_false",
                    help="time only (skip the accuracy pass over the bundled set)")
    ap.add_argument("--bundle", default=HERE, help="bundle folder (default: this file's)")
    ap.add_argument("--probe", nargs="?", const="", metavar="RUNTIMES",
                    help="what this machine offers a bundle (Python, numpy, the runtimes given "
                    "comma-separated, default all; timeout, GPUs); no bundle needed")
    args = ap.parse_args(argv)
    if args.probe is not None:
        print(json.dumps(probe([n for n in args.probe.split(",") if n])))
        return 0
    if args.json and os.path.dirname(os.path.abspath(args.json)) == os.path.abspath(args.bundle):
        print(f"usage error: --json {args.json} would land inside the bundle, where every file "
              "must be listed in its manifest: write it elsewhere (e.g. --json ../result.json)",
              file=sys.stderr)
        return EXIT_BUNDLE_ERROR
    try:
        manifest = load_manifest(args.bundle)
        if args.bench:
            result = measure(manifest, args.bundle, args)
        else:
            verify(manifest, args.bundle)
            result = _classify_or_evaluate(manifest, args, args.bundle)
    except RuntimeMissing as e:
        print(f"runtime missing: {e}", file=sys.stderr)
        return EXIT_RUNTIME_MISSING
    except BundleError as e:
        print(f"bundle error: {e}", file=sys.stderr)
        return EXIT_BUNDLE_ERROR
    text = json.dumps(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def _classify_or_evaluate(manifest, args, folder) -> dict:
    model = open_model(manifest, folder, threads=args.threads, runtime=args.runtime)
    if not args.images:
        return evaluate(model, manifest, folder)
    result = {"runtime": model.runtime, "runtime_version": model.version, "predictions": []}
    for path in args.images:
        from PIL import Image
        try:
            image = load_image(path, manifest)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise BundleError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") \
                from None
        logits = predict(model, image[None], manifest)[0]
        k = int(np.argmax(logits))
        result["predictions"].append({"image": path, "label": manifest["labels"][k],
                                      "index": k})
    return result


if __name__ == "__main__":
    sys.exit(main())
