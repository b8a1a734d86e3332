"""Training settings: one dataclass, validated, loadable from TOML and overridable by the CLI."""
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import ConfigError

STRATEGIES = ("feature-extract", "fine-tune", "progressive", "full")


@dataclass
class TrainConfig:
    model: str = "efficientnet_lite0"
    weights: str = "imagenet"          # imagenet | none | PATH to an edgetl checkpoint
    img_size: int = 0                  # 0: the model's own input size
    strategy: str = "fine-tune"
    epochs: int = 20
    warmup_epochs: int = 3             # head-only epochs before unfreezing (fine-tune)
    unfreeze: int = 5                  # top feature units trained after warm-up
    progressive_every: int = 3         # epochs between unfreezing one more unit (progressive)
    batch_size: int = 64
    lr: float = 3e-3                   # head learning rate
    backbone_lr_mult: float = 0.1      # unfrozen backbone units train at lr * this
    weight_decay: float = 1e-4
    train_bn_stats: bool = False       # trained units update BatchNorm stats (scratch: always)
    dropout: float = 0.2
    label_smoothing: float = 0.1
    class_weights: str = "none"        # none | balanced
    patience: int = 8                  # early stopping on validation top-1; 0 disables
    cache_views: int = 3               # cached views per train image: 1 plain + augmented ones
    crop_scale: float = 0.4
    hflip: bool = True
    color_jitter: float = 0.2
    rotation: float = 10.0
    mixup: float = 0.0                 # MixUp alpha; 0 disables
    cutmix: float = 0.0                # CutMix alpha; 0 disables
    skip_bad_images: bool = False
    seed: int = 0
    workers: int = 0                   # 0: one decoder per CPU core
    threads: int = 0                   # 0: torch default

    def validate(self) -> "TrainConfig":
        from .models import MODELS
        if self.model not in MODELS:
            raise ConfigError(f"unknown model '{self.model}': choose one of {', '.join(MODELS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy '{self.strategy}': choose one of "
                              f"{', '.join(STRATEGIES)}")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise ConfigError(f"--weights {self.weights}: not 'imagenet', 'none' or an existing "
                              "checkpoint file")
        if self.class_weights not in ("none", "balanced"):
            raise ConfigError(f"class_weights '{self.class_weights}': use none or balanced")
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
                  "lr": self.lr > 0, "cache_views": self.cache_views >= 1,
                  "img_size": self.img_size == 0 or self.img_size >= 32,
                  "dropout": 0 <= self.dropout < 1, "crop_scale": 0 < self.crop_scale <= 1,
                  "label_smoothing": 0 <= self.label_smoothing < 1,
                  "unfreeze": self.unfreeze >= 1, "warmup_epochs": self.warmup_epochs >= 0}
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is out of range")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def load_config(path=None, **overrides) -> TrainConfig:
    """Defaults <- TOML file ([train] table or top level) <- explicit overrides (not None)."""
    values = {}
    if path:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config ({e})") from e
        values.update(doc.get("train", doc))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f.type for f in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path or 'options'}: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(known)}")
    return TrainConfig(**values).validate()


def parse_names(value, allowed, what) -> list:
    """'a,b' (or a list) -> ['a', 'b'], each one of `allowed`; a clear error otherwise."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(f"unknown {what} '{','.join(bad) or value}': choose from "
                          f"{', '.join(allowed)}")
    return names
