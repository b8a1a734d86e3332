"""The one int8 scheme: symmetric scales, and ReLU6 outputs sized by what survives the clip."""
import torch

from edgetl.quantizing import quantize


def _conv_bn_relu6():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU6(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    with torch.no_grad():
        model[0].weight.mul_(20)          # pre-activations far outside [0, 6], as in real nets
    return model


def test_relu6_output_scale_fits_the_clip_not_the_pre_activation():
    model = _conv_bn_relu6()
    x = torch.randn(16, 3, 12, 12)
    assert model[:2](x).abs().max() > 30
    prepared = quantize.prepare_ptq(model, (x[:2],))
    prepared(x)
    converted = quantize.convert(prepared)
    params = quantize.quant_params(converted, "reduced")
    scales = [a["scale"] for a in params["activations"]]
    relu6_scale = 6.0 / 127
    # the conv output and the ReLU6 output share one scale: max(clip(x, 0, 6)) / 127.5
    assert sum(abs(s - relu6_scale) < 0.01 * relu6_scale for s in scales) >= 2, scales
    assert all(a["zero_point"] == 0 for a in params["activations"])
    ref = model(x)
    assert (converted(x) - ref).abs().max() < 0.05 * ref.abs().max()


def test_clipped_observer_records_the_clipped_range_and_passes_values_through():
    from torchao.quantization.pt2e import MinMaxObserver
    obs = quantize.clipped(MinMaxObserver, 0.0, 6.0)(dtype=torch.int8, quant_min=-128,
                                                    quant_max=127,
                                                    qscheme=torch.per_tensor_symmetric)
    x = torch.tensor([-50.0, 1.0, 3.0, 90.0])
    assert torch.equal(obs(x), x)
    assert float(obs.min_val) == 0.0 and float(obs.max_val) == 6.0
