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
    weight_range: str = "reduced"       # reduced [-63, 63] | full [-127, 127]
    bundle_size: int = 100              # images in each bundle's evaluation set

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
        return self

    def builds(self) -> list:
        return plan(self.formats, self.precisions)

    def record(self) -> dict:
        """What the manifest keeps: the builds by name and every other option."""
        d = asdict(self)
        del d["formats"], d["precisions"]
        return {"builds": [b.name for b in self.builds()], **d}
