"""Image folders, splits and image modes, including every bad-input case."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgetl
from edgetl.training.data import discover
from edgetl.training.images import open_rgb

from conftest import FAST, make_folder


def test_split_folders_are_read_with_val_alias(tmp_path):
    root = make_folder(tmp_path / "d", splits=("train", "val"))
    s = discover(root)
    assert s.classes == ["class0", "class1"] and s.source == "folders"
    assert len(s.train) == 24 and len(s.val) == 24 and s.test == []


def test_class_folders_are_split_stratified_and_seeded(tmp_path):
    root = make_folder(tmp_path / "d", classes=3, per_class=20, splits=())
    a, b, c = discover(root, seed=1), discover(root, seed=1), discover(root, seed=2)
    assert a.source == "auto-split" and a.manifest() == b.manifest() != c.manifest()
    for part in (a.train, a.val, a.test):
        assert sorted({y for _, y in part}) == [0, 1, 2]
    assert len(a.train) + len(a.val) + len(a.test) == 60
    assert not {p for p, _ in a.train} & {p for p, _ in a.test}


def test_auto_split_is_written_to_the_run(tmp_path):
    root = make_folder(tmp_path / "d", classes=2, per_class=10, splits=())
    edgetl.train(root, tmp_path / "run", **{**FAST, "epochs": 1})
    split = json.loads((tmp_path / "run/train/split.json").read_text())
    assert split["source"] == "auto-split" and len(split["test"]) == 4


@pytest.mark.parametrize("layout, message", [
    ("single-class", "needs at least 2"),
    ("empty-class", "is empty"),
    ("missing-train", "no train/"),
    ("extra-class", "classes not in train/"),
    ("no-folder", "does not exist"),
])
def test_bad_layouts_name_the_folder_and_fix(tmp_path, layout, message):
    root = tmp_path / "d"
    if layout == "single-class":
        make_folder(root, classes=1, splits=("train", "validation"))
    elif layout == "empty-class":
        make_folder(root)
        (root / "train" / "class9").mkdir()
    elif layout == "missing-train":
        make_folder(root, splits=("validation",))
    elif layout == "extra-class":
        make_folder(root)
        (root / "validation" / "class7").mkdir()
        (root / "validation" / "class0" / "000.jpg").rename(root / "validation/class7/0.jpg")
    with pytest.raises(edgetl.DataError, match=re.escape(message)) as err:
        discover(root)
    assert "\n" not in str(err.value) and str(root) in str(err.value)


def _break(path, how):
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "not-an-image":
        path.write_text("hello")
    elif how == "corrupt":
        path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    elif how == "wrong-extension":
        path.with_suffix(".txt").write_text("notes")


@pytest.mark.parametrize("how", ["zero-byte", "not-an-image", "corrupt"])
def test_bad_image_fails_with_its_path_or_is_skipped_and_counted(image_folder, tmp_path, how):
    victim = image_folder / "train" / "class0" / "003.jpg"
    _break(victim, how)
    with pytest.raises(edgetl.DataError, match="--skip-bad-images") as err:
        edgetl.train(image_folder, tmp_path / "run", **FAST)
    assert str(victim) in str(err.value)
    m = edgetl.train(image_folder, tmp_path / "run2", skip_bad_images=True, **FAST)
    assert m["skipped_images"]["count"] == 1
    assert m["skipped_images"]["files"][0]["path"] == str(victim)
    assert m["n"]["train"] == 23


def test_files_without_an_image_extension_are_ignored_and_listed(image_folder, tmp_path):
    """Thumbs.db, notes and the like in a class folder are not samples: the run goes on and
    names them in metrics.json."""
    _break(image_folder / "train" / "class0" / "003.jpg", "wrong-extension")
    (image_folder / "train" / "class1" / "Thumbs.db").write_bytes(b"\x00" * 64)
    m = edgetl.train(image_folder, tmp_path / "run", **FAST)
    assert m["n"]["train"] == 24 and m["skipped_images"]["count"] == 0
    assert sorted(Path(p).name for p in m["ignored_files"]) == ["003.txt", "Thumbs.db"]


def test_truncated_image_is_caught_at_decode(image_folder, tmp_path):
    victim = image_folder / "train" / "class1" / "000.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(edgetl.DataError, match=re.escape(str(victim))):
        edgetl.train(image_folder, tmp_path / "run", **FAST)
    m = edgetl.train(image_folder, tmp_path / "run2", skip_bad_images=True, **FAST)
    assert [f["path"] for f in m["skipped_images"]["files"]] == [str(victim)]


def test_every_image_mode_decodes_to_rgb(tmp_path):
    arr = (np.arange(40 * 40).reshape(40, 40) % 256).astype(np.uint8)
    images = {
        "gray.png": Image.fromarray(arr, "L"),
        "rgba.png": Image.fromarray(np.dstack([arr] * 4), "RGBA"),
        "palette.png": Image.fromarray(np.dstack([arr] * 3), "RGB").convert("P"),
        "gray16.png": Image.fromarray(arr.astype(np.uint16) * 257),
        "cmyk.jpg": Image.fromarray(np.dstack([arr] * 3), "RGB").convert("CMYK"),
        "la.png": Image.fromarray(np.dstack([arr] * 2), "LA"),
    }
    for name, img in images.items():
        img.save(tmp_path / name)
        out = open_rgb(tmp_path / name)
        assert out.mode == "RGB" and out.size == (40, 40), name
        assert np.asarray(out).max() > 100, f"{name} lost its dynamic range"


def test_mixed_modes_train_end_to_end(image_folder, tmp_path):
    for i, path in enumerate(sorted((image_folder / "train" / "class0").glob("*.jpg"))[:4]):
        img = Image.open(path)
        mode = ["L", "RGBA", "P", "I;16"][i]
        converted = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257) \
            if mode == "I;16" else img.convert(mode)
        path.unlink()
        converted.save(path.with_suffix(".png"))
    m = edgetl.train(image_folder, tmp_path / "run", **FAST)
    assert m["n"]["train"] == 24 and m["skipped_images"]["count"] == 0
