"""Models: the registry (pretrained backbones + a new head), EfficientNet-Lite, the ModelSpec
that carries preprocessing, and checkpoints."""
from .checkpoint import load_checkpoint, load_weights, read_spec, save_checkpoint
from .registry import MODELS, EdgeNet, create_model
from .spec import ModelSpec

__all__ = ["MODELS", "EdgeNet", "ModelSpec", "create_model", "load_checkpoint", "load_weights",
           "read_spec", "save_checkpoint"]
