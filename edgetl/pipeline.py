"""`edgetl run`: image folder -> fine-tune -> QAT -> export -> bench against a target profile,
each stage skipped when its outputs on disk are up to date with the data and the options, and
`edgetl demo`: the same on the embedded digits."""
from pathlib import Path

from .benchmarking.options import BenchOptions
from .benchmarking.session import benchmark
from .benchmarking.targets import load_target
from .core import documents
from .core.errors import DeviceError, ParityError, RunError
from .core.files import read_json, sha256
from .core.layout import RunLayout, RunLock
from .core.options import make, split_layers
from .exporting.exporter import export
from .exporting.options import ExportOptions
from .training.config import TrainConfig, load_config, read_layers, saved_settings, \
    settings_differ
from .training.data import check_out_apart, discover, follow_data
from .training.digits import write_digits
from .training.fingerprint import changes, fingerprint
from .training.trainer import train

DEMO_TRAIN = dict(epochs=12, warmup_epochs=2, cache_views=3, batch_size=64, rotation=0.0,
                  hflip=False)
DEMO_EXPORT = dict(qat_epochs=1.0, bundle_size=100)
DEMO_BENCH = dict(iters=50, trials=3)


def run(data, target, out, *, overwrite=False, config=None, train_options=None,
        export_options=None, bench_options=None, **shortcuts) -> dict:
    """Returns {"train": metrics, "export": manifest, "bench": report, "skipped": [...]}.
    Each stage's settings, lowest layer first: defaults, the target profile, the [train] /
    [export] / [bench] tables of the `config` TOML file, then the options (`shortcuts`:
    any single setting, e.g. epochs=1 or quant="ptq", sorted into its stage)."""
    profile = load_target(target)
    layout = RunLayout(out)
    check_out_apart(data, out)
    files = read_layers(config)
    for stage, cls in (("export", ExportOptions), ("bench", BenchOptions)):
        make(cls, files[stage], f"{config}: [{stage}]")       # a mistyped key: one line
    given = split_layers(shortcuts, TrainConfig, ExportOptions, BenchOptions)
    wanted = load_config(**{"img_size": profile.img_size, **files["train"],
                            **(train_options or {}), **given[0]}).to_dict()
    asked = {**files["export"], **(export_options or {}), **given[1]}
    export_opts = {**_profile_export(profile, asked), **asked}
    bench_opts = {**files["bench"], **(bench_options or {}), **given[2],
                  "target": profile.path}
    _device_ready(profile, bench_opts)              # seconds now, not after the training
    skipped, result = [], {}
    with RunLock(out):
        if not overwrite and _train_up_to_date(layout, data, wanted):
            skipped.append("train")
            result["train"] = read_json(layout.train.metrics)
        else:
            resume = not overwrite and layout.train.config.is_file() and \
                not layout.train.metrics.is_file()
            result["train"] = train(data, out, overwrite=overwrite, resume=resume, **wanted)
        export_error = None
        if not overwrite and _export_up_to_date(layout, profile, export_opts):
            skipped.append("export")
            result["export"] = documents.read(layout.export.manifest, "export")
            export_error = "; ".join(result["export"].get("failed", [])) or None
        else:
            try:
                result["export"] = export(out, overwrite=True, **export_opts)
            except ParityError as e:         # builds written: measure them, report the gap
                result["export"], export_error = e.manifest, str(e)
        result["bench"] = benchmark(out, **bench_opts)
    if export_error:
        result["export_error"] = result["bench"]["export_error"] = export_error
    result["skipped"] = skipped
    return result


def demo(out="runs/demo", target="x86-cpu", overwrite=False, **overrides) -> dict:
    """The main job on the digits: fine-tune efficientnet_lite0 at 64 px, QAT, export the
    target's builds, benchmark them; returns {"train", "export", "bench", "skipped"}."""
    data = write_digits(Path(out) / "data" / "digits")
    settings = {**DEMO_TRAIN, **overrides}
    return run(data, target, out, overwrite=overwrite,
               train_options={"img_size": 64, **settings}, export_options=DEMO_EXPORT,
               bench_options=DEMO_BENCH)


def _profile_export(profile, asked: dict) -> dict:
    """The export settings a profile gives: its formats and precisions, exactly its builds
    (variants it does not run are not made) unless formats or precisions are asked for, and
    its int8 budget."""
    own = {"formats": profile.formats, "precisions": profile.precisions,
           "build_names": ",".join(b.build for b in profile.builds)}
    if {"formats", "precisions"} & set(asked):
        del own["build_names"]
    if profile.max_int8_drop is not None:
        own["max_int8_drop"] = profile.max_int8_drop
    return own


def _device_ready(profile, bench_opts: dict) -> None:
    """`edgetl device check` of the bench's device for the profile's builds; one line naming
    what is missing, and the fix, before anything is trained."""
    from .benchmarking.check import device_check
    device = bench_opts.get("device")
    result = device_check(device, profile.path, bench_opts.get("python"),
                          bench_opts.get("ssh_config"))
    if not result["ready"]:
        missing = "; ".join(f"{c['what']}: {c['detail']}" + (f" ({c['fix']})" if c["fix"] else "")
                            for c in result["checks"] if not c["ok"])
        raise DeviceError(f"{result['device']} is not ready for {profile.name}: {missing}; "
                          f"nothing was trained (edgetl device check {result['device']} "
                          f"--target {profile.name} says the same)")


def _train_up_to_date(layout, data, wanted: dict) -> bool:
    """RUN/train finished with exactly the settings this run would use (every one, defaults
    included) on this data; a finished run with other settings or other data is an error (one
    line saying what differs). Data that moved with the same files is followed."""
    files = layout.train
    if not files.metrics.is_file():
        return False
    differs = settings_differ(saved_settings(files.config), wanted)
    found = discover(data, wanted["seed"])
    what = changes(read_json(files.split)["fingerprint"], fingerprint(found))
    if what:
        differs.append(f"data: {what}")
    if differs:
        raise RunError(f"{files.dir} was trained with other settings or data "
                       f"({'; '.join(differs)}): choose another --out or pass --overwrite")
    follow_data(files.split, found.root)
    return True


def _export_up_to_date(layout, profile, export_opts: dict) -> bool:
    """RUN/export was built from the current checkpoint with these options and holds every
    build they ask for and the profile names (otherwise it is rebuilt: it derives from
    RUN/train alone)."""
    if not layout.export.manifest.is_file():
        return False
    m = documents.read(layout.export.manifest, "export")
    opts = make(ExportOptions, export_opts, "export options")
    recorded, wanted = dict(m.get("settings", {})), opts.record()
    names = set(recorded.pop("builds", []))
    same = all(recorded.get(k) == v for k, v in wanted.items() if k != "builds")
    needed = {b.name for b in opts.builds()} | {b.build for b in profile.builds}
    return same and m["source_checkpoint_sha256"] == sha256(layout.train.checkpoint) and \
        needed <= names
