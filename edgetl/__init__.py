"""edgetl: a small labelled image set -> a fast, accurate model on an edge device.

    edgetl.train(data, out, **options)   fine-tune: writes RUN/train/, returns its metrics
    edgetl.export(run, **options)        quantize once, every format: RUN/export/, its manifest
    edgetl.bench(path, **options)        latency and accuracy per build: RUN/bench/, the report
    edgetl.run(data, target, out, ...)   all three against a target profile
    edgetl.demo(out)                     the main job on the embedded digits
    edgetl.predict(path, images, ...)    photos classified by one build in its runtime
    edgetl.compare(a, b, ...)            two bench reports, build by build, with intervals
    edgetl.device_check(device, ...)     what a device lacks for a target's builds
    edgetl.load_checkpoint(path)         (model, spec, extra) from a checkpoint alone
"""
from .core import VERSION as __version__
from .core.errors import (ConfigError, DataError, DeviceError, EdgetlError, ModelError,
                          ParityError, RunError, RuntimeUnavailable)
from .models import MODELS, ModelSpec, create_model, load_checkpoint

__all__ = ["train", "export", "bench", "run", "demo", "predict", "compare", "device_check",
           "load_checkpoint", "create_model", "ModelSpec",
           "MODELS", "EdgetlError", "DataError", "ModelError", "ConfigError", "RunError",
           "ParityError", "RuntimeUnavailable", "DeviceError"]


def train(data, out, **options) -> dict:
    """Fine-tune on an image folder; writes RUN/train/ and returns its metrics (see cli)."""
    from .training.trainer import train as _train
    return _train(data, out, **options)


def export(run, **options) -> dict:
    """Quantize once and write every build of RUN to RUN/export/; returns its manifest."""
    from .exporting.exporter import export as _export
    return _export(run, **options)


def bench(path, **options) -> dict:
    """Latency and accuracy of every build of RUN (or one bundle); writes RUN/bench/."""
    from .benchmarking.session import benchmark
    return benchmark(path, **options)


def run(data, target, out, **options) -> dict:
    """The main job: fine-tune -> QAT -> export -> bench against a target profile."""
    from .pipeline import run as _run
    return _run(data, target, out, **options)


def demo(out="runs/demo", **options) -> dict:
    """The main job on the embedded digits dataset (x86-cpu profile)."""
    from .pipeline import demo as _demo
    return _demo(out, **options)


def predict(path, images, **options) -> dict:
    """Classify image files and folders with one build of RUN (or one bundle)."""
    from .inspecting.predict import predict as _predict
    return _predict(path, images, **options)


def compare(a, b, **options) -> dict:
    """Two bench reports (files, bench folders or run folders), build by build."""
    from .inspecting.compare import compare as _compare
    return _compare(a, b, **options)


def device_check(device=None, **options) -> dict:
    """What DEVICE (or a target's device) lacks for the target's builds."""
    from .benchmarking.check import device_check as _check
    return _check(device, **options)
