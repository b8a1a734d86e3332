"""What an export can build: formats x precisions (+ TFLite int8 variants), as data."""
from dataclasses import dataclass

from ..core.names import parse_names

FORMATS = ("onnx", "tflite", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
TFLITE_INT8_VARIANTS = ("float-io", "nhwc")


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
        if variant and (parts[:2] != ["tflite", "int8"] or variant not in TFLITE_INT8_VARIANTS):
            return None
        return cls(parts[0], parts[1], variant)


def plan(formats, precisions) -> list:
    formats = parse_names(formats, FORMATS, "format")
    precisions = parse_names(precisions, PRECISIONS, "precision")
    builds = []
    for f in formats:
        for p in precisions:
            if f == "tensorrt" and p == "fp32":
                continue                # a Jetson runs TensorRT at fp16 or int8
            builds.append(Build(f, p))
            if f == "tflite" and p == "int8":
                builds += [Build(f, p, v) for v in TFLITE_INT8_VARIANTS]
    return builds
