"""Fault suite, data and run folder: what users do to their data sets and run folders (edit the
data, point --out at the wrong folder, run twice at once, mistype a setting) never gives a silent
stale result, never deletes their files, and ends in one clear line."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

import edgetl
from edgetl.core.console import stage_logger
from edgetl.core.layout import RunLock, TrainFiles
from edgetl.models import create_model
from edgetl.training import features
from edgetl.training.config import TrainConfig
from edgetl.training.data import discover, load_split
from edgetl.training.job import Job

from conftest import FAST, cli, make_folder, one_line

PROFILE = ('name = "tiny"\ndevice = "local"\nimg_size = 32\nthreads = 1\n'
           'latency_budget_ms = 10000\nmin_top1 = 0.0\n[[builds]]\nbuild = "onnx-fp32"\n'
           'runtime = "onnxruntime"\n')
QUICK_BENCH = dict(iters=3, trials=1, warmup=0)
OPTIONS = {k: v for k, v in FAST.items() if k not in ("model", "img_size")}


def test_a_changed_data_set_is_never_served_by_the_old_model(tmp_path):
    data = make_folder(tmp_path / "data", per_class=10)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE)
    out = tmp_path / "run"
    first = edgetl.run(data, profile, out, quant="ptq", train_options=OPTIONS,
                       bench_options=QUICK_BENCH)
    assert first["skipped"] == []
    Image.new("RGB", (40, 40), "white").save(data / "train" / "class1" / "new.jpg")
    with pytest.raises(edgetl.RunError, match=r"other settings or data.*1 image\(s\) added"):
        edgetl.run(data, profile, out, quant="ptq", train_options=OPTIONS,
                   bench_options=QUICK_BENCH)
    (data / "train" / "class1" / "new.jpg").unlink()
    victim = data / "validation" / "class0" / "000.jpg"
    Image.new("RGB", (40, 40), "black").save(victim)                 # same path, new picture
    with pytest.raises(edgetl.RunError, match=r"1 image\(s\) changed.*validation/class0/000"):
        edgetl.run(data, profile, out, quant="ptq", train_options=OPTIONS,
                   bench_options=QUICK_BENCH)


def test_resume_refuses_other_data_and_other_settings(tmp_path):
    data = make_folder(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    edgetl.train(data, run, **FAST)
    (run / "train" / "metrics.json").unlink()                        # as if interrupted
    other = make_folder(tmp_path / "other", classes=3, per_class=10)
    with pytest.raises(edgetl.RunError, match="changed since.*class\\(es\\) added: class2"):
        edgetl.train(other, run, resume=True)
    with pytest.raises(edgetl.ConfigError, match="--model mobilenet_v2.*saved: efficientnet"):
        edgetl.train(data, run, resume=True, model="mobilenet_v2")
    m = edgetl.train(data, run, resume=True)
    assert m["epochs_run"] == FAST["epochs"]
    with pytest.raises(edgetl.RunError, match="already finished: nothing to resume"):
        edgetl.train(data, run, resume=True)


def test_the_feature_cache_is_keyed_on_the_files_not_only_their_names(image_folder, tmp_path):
    model, spec = create_model("efficientnet_lite0", 2)
    spec = spec.with_size(32)
    cfg = TrainConfig(**FAST)
    log = stage_logger(tmp_path / "log.txt", enabled=False)
    unit, cache = len(model.features) - 2, tmp_path / "cache"
    files = TrainFiles(tmp_path)                                         # its cache: tmp/cache
    build = lambda: features.build_inputs(
        Job(model, unit, spec, discover(image_folder), cfg, files, 1, log), 0)
    before = build()["val"][0].clone()
    written = (cache / "val.safetensors").stat().st_mtime_ns
    build()
    assert (cache / "val.safetensors").stat().st_mtime_ns == written      # a hit: not redone
    victim = discover(image_folder).val[0][0]
    Image.new("RGB", (40, 40), "black").save(victim)                      # same name, new image
    after = build()["val"][0]
    assert (cache / "val.safetensors").stat().st_mtime_ns != written
    assert not (after[0] == before[0]).all() and (after[1:] == before[1:]).all()


def test_overwrite_deletes_only_what_edgetl_wrote(image_folder, tmp_path):
    """--out pointed at a folder whose train/ is the user's (another data set, notes): it is
    not a run and is never deleted, with or without --overwrite. (--out at the data folder
    itself is refused earlier: tests/test_faults_layouts.py.)"""
    mine = make_folder(tmp_path / "other-data", per_class=2)
    before = sorted(p.name for p in (mine / "train").rglob("*"))
    for extra in ([], ["--overwrite"]):
        res = cli("train", image_folder, "--out", mine, *extra, "--img-size", "32")
        assert "was not written by edgetl" in one_line(res)
    assert sorted(p.name for p in (mine / "train").rglob("*")) == before


def test_two_processes_on_one_run_folder_are_refused_with_the_other_pid(image_folder, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from edgetl.core.layout import RunLock\n"
                               f"with RunLock({str(run)!r}):\n"
                               "    print('held', flush=True); time.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = cli("train", image_folder, "--out", run, "--img-size", "32", "--epochs", "1")
        line = one_line(res)
        assert f"in use by another edgetl process (pid {holder.pid})" in line
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run), RunLock(run):                    # re-entrant within one process
        pass


@pytest.mark.parametrize("args, message", [
    (["--lr", "inf"], "lr=inf: must be a finite number"),
    (["--weight-decay", "nan"], "weight_decay=nan: must be a finite number"),
    (["--progressive-every", "0"], "progressive_every=0 is out of range"),
    (["--seed", "-1"], "seed=-1 is out of range"),
    (["--workers", "-2"], "workers=-2 is out of range"),
    (["--threads", "-1"], "threads=-1 is out of range"),
    (["--batch-size", "1"], "batch_size=1 is out of range"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
])
def test_every_bad_setting_is_one_line_before_any_work(image_folder, tmp_path, args, message):
    res = cli("train", image_folder, "--out", tmp_path / "run", *args)
    assert message in one_line(res)
    assert not (tmp_path / "run" / "train").exists()


@pytest.mark.parametrize("toml, message", [
    ("[train]\nepochs = \"ten\"\n", "epochs='ten': must be a whole number"),
    ("[train]\nhflip = \"yes\"\n", "hflip='yes': must be true or false"),
    ("[train]\nepochs = 2.5\n", "epochs=2.5: must be a whole number"),
    ("[train]\ndropout = 1.5\n", "dropout=1.5 is out of range"),
    ("train = 3\n", "[train] must be a table"),
])
def test_bad_config_files_are_one_line(image_folder, tmp_path, toml, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    line = one_line(cli("train", image_folder, "--out", tmp_path / "run", "--config", cfg))
    assert message in line and "c.toml" in line


def test_bad_images_of_every_kind_are_caught_before_training(image_folder, tmp_path):
    """A decompression bomb, a truncated JPEG (decodes its header but not its data), and files
    in hidden or system folders."""
    bomb = image_folder / "train" / "class0" / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)              # 400 Mpx: PIL refuses it
    truncated = image_folder / "train" / "class1" / "000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-300])
    for hidden in (".ipynb_checkpoints", "@eaDir", "__MACOSX"):
        folder = image_folder / "train" / "class0" / hidden
        folder.mkdir()
        Image.new("RGB", (40, 40)).save(folder / "copy.jpg")
    (image_folder / "validation" / ".hidden_class").mkdir()
    res = cli("train", image_folder, "--out", tmp_path / "r1", "--img-size", "32")
    assert "--skip-bad-images" in one_line(res)
    m = edgetl.train(image_folder, tmp_path / "r2", skip_bad_images=True, **FAST)
    assert sorted(os.path.basename(f["path"]) for f in m["skipped_images"]["files"]) == \
        ["000.jpg", "bomb.png"]
    assert m["n"]["train"] == 24 - 1                       # 12 + 13 files, 2 bad, none hidden
    split = json.loads((tmp_path / "r2" / "train" / "split.json").read_text())
    listed = [p for s in ("train", "val", "test") for p, _ in split[s]]
    assert "train/class1/000.jpg" not in listed and not any("copy" in p for p in listed)


def test_an_empty_validation_folder_is_refused_up_front(tmp_path):
    data = make_folder(tmp_path / "d", splits=("train",))
    (data / "validation").mkdir()
    res = cli("train", data, "--out", tmp_path / "run", "--img-size", "32")
    assert "validation holds no class folders with images" in one_line(res)


def test_a_run_works_from_another_folder_with_paths_relative_to_the_data(tmp_path):
    make_folder(tmp_path / "d", per_class=6)
    res = cli("train", "d", "--out", "runs/a", "--img-size", "32", "--epochs", "1",
               "--cache-views", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    split = json.loads((tmp_path / "runs/a/train/split.json").read_text())
    assert split["root"] == str(tmp_path / "d")
    assert all(not os.path.isabs(p) for p, _ in split["train"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    splits = load_split(tmp_path / "runs/a/train/split.json")
    assert all(os.path.isfile(p) for p, _ in splits.train)
    res = cli("export", tmp_path / "runs/a", "--formats", "onnx", "--precision", "fp32",
               "--bundle-size", "4", cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_damaged_run_file_is_one_line_naming_it(image_folder, tmp_path):
    edgetl.train(image_folder, tmp_path / "run", **FAST)
    (tmp_path / "run" / "train" / "split.json").write_text("{not json")
    line = one_line(cli("export", tmp_path / "run", "--formats", "onnx", "--precision", "fp32"))
    assert "split.json is damaged" in line


def test_an_unexpected_error_is_one_line_with_the_log_of_its_traceback(tmp_path, capsys,
                                                                     monkeypatch):
    """A bug (here: a stage raising something edgetl does not expect) never shows a traceback."""
    from edgetl import cli
    from edgetl.training import trainer

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug\nwith two lines")
    monkeypatch.setattr(trainer, "train", broken)
    monkeypatch.setenv("HOME", str(tmp_path))
    from edgetl.core import exits
    assert cli.main(["train", str(tmp_path), "--out", str(tmp_path / "r")]) == exits.INTERNAL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ZeroDivisionError: simulated bug with two lines" in err[0]
    log = err[0].split("traceback in ")[1].split(";")[0]
    assert "Traceback" in open(log).read()
