"""Training settings: one dataclass, every value checked (type, finite, range) before any work
starts, loadable from TOML and overridable by the CLI; and the saved form in RUN/train/
config.json with the one rule for what --resume may continue."""
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.errors import ConfigError, RunError
from ..core.files import read_json, write_json
from ..core.options import check, make, option
from ..models import MODELS
from .precision import CHOICES as PRECISIONS
from .strategy import UNFREEZE, UNFREEZE_OTHERS, units_trained

STRATEGIES = ("feature-extract", "fine-tune", "progressive", "full")


@dataclass
class TrainConfig:
    model: str = option("efficientnet_lite0", "backbone", choices=tuple(MODELS))
    weights: str = option("imagenet", "initial weights: imagenet, none or PATH of an edgetl "
                          "checkpoint")
    img_size: int | None = option(None, "input size in pixels", kind=int, low=32, high=2048,
                                  unset="the model's own")
    strategy: str = option("fine-tune", "what trains", choices=STRATEGIES)
    epochs: int = option(12, "epochs (12: chosen by 3-fold validation, "
                         "benchmarks/results/choose_defaults.json)", low=1)
    warmup_epochs: int = option(3, "head-only epochs before unfreezing (fine-tune)", low=0)
    unfreeze: int | None = option(None, "top feature units trained after warm-up", low=1,
                                  unset="the model's own, chosen by 3-fold validation: " +
                                  ", ".join(f"{n} for {m}" for m, n in UNFREEZE.items()) +
                                  f", else {UNFREEZE_OTHERS}")
    progressive_every: int = option(3, "epochs between unfreezing one more unit "
                                    "(progressive)", low=1)
    batch_size: int = option(64, "images per step", low=2)
    lr: float = option(3e-3, "head learning rate", low=("above", 0), high=10)
    backbone_lr_mult: float = option(0.1, "unfrozen units train at lr x this", low=0, high=10)
    weight_decay: float = option(1e-4, "AdamW weight decay", low=0, high=10)
    train_bn_stats: bool = option(False, "trained units update their BatchNorm statistics "
                                  "(from scratch: always)")
    dropout: float = option(0.2, "dropout before the classifier", low=0, high=0.99)
    label_smoothing: float = option(0.1, "label smoothing", low=0, high=0.99)
    class_weights: str = option("none", "loss weights per class", choices=("none", "balanced"))
    patience: int = option(8, "early stopping on validation top-1 after this many epochs "
                           "without gain; 0 disables", low=0)
    # 2, chosen on validation: k-fold top-1 0.898 with 2 views, 0.897 with 3 (3,409 images; 3
    # against 2: 69 lost, 65 gained, p=0.40), the cache pass a third shorter
    # (benchmarks/results/choose_views.json)
    cache_views: int = option(2, "cached views per training image: 1 plain + augmented ones",
                              low=1, high=64)
    crop_scale: float = option(0.4, "smallest crop area of a random resized crop",
                               low=("above", 0), high=1)
    hflip: bool = option(True, "random horizontal flips")
    color_jitter: float = option(0.2, "brightness/contrast/saturation jitter", low=0, high=1)
    rotation: float = option(10.0, "random rotation, degrees", low=0, high=180)
    mixup: float = option(0.0, "MixUp alpha; 0 disables", low=0)
    cutmix: float = option(0.0, "CutMix alpha; 0 disables", low=0)
    skip_bad_images: bool = option(False, "skip (and count) unreadable images instead of "
                                   "stopping")
    seed: int = option(0, "seed of the split, the shuffles and the augmentation", low=0)
    workers: int = option(0, "image decoder processes; 0: one per CPU core", low=0, high=256)
    threads: int = option(0, "PyTorch threads; 0: torch's default, at most the usable CPUs",
                          low=0, high=1024)
    train_precision: str = option("auto", "number format of the training steps: auto (bf16 "
                                  "where the CPU has AMX or AVX512-BF16, else fp32), fp32 or "
                                  "bf16 (evaluation is always fp32)", choices=PRECISIONS)
    teacher: str | None = option(None, "a finished run (RUN folder) whose model's soft targets "
                                 "the student also learns from (knowledge distillation; its "
                                 "logits are computed once per cached view)", kind=str,
                                 unset="none")
    distill_weight: float = option(0.5, "share of the loss that follows the teacher", low=0,
                                   high=1)
    distill_temperature: float = option(2.0, "softmax temperature of the teacher's targets",
                                        low=("above", 0), high=100)
    search: float = option(0.0, "seconds for a recipe search on the cached features: trials "
                           "chosen by validation top-1, recorded in RUN/train/search.json; "
                           "0: none", low=0)

    def validate(self, where: str = "") -> "TrainConfig":
        check(self, where.rstrip(": "))
        self.unfreeze = units_trained(self)     # resolved: runs compare settings by value
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise ConfigError(f"{where}--weights {self.weights}: not 'imagenet', 'none' or an "
                              "existing checkpoint file")
        if self.teacher:
            if not (Path(self.teacher) / "train" / "model.safetensors").is_file():
                raise ConfigError(f"{where}--teacher {self.teacher}: no finished run there "
                                  "(RUN/train/model.safetensors); train the teacher first")
            if self.mixup or self.cutmix or self.strategy == "full":
                raise ConfigError(f"{where}--teacher: distillation reads the teacher's logits "
                                  "of each cached view, so it needs a frozen part and no "
                                  "MixUp/CutMix; drop --mixup/--cutmix or --strategy full")
        if self.search and self.strategy == "full":
            raise ConfigError(f"{where}--search trains its trials on the cached features; "
                              "--strategy full caches none: drop one of them")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


STAGES = ("train", "export", "bench")


def read_layers(path) -> dict:
    """The [train], [export] and [bench] tables of an `edgetl run --config` TOML file (each
    empty when absent; None: no file)."""
    layers = {stage: {} for stage in STAGES}
    if not path:
        return layers
    doc = _read_toml(path)
    unknown = sorted(set(doc) - set(STAGES))
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; use [train], "
                          "[export] and [bench]")
    for stage in STAGES:
        if not isinstance(doc.get(stage, {}), dict):
            raise ConfigError(f"{path}: [{stage}] must be a table of settings")
        layers[stage] = dict(doc.get(stage, {}))
    return layers


def _read_toml(path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None


def load_config(path=None, **overrides) -> TrainConfig:
    """Defaults <- TOML file ([train] table or top level) <- explicit overrides (not None)."""
    values = {}
    if path:
        doc = _read_toml(path)
        table = doc.get("train", doc)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [train] must be a table of settings")
        values.update(table)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make(TrainConfig, values, path or "options").validate(f"{path}: " if path else "")


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
