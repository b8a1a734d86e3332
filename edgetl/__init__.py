"""edgetl: a small labelled image set -> a fast, accurate model on an edge device."""
from .checkpoint import load_checkpoint
from .errors import ConfigError, DataError, EdgetlError, ModelError, RunError
from .models import MODELS, ModelSpec, create_model

__version__ = "0.1.0"
__all__ = ["train", "export", "demo", "load_checkpoint", "create_model", "ModelSpec", "MODELS",
           "EdgetlError", "DataError", "ModelError", "ConfigError", "RunError"]


def train(data, out, **options) -> dict:
    """Fine-tune on an image folder; writes RUN/train/ and returns its metrics (see cli)."""
    from .trainer import train as _train
    return _train(data, out, **options)


def export(run, **options) -> dict:
    """Quantize once and write every build of RUN to RUN/export/; returns its manifest."""
    from .exporters import export as _export
    return _export(run, **options)


def demo(out="runs/demo", **options) -> dict:
    """Run the pipeline on the embedded digits dataset."""
    from .embedded import demo as _demo
    return _demo(out, **options)
