"""The main job: image folder -> fine-tune -> QAT -> export -> bench against a target profile,
each stage skipped when its outputs on disk are up to date."""
import json
from pathlib import Path

from .checkpoint import sha256
from .errors import ParityError, RunError
from .targets import load_target


def run(data, target, out, model=None, img_size=None, epochs=None, quant="qat", device=None,
        overwrite=False, train_options=None, export_options=None, bench_options=None) -> dict:
    """Returns {"train": metrics, "export": manifest, "bench": report, "skipped": [...]}."""
    from .benchmark import bench
    from .exporters import export
    from .trainer import train
    profile = load_target(target)
    out = Path(out)
    wanted = {"model": model or "efficientnet_lite0", "img_size": img_size or profile.img_size,
              **({"epochs": epochs} if epochs else {}), **(train_options or {})}
    skipped, result = [], {}
    if not overwrite and _train_up_to_date(out, data, wanted):
        skipped.append("train")
        result["train"] = json.loads((out / "train" / "metrics.json").read_text())
    else:
        resume = not overwrite and (out / "train" / "config.json").is_file() and \
            not (out / "train" / "metrics.json").is_file()
        result["train"] = train(data, out, overwrite=overwrite, resume=resume,
                                **({} if resume else wanted))
    export_opts = dict(formats=profile.formats, precisions=profile.precisions, quant=quant,
                       **(export_options or {}))
    if not overwrite and _export_up_to_date(out, profile):
        skipped.append("export")
        result["export"] = json.loads((out / "export" / "manifest.json").read_text())
    else:
        try:
            result["export"] = export(out, overwrite=True, **export_opts)
        except ParityError as e:             # builds written: measure them, report the gap
            result["export"], result["export_error"] = e.manifest, str(e)
    result["bench"] = bench(out, target=profile.path, device=device, **(bench_options or {}))
    if "export_error" in result:
        result["bench"]["export_error"] = result["export_error"]
    result["skipped"] = skipped
    return result


def _train_up_to_date(out: Path, data, wanted: dict) -> bool:
    """RUN/train finished with these settings; a finished run with others is an error."""
    metrics, config = out / "train" / "metrics.json", out / "train" / "config.json"
    if not metrics.is_file():
        return False
    saved = json.loads(config.read_text())
    saved_data = Path(saved.get("data", "")).resolve()
    differs = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if saved_data != Path(data).resolve():
        differs["data"] = (str(saved_data), str(Path(data).resolve()))
    if differs:
        detail = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in differs.items())
        raise RunError(f"{out / 'train'} was trained with other settings ({detail}): choose "
                       "another --out or pass --overwrite")
    return True


def _export_up_to_date(out: Path, profile) -> bool:
    """RUN/export was built from the current checkpoint and holds every build the profile
    names (otherwise it is rebuilt: it derives from RUN/train alone)."""
    manifest = out / "export" / "manifest.json"
    if not manifest.is_file():
        return False
    m = json.loads(manifest.read_text())
    names = {a["name"] for a in m["artifacts"]}
    return m["source_checkpoint_sha256"] == sha256(out / "train" / "model.safetensors") and \
        all(b.build in names for b in profile.builds)
