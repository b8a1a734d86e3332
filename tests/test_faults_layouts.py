"""Fault suite, second round, data and run folder: a run trained with other settings is never
served as current; the layouts of downloaded data sets (train/ + test/, links, system-looking
folder names, strips) are read as a user expects; --out never lands in the data; a run follows
its data when both move; a failed first start can simply be started again."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

import edgetl
from edgetl.training.data import discover

from conftest import FAST, cli, make_folder, one_line

PROFILE = ('name = "tiny"\ndevice = "local"\nimg_size = 32\nthreads = 1\n'
           'latency_budget_ms = 10000\nmin_top1 = 0.0\n[[builds]]\nbuild = "onnx-fp32"\n'
           'runtime = "onnxruntime"\n')
OPTIONS = {k: v for k, v in FAST.items() if k not in ("model", "img_size", "epochs")}


def _listing(root) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_run_trained_with_other_settings_is_never_served_as_current(tmp_path):
    """A 1-epoch smoke run, then the main job with its defaults on the same --out: every
    effective setting is compared (defaults included), not only the options typed."""
    data = make_folder(tmp_path / "d", per_class=8)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE)
    edgetl.train(data, tmp_path / "run", img_size=32, epochs=1, **OPTIONS)
    from edgetl.training.config import TrainConfig
    with pytest.raises(edgetl.RunError, match=f"epochs 1 -> {TrainConfig().epochs}"):
        edgetl.run(data, profile, tmp_path / "run", train_options=OPTIONS)
    for other in ({"lr": 0.05}, {"strategy": "feature-extract"}, {"unfreeze": 2}):
        with pytest.raises(edgetl.RunError, match="other settings"):
            edgetl.run(data, profile, tmp_path / "run", epochs=1,
                       train_options={**OPTIONS, **other})
    assert not (tmp_path / "run" / "export").exists()     # nothing was built on the stale model


@pytest.mark.parametrize("flag", ["--epochs", "--img-size"])
def test_zero_epochs_or_size_on_the_main_job_is_refused_not_dropped(tmp_path, flag):
    data = make_folder(tmp_path / "d", per_class=4)
    res = cli("run", data, "--target", "x86-cpu", "--out", tmp_path / "run", flag, "0")
    assert "out of range" in one_line(res)
    assert not (tmp_path / "run").exists()


def test_train_and_test_without_validation_carve_a_stratified_seeded_split(tmp_path):
    data = make_folder(tmp_path / "d", classes=3, per_class=20, splits=("train", "test"))
    a, b = discover(data, seed=0), discover(data, seed=0)
    assert a.val == b.val and a.train == b.train                       # seeded
    assert {y for _, y in a.val} == {0, 1, 2}                          # stratified
    assert len(a.val) == 9 and len(a.train) == 51                       # 15% of train/
    assert {p for p, _ in a.test} == {str(p) for p in (data / "test").rglob("*.jpg")}
    assert not {p for p, _ in a.val} & {p for p, _ in a.train}
    assert all("/train/" in p for p, _ in a.val) and "carved from train/" in a.source
    m = edgetl.train(data, tmp_path / "run", **FAST)
    split = json.loads((tmp_path / "run" / "train" / "split.json").read_text())
    assert "carved from train/" in split["source"] and m["test"]["n"] == 60
    assert "carved from train/" in (tmp_path / "run" / "train" / "train.log").read_text()


@pytest.mark.parametrize("where", ["inside", "same"])
def test_out_inside_the_data_folder_is_refused_before_anything_is_written(tmp_path, where):
    data = make_folder(tmp_path / "flat", per_class=6, splits=())
    before = _listing(data)
    out = data / "run" if where == "inside" else data
    for args in (["train", data, "--out", out, "--img-size", "32"],
                 ["run", data, "--target", "x86-cpu", "--out", out]):
        assert "inside the data folder" in one_line(cli(*args))
        assert _listing(data) == before


def test_data_inside_a_stage_folder_of_the_run_is_refused(tmp_path):
    data = make_folder(tmp_path / "run" / "train" / "photos", per_class=6, splits=())
    line = one_line(cli("train", data, "--out", tmp_path / "run", "--img-size", "32"))
    assert "inside a stage folder" in line


def test_a_run_follows_its_data_when_both_move_and_a_copied_run_exports(tmp_path):
    old = tmp_path / "old"
    data = make_folder(old / "data", per_class=6)
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE)
    edgetl.train(data, old / "run", **FAST | {"epochs": 2})
    new = tmp_path / "new"
    shutil.copytree(old, new)                 # copied together (mtimes kept), then the old goes
    shutil.rmtree(old)
    m = edgetl.export(new / "run", formats="onnx", precisions="fp32", bundle_size=4)
    assert m["artifacts"][0]["test_top1"] is not None
    result = edgetl.run(new / "data", profile, new / "run", epochs=2, train_options=OPTIONS,
                        bench_options=dict(iters=2, trials=1, warmup=0))
    assert "train" in result["skipped"]
    split = json.loads((new / "run" / "train" / "split.json").read_text())
    assert split["root"] == str((new / "data").resolve())


def test_links_and_system_looking_names(tmp_path):
    """A symbolic link loop inside a class folder reads each image once (never into two
    splits); folders named __x or @x are classes; only known system folders are skipped."""
    data = make_folder(tmp_path / "d", classes=2, per_class=9, splits=())
    os.symlink("..", data / "class0" / "loop")               # class0/loop/class0/loop/...
    os.symlink(".", data / "class1" / "again")
    for name in ("__other", "@home"):
        shutil.copytree(data / "class1", data / name, symlinks=True)
    for system in ("__MACOSX", "@eaDir", ".thumbnails"):
        shutil.copytree(data / "class0", data / system, symlinks=True)
    splits = discover(data)
    assert splits.classes == ["@home", "__other", "class0", "class1"]
    paths = [os.path.realpath(p) for p, _ in splits.all_samples()]
    assert len(paths) == len(set(paths)) == 4 * 9


def test_an_extreme_strip_is_a_bad_image_not_gigabytes(tmp_path):
    data = make_folder(tmp_path / "d", per_class=6)
    strip = data / "train" / "class0" / "strip.png"
    Image.new("RGB", (1, 1000), (200, 30, 30)).save(strip)
    with pytest.raises(edgetl.DataError, match=r"strip.png: .*aspect ratio 1x1000"):
        edgetl.train(data, tmp_path / "run", **FAST)
    m = edgetl.train(data, tmp_path / "run2", skip_bad_images=True, **FAST)
    assert [s["path"] for s in m["skipped_images"]["files"]] == [str(strip)]


def test_a_failed_first_start_can_simply_be_started_again(tmp_path):
    data = make_folder(tmp_path / "d", per_class=6)
    bad = data / "train" / "class0" / "000.jpg"
    good = bad.read_bytes()
    bad.write_bytes(b"")
    res = cli("train", data, "--out", tmp_path / "run", "--img-size", "32", "--epochs", "1")
    assert "zero-byte file" in one_line(res)
    bad.write_bytes(good)
    res = cli("train", data, "--out", tmp_path / "run", "--img-size", "32", "--epochs", "1",
               "--cache-views", "1")
    assert res.returncode == 0, res.stderr[-2000:]


def test_no_decoder_process_is_forked_while_jax_threads_are_live(tmp_path):
    """litert-torch loads JAX, whose threads a fork can deadlock: with JAX live the images
    decode in-process (JAX itself warns at every fork it sees)."""
    data = make_folder(tmp_path / "d", per_class=4, splits=())
    code = f"""
import warnings
import jax.numpy as jnp
jnp.zeros(1).block_until_ready()                      # JAX's threads are running
from torchvision import transforms
from edgetl.training.data import discover
from edgetl.training.images import loader
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    n = sum(len(y) for _, y, _ in loader(discover({str(data)!r}).train, transforms.ToTensor(),
                                         32, 2, workers=2))
print(n, [str(w.message)[:40] for w in seen if "fork" in str(w.message)])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    count, forks = res.stdout.split(" ", 1)
    assert int(count) > 0 and forks.strip() == "[]", res.stdout
