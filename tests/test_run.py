"""The main job: image folder -> fine-tune -> quantize -> export -> bench, stages skipped when
their outputs are up to date, never silently redone with other settings."""
import json
import time

import pytest

import edgetl
from edgetl import cli
from edgetl.core import errors
from edgetl.pipeline import run

from conftest import FAST, make_folder

PROFILE = """name = "tiny-x86"
device = "local"
img_size = 32
threads = 1
latency_budget_ms = 10000
min_top1 = 0.5
[[builds]]
build = "onnx-fp32"
runtime = "onnxruntime"
[[builds]]
build = "onnx-int8"
runtime = "onnxruntime"
"""


@pytest.mark.slow
def test_run_goes_from_folder_to_verdict_and_skips_up_to_date_stages(tmp_path, capsys):
    data = make_folder(tmp_path / "data", classes=2, per_class=12)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE)
    out = tmp_path / "run"
    quick = dict(iters=5, trials=2, warmup=1)
    options = {k: v for k, v in FAST.items() if k not in ("model", "img_size")}
    first = run(data, profile, out, quant="ptq", train_options=options,
                export_options={"bundle_size": 8}, bench_options=quick)
    assert first["skipped"] == [] and first["train"]["img_size"] == 32
    assert {a["name"] for a in first["export"]["artifacts"]} == {"onnx-fp32", "onnx-int8"}
    assert first["bench"]["verdict"]["passed"], first["bench"]["verdict"]
    exported = (out / "export" / "manifest.json").stat().st_mtime
    t0 = time.time()
    again = run(data, profile, out, quant="ptq", train_options=options,
                export_options={"bundle_size": 8}, bench_options=quick)
    assert again["skipped"] == ["train", "export"] and time.time() - t0 < 60
    assert (out / "export" / "manifest.json").stat().st_mtime == exported
    assert list((out / "bench" / "history").iterdir())          # first report kept
    with pytest.raises(errors.RunError, match="other settings.*epochs 3 -> 4.*--overwrite"):
        run(data, profile, out, quant="ptq", train_options={**options, "epochs": 4})
    code = cli.main(["run", str(data), "--target", str(profile), "--out", str(tmp_path / "x"),
                     "--epochs", "1", "--img-size", "32", "--quant", "ptq",
                     "--time-budget", "0"])    # adaptive trials, the minimum: 5, not up to 50
    text = capsys.readouterr().out
    assert code == 0 and "target tiny-x86: PASS" in text
    assert json.loads((tmp_path / "x" / "bench" / "report.json").read_text())["verdict"]


@pytest.mark.slow
def test_the_main_job_exports_the_targets_builds_and_more_only_when_asked(tmp_path, capsys):
    """A profile's builds are what `edgetl run` makes (TFLite's float-io and NHWC variants only
    where a profile runs them); --formats/--precision ask for every build of theirs, and an
    export without them is then out of date."""
    data = make_folder(tmp_path / "data", classes=2, per_class=8)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE.split("[[builds]]")[0] +
                       '[[builds]]\nbuild = "tflite-int8"\nruntime = "litert"\n')
    out = tmp_path / "run"
    options = {**{k: v for k, v in FAST.items() if k not in ("model", "img_size")},
               "epochs": 1}
    quick = dict(iters=3, trials=1, warmup=0)
    made = lambda result: {a["name"] for a in result["export"]["artifacts"]}
    first = run(data, profile, out, quant="ptq", train_options=options,
                export_options={"bundle_size": 4, "max_int8_drop": None}, bench_options=quick)
    assert made(first) == {"tflite-int8"}
    more = run(data, profile, out, quant="ptq", train_options=options,
               export_options={"bundle_size": 4, "max_int8_drop": None, "formats": "tflite",
                               "precisions": "int8"}, bench_options=quick)
    assert more["skipped"] == ["train"]
    assert made(more) == {"tflite-int8", "tflite-int8-float-io", "tflite-int8-nhwc"}
    code = cli.main(["export", str(out), "--formats", "tflite", "--precision", "int8",
                     "--builds", "tflite-int8,tflite-int9", "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--builds" in err[0] and "tflite-int9" in err[0]
    assert "tflite-int8-nhwc" in err[0]                      # the builds it can make
    assert made(more) == {a["name"] for a in json.loads(
        (out / "export" / "manifest.json").read_text())["artifacts"]}     # nothing lost


def test_the_main_job_takes_a_config_file_between_the_profile_and_the_options(tmp_path):
    """Profile < [train]/[export]/[bench] of --config < command line, for each stage."""
    data = make_folder(tmp_path / "data", classes=2, per_class=8)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE.replace('[[builds]]\nbuild = "onnx-int8"\nruntime = "onnxruntime"\n',
                                       ""))
    config = tmp_path / "job.toml"
    config.write_text('[train]\nepochs = 2\nimg_size = 40\ncache_views = 1\nworkers = 1\n'
                      'lr = 0.02\n[export]\nbundle_size = 5\n[bench]\niters = 3\ntrials = 3\n'
                      'warmup = 0\n')
    out = tmp_path / "run"
    code = cli.main(["run", str(data), "--target", str(profile), "--out", str(out), "--config",
                     str(config), "--lr", "0.01", "--trials", "2", "--max-int8-drop", "2"])
    assert code == 0
    saved = json.loads((out / "train" / "config.json").read_text())
    assert (saved["epochs"], saved["img_size"], saved["lr"]) == (2, 40, 0.01)  # file > profile
    export = json.loads((out / "export" / "manifest.json").read_text())["settings"]
    assert export["bundle_size"] == 5 and export["max_int8_drop"] == 2.0
    bench = json.loads((out / "bench" / "report.json").read_text())["settings"]
    assert (bench["iters"], bench["trials"]) == (3, 2)                # option > file
    for text, message in (("[tarin]\nepochs = 2\n", r"unknown table\(s\) tarin"),
                          ("[export]\nbundel_size = 5\n", r"\[export\]: unknown setting\(s\) "
                                                         "bundel_size")):
        config.write_text(text)
        with pytest.raises(errors.ConfigError, match=message):
            run(data, profile, tmp_path / "r2", config=config)
    with pytest.raises(errors.ConfigError, match="unknown setting"):
        edgetl.export(out, overwrite=True, bundel_size=5)
