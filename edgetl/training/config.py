"""Training settings: one dataclass, every value checked (type, finite, range) before any work
starts, loadable from TOML and overridable by the CLI; and the saved form in RUN/train/
config.json with the one rule for what --resume may continue."""
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..core.errors import ConfigError, RunError
from ..core.files import read_json, write_json
from ..core.names import check_number

STRATEGIES = ("feature-extract", "fine-tune", "progressive", "full")


@dataclass
class TrainConfig:
    model: str = "efficientnet_lite0"
    weights: str = "imagenet"          # imagenet | none | PATH to an edgetl checkpoint
    img_size: int | None = None        # None: the model's own input size
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

    # (kind, low, high, low excluded) per numeric setting
    RANGES = {"img_size": (int, 32, 2048, False), "epochs": (int, 1, None, False),
              "warmup_epochs": (int, 0, None, False), "unfreeze": (int, 1, None, False),
              "progressive_every": (int, 1, None, False), "batch_size": (int, 2, None, False),
              "lr": (float, 0, 10, True), "backbone_lr_mult": (float, 0, 10, False),
              "weight_decay": (float, 0, 10, False), "dropout": (float, 0, 0.99, False),
              "label_smoothing": (float, 0, 0.99, False), "patience": (int, 0, None, False),
              "cache_views": (int, 1, 64, False), "crop_scale": (float, 0, 1, True),
              "color_jitter": (float, 0, 1, False), "rotation": (float, 0, 180, False),
              "mixup": (float, 0, None, False), "cutmix": (float, 0, None, False),
              "seed": (int, 0, None, False), "workers": (int, 0, 256, False),
              "threads": (int, 0, 1024, False)}

    def validate(self, where: str = "") -> "TrainConfig":
        from ..models import MODELS
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in (bool, "bool") and not isinstance(value, bool):
                raise ConfigError(f"{where}{f.name}={value!r}: must be true or false")
            if f.type in (str, "str") and not isinstance(value, str):
                raise ConfigError(f"{where}{f.name}={value!r}: must be a string")
        for name, (kind, low, high, low_open) in self.RANGES.items():
            if name == "img_size" and self.img_size is None:
                continue                        # the model's own input size
            check_number(name, getattr(self, name), kind, low, high, low_open, where.rstrip(": "))
        if self.model not in MODELS:
            raise ConfigError(f"{where}unknown model '{self.model}': choose one of "
                              f"{', '.join(MODELS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"{where}unknown strategy '{self.strategy}': choose one of "
                              f"{', '.join(STRATEGIES)}")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise ConfigError(f"{where}--weights {self.weights}: not 'imagenet', 'none' or an "
                              "existing checkpoint file")
        if self.class_weights not in ("none", "balanced"):
            raise ConfigError(f"{where}class_weights '{self.class_weights}': use none or balanced")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def load_config(path=None, **overrides) -> TrainConfig:
    """Defaults <- TOML file ([train] table or top level) <- explicit overrides (not None)."""
    values = {}
    if path:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config ({e})") from None
        table = doc.get("train", doc)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [train] must be a table of settings")
        values.update(table)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = [f.name for f in fields(TrainConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path or 'options'}: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(known)}")
    return TrainConfig(**values).validate(f"{path}: " if path else "")


# --- the saved form: RUN/train/config.json ----------------------------------------------------

RECORD_KEYS = ("data", "world_size", "spec")       # what config.json holds besides settings
NOT_SETTINGS = ("workers", "threads")               # how fast, not what: never make a run stale


def save_run_config(path, data_root: str, world: int, cfg: TrainConfig, spec: dict) -> None:
    write_json(path, {"data": data_root, "world_size": world, **cfg.to_dict(), "spec": spec})


def saved_settings(path) -> dict:
    """The settings a run was started with (without the record keys)."""
    saved = read_json(path)
    return {k: v for k, v in saved.items() if k not in RECORD_KEYS}


def resume_settings(train_files, given: dict) -> dict:
    """What --resume continues with: the saved settings. Refused when there is nothing to
    resume, the run already finished, or an option asks for something else."""
    if not train_files.config.is_file():
        raise RunError(f"nothing to resume in {train_files.dir}: start the run without --resume")
    if train_files.metrics.is_file():
        raise RunError(f"{train_files.dir} already finished: nothing to resume (pass "
                       "--overwrite to train it again, or choose another --out)")
    saved = saved_settings(train_files.config)
    differs = {k: (saved.get(k), v) for k, v in given.items()
               if k not in NOT_SETTINGS and saved.get(k) != v}
    if differs:
        detail = ", ".join(f"--{k.replace('_', '-')} {b} (saved: {a})" for k, (a, b) in
                           differs.items())
        raise ConfigError(f"--resume continues {train_files.dir} with its saved settings, but "
                          f"{detail} differs: drop the option, or start a new run with --out")
    return {**saved, **given}


def settings_differ(saved: dict, wanted: dict) -> list:
    """['epochs 1 -> 20', ...]: every setting (workers and threads aside) in which a saved run
    differs from the effective settings a new one would use."""
    return [f"{k.replace('_', '-')} {saved.get(k)} -> {v}" for k, v in wanted.items()
            if k not in NOT_SETTINGS and saved.get(k) != v]
