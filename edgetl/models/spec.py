"""ModelSpec: everything needed to feed a model. It travels with every checkpoint and every
exported artifact, so deployment never depends on someone remembering the preprocessing."""
from dataclasses import asdict, dataclass, field, replace

TF_MEAN, TF_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Input size, resize, mean/std, interpolation, layout and class labels of one model."""
    model: str
    img_size: int
    resize_size: int
    mean: tuple
    std: tuple
    interpolation: str = "bilinear"
    layout: str = "NCHW"
    labels: tuple = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        for key in ("mean", "std", "labels"):
            d[key] = tuple(d[key])
        return cls(**d)

    def with_size(self, img_size: int) -> "ModelSpec":
        """Same crop ratio at another input size."""
        resize = round(img_size * self.resize_size / self.img_size)
        return replace(self, img_size=img_size, resize_size=resize)

    def with_labels(self, labels) -> "ModelSpec":
        return replace(self, labels=tuple(labels))
