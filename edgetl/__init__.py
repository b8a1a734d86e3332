"""edgetl: a small labelled image set -> a fast, accurate model on an edge device."""
from .checkpoint import load_checkpoint
from .errors import ConfigError, DataError, EdgetlError, ModelError, RunError
from .models import MODELS, ModelSpec, create_model

__version__ = "0.1.0"
__all__ = ["train", "export", "bench", "run", "demo", "load_checkpoint", "create_model", "ModelSpec", "MODELS",
           "EdgetlError", "DataError", "ModelError", "ConfigError", "RunError"]


def train(data, out, **options) -> dict:
    """Fine-tune on an image folder; writes RUN/train/ and returns its metrics (see cli)."""
    from .trainer import train as _train
    return _train(data, out, **options)


def export(run, **options) -> dict:
    """Quantize once and write every build of RUN to RUN/export/; returns its manifest."""
    from .exporters import export as _export
    return _export(run, **options)


def bench(path, **options) -> dict:
    """Latency and accuracy of every build of RUN (or one bundle); writes RUN/bench/."""
    from .benchmark import bench as _bench
    return _bench(path, **options)


def run(data, target, out, **options) -> dict:
    """The main job: fine-tune -> QAT -> export -> bench against a target profile."""
    from .main_job import run as _run
    return _run(data, target, out, **options)


def demo(out="runs/demo", **options) -> dict:
    """The main job on the embedded digits dataset (x86-cpu profile)."""
    from .embedded import demo as _demo
    return _demo(out, **options)
