"""The export's options as one validated dataclass; its record goes into the manifest, and
`edgetl run` rebuilds an export whose record differs."""
from dataclasses import asdict, dataclass

from ..core.errors import ConfigError
from ..core.names import check_number
from .builds import plan
from .quantize import OBSERVERS, WEIGHT_RANGES


@dataclass(frozen=True)
class ExportOptions:
    formats: str = "onnx,tflite,tensorrt"
    precisions: str = "fp32,fp16,int8"
    quant: str = "qat"                  # qat | ptq
    qat_epochs: float = 0.3
    calib_size: int | None = None       # None: 256, or the whole train split if smaller
    observer: str = "minmax"            # PTQ observer
    weight_range: str = "full"          # full [-127, 127] | reduced [-63, 63]
    bundle_size: int = 100              # images in each bundle's evaluation set
    max_int8_drop: float | None = 0.5   # points of validation top-1 int8 may lose; None: any
    mitigate: bool = True               # when int8 misses the budget: float blocks, more QAT
    float_blocks: tuple = ()            # blocks kept in float from the start ('features.1')

    def __post_init__(self):
        """--float-blocks comes as 'a,b': kept as a tuple of names."""
        blocks = self.float_blocks.split(",") if isinstance(self.float_blocks, str) else \
            self.float_blocks
        object.__setattr__(self, "float_blocks", tuple(b.strip() for b in blocks if b.strip()))

    def validate(self) -> "ExportOptions":
        self.builds()
        if self.quant not in ("qat", "ptq"):
            raise ConfigError(f"--quant {self.quant}: use qat or ptq")
        if self.observer not in OBSERVERS:
            raise ConfigError(f"--observer {self.observer}: use {' or '.join(OBSERVERS)}")
        if self.weight_range not in WEIGHT_RANGES:
            raise ConfigError(f"--weight-range {self.weight_range}: use "
                              f"{' or '.join(WEIGHT_RANGES)}")
        check_number("--qat-epochs", self.qat_epochs, float, 0, 100)
        check_number("--bundle-size", self.bundle_size, int, 1)
        if self.calib_size is not None:
            check_number("--calib-size", self.calib_size, int, 1)
        if self.max_int8_drop is not None:
            check_number("--max-int8-drop", self.max_int8_drop, float, 0, 100)
        if not isinstance(self.mitigate, bool):
            raise ConfigError(f"mitigate={self.mitigate!r}: must be true or false")
        return self

    def builds(self) -> list:
        return plan(self.formats, self.precisions)

    def record(self) -> dict:
        """What the manifest keeps: the builds by name and every other option."""
        d = asdict(self)
        del d["formats"], d["precisions"]
        d["float_blocks"] = list(self.float_blocks)
        return {"builds": [b.name for b in self.builds()], **d}
