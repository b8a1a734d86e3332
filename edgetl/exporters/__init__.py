"""Export stage: RUN/train/ -> RUN/export/ (one quantized model, every format, each checked)."""
from .pipeline import export

__all__ = ["export"]
