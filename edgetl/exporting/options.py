"""The export's options as one validated dataclass; its record goes into the manifest, and
`edgetl run` rebuilds an export whose record differs."""
from dataclasses import asdict, dataclass

from ..core.errors import ConfigError
from ..core.names import parse_names
from ..core.options import check, option
from .builds import PRECISIONS, plan
from .formats import FORMATS, missing_package
from ..quantizing.quantize import OBSERVERS, WEIGHT_RANGES


MITIGATION = ("when int8 misses the budget, mitigate in this order until it is met: float "
              "blocks (the one whose float run gains the output most, then the next, up to 3), "
              "then one more epoch of QAT; --no-mitigate fails at once")


@dataclass(frozen=True)
class ExportOptions:
    formats: str = option("onnx,tflite,tensorrt", "formats to build, comma-separated: "
                          + ", ".join(FORMATS))
    precisions: str = option("fp32,fp16,int8", "precisions to build, comma-separated: "
                             + ", ".join(PRECISIONS), spelled="precision")
    build_names: str | None = option(None, "only these builds of --formats x --precision, "
                                     "comma-separated (e.g. tflite-int8,onnx-fp32)", kind=str,
                                     unset="every one, variants included; edgetl run: the "
                                     "target's, unless --formats or --precision is given",
                                     spelled="builds")
    quant: str = option("qat", "how int8 scales and weights are made", choices=("qat", "ptq"))
    qat_epochs: float = option(0.3, "epochs of distillation QAT", low=0, high=100)
    calib_size: int | None = option(None, "calibration images; they set the int8 scales for "
                                    "PTQ and QAT alike", kind=int, low=1,
                                    unset="256, or the whole training split if smaller")
    calib_manifest: str | None = option(None, "a calibration set recorded by an earlier "
                                        "export (RUN/export/calibration.json, or a copy kept "
                                        "in calibration/): the same images, checked unchanged",
                                        kind=str, unset="chosen from the training split")
    observer: str = option("minmax", "PTQ observer", choices=OBSERVERS)
    weight_range: str = option("full", "int8 weight range: full [-127,127] (onnxruntime "
                               "bundles select exact kernels on AVX2 CPUs) or reduced [-63,63]",
                               choices=WEIGHT_RANGES)
    bundle_size: int = option(100, "images in each bundle's evaluation set", low=1)
    max_int8_drop: float | None = option(0.5, "points of validation top-1 int8 may lose "
                                         "against fp32", kind=float, low=0, high=100,
                                         unset="no budget")
    mitigate: bool = option(True, MITIGATION)
    float_blocks: tuple = option((), "blocks kept in float from the start, comma-separated, "
                                 "e.g. features.1 (the quantization report names them); "
                                 "mitigation may add more")

    def __post_init__(self):
        """--float-blocks comes as 'a,b': kept as a tuple of names."""
        blocks = self.float_blocks.split(",") if isinstance(self.float_blocks, str) else \
            self.float_blocks
        object.__setattr__(self, "float_blocks", tuple(b.strip() for b in blocks if b.strip()))

    def validate(self) -> "ExportOptions":
        for fmt in sorted({b.format for b in self.builds()}):
            need = missing_package(fmt)
            if need:
                raise ConfigError(f"--formats {fmt}: its exporter is not installed; pip "
                                  f"install '{need}'")
        check(self)
        if self.calib_manifest and self.calib_size:
            raise ConfigError("--calib-manifest and --calib-size: the manifest fixes the set; "
                              "pass one of them")
        return self

    def builds(self) -> list:
        every = plan(self.formats, self.precisions)
        if self.build_names is None:
            return every
        names = parse_names(self.build_names, [b.name for b in every], "--builds name (a "
                            f"build of --formats {self.formats} x --precision {self.precisions})")
        return [b for b in every if b.name in names]

    def record(self) -> dict:
        """What the manifest keeps: the builds by name and every other option."""
        d = asdict(self)
        del d["formats"], d["precisions"], d["build_names"]
        d["float_blocks"] = list(self.float_blocks)
        return {"builds": [b.name for b in self.builds()], **d}
