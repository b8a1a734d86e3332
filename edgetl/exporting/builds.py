"""What an export can build: formats x precisions (+ variants), read off the format table."""
from dataclasses import dataclass

from ..core.names import parse_names
from .formats import FORMATS

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Build:
    format: str
    precision: str
    variant: str = ""                   # "", "float-io" or "nhwc" (TFLite int8)

    @property
    def name(self) -> str:
        return "-".join(p for p in (self.format, self.precision, self.variant) if p)

    @classmethod
    def parse(cls, name: str):
        """'tflite-int8-nhwc' -> Build; None if `name` is not a build name."""
        parts = name.split("-", 2)
        if len(parts) < 2 or parts[0] not in FORMATS or parts[1] not in PRECISIONS:
            return None
        variant = parts[2] if len(parts) > 2 else ""
        if variant and variant not in FORMATS[parts[0]].variants.get(parts[1], ()):
            return None
        return cls(parts[0], parts[1], variant)


def plan(formats, precisions) -> list:
    """Every build of these formats at these precisions that the format builds (TensorRT has
    no fp32: a Jetson runs it at fp16 or int8), with each one's variants."""
    formats = parse_names(formats, tuple(FORMATS), "format")
    precisions = parse_names(precisions, PRECISIONS, "precision")
    builds = []
    for f in formats:
        for p in precisions:
            if p in FORMATS[f].precisions:
                builds.append(Build(f, p))
                builds += [Build(f, p, v) for v in FORMATS[f].variants.get(p, ())]
    return builds
