"""What the export stage hands on, typed: one BuildResult per build (an entry of the export
manifest's "artifacts"), read back by the bench and the main job."""
from dataclasses import asdict, dataclass, field


@dataclass
class BuildResult:
    name: str                         # bundle folder in RUN/export/, e.g. "tflite-int8"
    format: str
    precision: str
    variant: str
    path: str                         # the model file, relative to the run folder
    size_bytes: int
    sha256: str                       # of the model file
    parity: dict = field(default_factory=dict)   # agreement with its PyTorch reference, gate
    test_top1: float | None = None    # held-out top-1 in its runtime (None: not run here)
    runtime: str | None = None
    runtime_version: str | None = None
    held_out_predictions: list | None = None
    tensorrt_ready: bool | None = None
    seconds: float | None = None
    drop_points: float | None = None  # int8: held-out points below the fp32 reference
    top1: dict | None = None          # held-out top-1 with n and its 95% interval
    paired: dict | None = None        # int8: lost/gained against fp32 on the same images
    delegation: dict | None = None    # ExecuTorch: delegate calls and ops on portable kernels

    ALWAYS = ("name", "format", "precision", "variant", "path", "size_bytes", "sha256",
              "parity", "test_top1")

    def to_json(self) -> dict:
        """The manifest entry: the keys every entry has, and the others where they apply (as
        before version 2)."""
        return {k: v for k, v in asdict(self).items() if k in self.ALWAYS or v is not None}

    @classmethod
    def from_json(cls, entry: dict) -> "BuildResult":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in entry.items() if k in known})
