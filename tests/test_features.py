"""The frozen part runs once per image: in onnxruntime for big jobs, eagerly for small ones."""
import pytest
import torch

from edgetl.training import features
from edgetl.training.data import discover
from edgetl.training.transforms import eval_transform
from edgetl.models import create_model


@pytest.mark.parametrize("cut", ["mid-trunk", "pooled"])
def test_onnxruntime_and_torch_compute_the_same_cached_features(image_folder, cut):
    splits = discover(image_folder, 0)
    model, spec = create_model("efficientnet_lite0", 2)
    spec = spec.with_size(64)
    unit = len(model.features) - (3 if cut == "mid-trunk" else 0)
    out = {}
    for engine in ("torch", "onnxruntime"):
        run = features.FrozenPart(model, unit, spec.img_size, len(splits.val), engine)
        decode = {"draft_size": spec.resize_size, "batch_size": 5, "workers": 0,
                  "skip_bad": False}
        out[engine], ok, _ = features.compute(run, splits.val, [eval_transform(spec)] * 2,
                                           decode, "test", disable=True)
        assert ok.all()
    assert out["torch"].shape == out["onnxruntime"].shape
    assert out["torch"].shape[:2] == (len(splits.val), 2)
    assert out["torch"].ndim == (5 if cut == "mid-trunk" else 3)
    torch.testing.assert_close(out["onnxruntime"].float(), out["torch"].float(),
                               atol=0.02, rtol=0.01)
    assert out["torch"].float().abs().amax() > 1.0   # real activations, not zeros


def test_engine_is_picked_by_the_amount_of_work():
    model, _ = create_model("mobilenet_v3_small", 2, weights="none")
    small = features.FrozenPart(model, 10, 64, n_images=2000)
    big = features.FrozenPart(model, 10, 224, n_images=2000)
    assert (small.engine, big.engine) == ("torch", "onnxruntime")


VIEWS = """import sys, torch
from edgetl.training.config import TrainConfig
from edgetl.training.data import discover
from edgetl.training.images import loader
from edgetl.training.transforms import train_transform
from edgetl.models import create_model
_, spec = create_model("efficientnet_lite0", 2, weights="none")
spec = spec.with_size(32)
batches = loader(discover(sys.argv[1], 0).train, train_transform(spec, TrainConfig()),
                 spec.resize_size, 5, int(sys.argv[2]), shuffle_seed=int(sys.argv[3]))
views = {int(i): x for xs, _, idx in batches for i, x in zip(idx, xs)}
torch.save([batches.num_workers, torch.stack([views[i] for i in sorted(views)])], sys.argv[4])
"""


def test_augmented_views_are_the_same_in_any_process_and_any_number_of_decoders(
        image_folder, tmp_path):
    """Each sample's random crop, flip and jitter draw from (seed, sample): decoded in 2 forked
    workers in a fresh process, or here (as after an export has loaded JAX, when edgetl
    decodes in-process), the training views are the same; another seed gives other views."""
    import subprocess
    import sys
    script = tmp_path / "views.py"
    script.write_text(VIEWS)
    got = {}
    for workers, seed in ((2, 7), (0, 7), (0, 8)):
        out = tmp_path / f"{workers}-{seed}.pt"
        subprocess.run([sys.executable, str(script), str(image_folder), str(workers), str(seed),
                        str(out)], check=True, capture_output=True, timeout=300)
        got[workers, seed] = torch.load(out)
    assert got[2, 7][0] == 2 and got[0, 7][0] == 0            # forked decoders, then none
    assert torch.equal(got[2, 7][1], got[0, 7][1])
    assert not torch.equal(got[0, 7][1], got[0, 8][1])


def test_the_cache_decodes_each_image_once_for_the_same_views(image_folder, monkeypatch):
    """The cache pass decodes an image once for all its views; view v is the tensor the
    one-view loader makes with seed*1000 + v (the views a run cached before), the decoder ran
    once per image, and the global RNG (dropout's, in the epochs after) is not drawn from."""
    from edgetl.training import images
    from edgetl.training.config import TrainConfig
    from edgetl.training.transforms import train_transform
    samples = discover(image_folder, 0).train
    _, spec = create_model("efficientnet_lite0", 2, weights="none")
    spec = spec.with_size(32)
    transforms = [eval_transform(spec)] + [train_transform(spec, TrainConfig())] * 2
    seeds = [3000 + v for v in range(3)]
    one_view = [torch.cat([x for x, _, _ in images.loader(samples, t, spec.resize_size, 4,
                                                            shuffle_seed=s,
                                                            sampler=range(len(samples)))])
                for t, s in zip(transforms, seeds)]
    real, decoded = images.open_rgb, []
    monkeypatch.setattr(images, "open_rgb", lambda path, size: decoded.append(path) or
                        real(path, size))
    global_rng = torch.get_rng_state()
    views = torch.cat([x for x, _, _ in images.views_loader(samples, transforms, seeds,
                                                            spec.resize_size, 4)])
    assert len(decoded) == len(samples) and views.shape[1] == 3
    assert torch.equal(torch.get_rng_state(), global_rng)    # dropout's draws stay as they were
    for v in range(3):
        assert torch.equal(views[:, v], one_view[v]), v
    assert not torch.equal(views[:, 1], views[:, 2])        # another seed, another view


def test_a_whole_model_in_onnxruntime_reads_channels_last_batches_as_torch_does():
    """QAT feeds its float teacher channels-last batches; onnxruntime reads NCHW."""
    model, _ = create_model("efficientnet_lite0", 3)
    model.eval()
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    run = features.FrozenPart(None, None, 64, 4, "onnxruntime", module=model)
    with torch.no_grad():
        expected = model(x)
    got = run(x)
    assert (got[0] - got[1]).abs().amax() > 1e-3          # logits that depend on the image
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
