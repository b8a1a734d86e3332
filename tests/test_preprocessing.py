"""The bundle runner keeps its own preprocessing (it ships alone), so it is proven equal to the
training evaluation transform here: on real photos (scikit-learn's sample photos, CC BY) in the
modes and sizes phones and cameras produce, its input tensors match training's to well within
one uint8 step, and `run.py IMAGE...` predicts what the export predicted on the held-out images."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn
from PIL import Image

from edgetl.models import ModelSpec
from edgetl.models.spec import TF_MEAN, TF_STD
from edgetl.training.images import ImageDataset
from edgetl.training.transforms import eval_transform

PHOTOS = Path(sklearn.__file__).parent / "datasets" / "images"


def _runner(bundle: Path):
    """The run.py a bundle ships, imported as a module."""
    spec = importlib.util.spec_from_file_location("shipped_run", bundle / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict:
    """Real photos as the files users have: JPEG, PNG with alpha, palette, grayscale, 16-bit,
    EXIF-rotated (stored sideways), portrait, tiny."""
    root = tmp_path_factory.mktemp("photos")
    china, flower = (Image.open(PHOTOS / n).convert("RGB") for n in ("china.jpg", "flower.jpg"))
    out = {"jpeg": PHOTOS / "china.jpg", "jpeg2": PHOTOS / "flower.jpg"}
    alpha = flower.convert("RGBA")
    alpha.putalpha(Image.linear_gradient("L").resize(flower.size))
    files = {"alpha.png": alpha, "palette.png": china.convert("P"),
             "gray.jpg": china.convert("L"), "portrait.jpg": flower.crop((100, 0, 300, 427)),
             "tiny.png": china.resize((40, 27)),
             "gray16.png": Image.fromarray(np.asarray(china.convert("L"), np.uint16) * 257)}
    for name, img in files.items():
        img.save(root / name)
        out[name] = root / name
    exif = Image.Exif()
    exif[0x0112] = 6                       # orientation: rotate 90 CW to view
    china.transpose(Image.Transpose.ROTATE_90).save(root / "rotated.jpg", exif=exif, quality=95)
    out["rotated.jpg"] = root / "rotated.jpg"
    return out


def _manifest(spec: ModelSpec) -> dict:
    return {"preprocessing": {"img_size": spec.img_size, "resize_size": spec.resize_size,
                              "interpolation": spec.interpolation, "mean": list(spec.mean),
                              "std": list(spec.std)},
            "input": {"layout": "NCHW", "dtype": "float32", "quantization": None}}


@pytest.mark.parametrize("spec", [ModelSpec("lite0", 224, 256, TF_MEAN, TF_STD),
                                  ModelSpec("tv", 224, 232, (0.485, 0.456, 0.406),
                                            (0.229, 0.224, 0.225), "bilinear"),
                                  ModelSpec("small", 48, 55, TF_MEAN, TF_STD, "bicubic")],
                         ids=["lite0-224", "imagenet-232", "bicubic-48"])
def test_runner_input_equals_the_training_evaluation_input(exported, photos, spec):
    run, _ = exported
    runner = _runner(run / "export" / "onnx-fp32")
    manifest = _manifest(spec)
    step = 1 / 255 / min(spec.std)                   # one uint8 step after normalisation
    for name, path in photos.items():
        ours = runner.to_input(runner.load_image(path, manifest)[None], manifest)[0]
        samples = [(str(path), 0)]
        theirs = ImageDataset(samples, eval_transform(spec), spec.resize_size)[0][0].numpy()
        assert ours.shape == theirs.shape == (3, spec.img_size, spec.img_size), name
        assert np.abs(ours - theirs).max() <= 1e-5 < step, name


def test_exif_rotation_is_applied(exported, photos):
    run, _ = exported
    runner = _runner(run / "export" / "onnx-fp32")
    upright = np.asarray(runner.open_rgb(photos["jpeg"]), np.float32)
    turned = np.asarray(runner.open_rgb(photos["rotated.jpg"]), np.float32)
    assert turned.shape == upright.shape                   # stored 640x427, viewed 427x640
    wrong_way = upright[::-1, ::-1]
    assert np.abs(turned - upright).mean() < 0.2 * np.abs(turned - wrong_way).mean()


def test_run_py_on_image_files_predicts_what_the_export_predicted(exported):
    run, manifest = exported
    split = json.loads((run / "train" / "split.json").read_text())
    held_out = [str(Path(split["root"]) / p) for p, _ in split["test"]]
    for name in ("onnx-fp32", "tflite-int8", "tflite-int8-nhwc"):
        folder = run / "export" / name
        out = subprocess.run([sys.executable, "run.py", *held_out], cwd=folder,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        predicted = [p["index"] for p in json.loads(out.stdout)["predictions"]]
        artifact = next(a for a in manifest["artifacts"] if a["name"] == name)
        assert predicted == artifact["held_out_predictions"], name
