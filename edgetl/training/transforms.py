"""The transforms derived from a model's spec (torchvision). The evaluation crop is the one the
bundle runner does on the device (`bundle_runner.resize_crop`): resize and crop run on PIL
images, so both call PIL's resampling with the same sizes; tests/test_preprocessing.py checks
the two agree on real photos."""
import torch
from torchvision.transforms import v2 as T

from ..models import ModelSpec


def _interpolation(spec: ModelSpec):
    return T.InterpolationMode(spec.interpolation)


def crop_transform(spec: ModelSpec) -> T.Compose:
    """PIL image -> uint8 [3, H, W]: shorter side to resize_size, centre crop."""
    return T.Compose([T.Resize(spec.resize_size, _interpolation(spec), antialias=True),
                      T.CenterCrop(spec.img_size), T.PILToTensor()])


def _to_model_input(spec: ModelSpec) -> list:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)]


def eval_transform(spec: ModelSpec) -> T.Compose:
    return T.Compose([T.Resize(spec.resize_size, _interpolation(spec), antialias=True),
                      T.CenterCrop(spec.img_size), *_to_model_input(spec)])


def train_transform(spec: ModelSpec, cfg) -> T.Compose:
    steps = [T.RandomResizedCrop(spec.img_size, scale=(cfg.crop_scale, 1.0),
                                 interpolation=_interpolation(spec), antialias=True)]
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip())
    if cfg.color_jitter:
        j = cfg.color_jitter
        steps.append(T.ColorJitter(j, j, j))
    if cfg.rotation:
        steps.append(T.RandomRotation(cfg.rotation, interpolation=_interpolation(spec)))
    return T.Compose(steps + _to_model_input(spec))
