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


def test_observers_record_the_clipped_range_of_any_layout_and_pass_values_through():
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver
    args = dict(dtype=torch.int8, quant_min=-128, quant_max=127,
                qscheme=torch.per_tensor_symmetric)
    x = torch.tensor([-50.0, 1.0, 3.0, 90.0])
    for cls in (MinMaxObserver, HistogramObserver):
        obs = quantize.observing(cls, (0.0, 6.0))(**args)
        assert torch.equal(obs(x), x)
        assert float(obs.min_val) == 0.0 and float(obs.max_val) == 6.0
    torch.manual_seed(0)
    batch = (torch.randn(4, 5, 6, 7) * 9).contiguous(memory_format=torch.channels_last)
    for clip in (None, (0.0, 6.0), (-1.0, 1.0)):
        ours, plain = quantize.observing(MinMaxObserver, clip)(**args), MinMaxObserver(**args)
        for x in (batch, batch * 2 - 3):
            assert ours(x) is x
            plain(x.clamp(*clip) if clip else x)
        assert (ours.min_val, ours.max_val) == (plain.min_val, plain.max_val)
    assert quantize.observing(HistogramObserver) is HistogramObserver


def test_fake_quantization_without_gradient_gives_atens_values_bit_for_bit():
    from edgetl.quantizing.fake_quant import fake_quantize_values
    torch.manual_seed(0)
    for scale, zp in ((0.05, 0), (6.0 / 127, 0), (0.0123, -7), (0.37, 5), (1e-3, 0)):
        s, z = torch.tensor([scale]), torch.tensor([zp], dtype=torch.int32)
        k = torch.arange(-300, 300, dtype=torch.float32)
        x = torch.cat([torch.randn(200_000) * scale * 200,        # inside and far outside
                       (k + 0.5) * scale, k * scale,              # half-way and grid points
                       torch.nextafter((k + 0.5) * scale, torch.tensor(1e9))])
        x = x.reshape(-1, 4, 5, 5).contiguous(memory_format=torch.channels_last)
        want = torch.fake_quantize_per_tensor_affine(x, s, z, -128, 127)
        assert torch.equal(fake_quantize_values(x, s, z, -128, 127), want), (scale, zp)


def test_qat_graph_frozen_passes_match_aten_and_trained_inputs_keep_their_gradient():
    from edgetl.quantizing import fake_quant
    model = _conv_bn_relu6()
    x = torch.randn(16, 3, 12, 12)
    prepared = quantize.prepare_qat(model, (x[:2],))
    quantize.set_fake_quant(prepared, enabled=False)
    prepared(x)
    quantize.set_fake_quant(prepared, enabled=True)
    quantize.freeze_activation_scales(prepared)
    fqs = [m for m in prepared.modules() if isinstance(m, fake_quant.FakeQuantize)]
    assert fqs and not any(m.is_per_channel for m in fqs)
    with torch.no_grad():
        fast = prepared(x)
        aten = [fake_quant.TorchaoFakeQuantize.forward(m, x) for m in fqs[:1]]
    with fake_quant.atens_kernel(), torch.no_grad():
        assert torch.equal(prepared(x), fast)
    assert torch.equal(fqs[0](x), aten[0])
    xg = (x * 3).requires_grad_()       # the straight-through gradient still flows: 1 inside
    fqs[0](xg * 1.0).sum().backward()    # the int8 range, 0 outside (partly outside here)
    levels = torch.mul(xg.detach(), 1.0 / fqs[0].scale).round()
    inside = (levels >= -128) & (levels <= 127)
    assert not inside.all() and torch.equal(xg.grad, inside.float())


def test_quantize_dequantize_gives_the_converted_graphs_pair_bit_for_bit():
    from torch.ao.quantization.fx import _decomposed  # noqa: F401  (registers the ops)

    from edgetl.quantizing.references import quantize_dequantize
    ops = torch.ops.quantized_decomposed
    torch.manual_seed(0)
    for scale, zp in ((0.05, 0), (6.0 / 127, 0), (0.0123, -7), (0.37, 5), (0.0470588244497776, 0)):
        k = torch.arange(-300, 300, dtype=torch.float32)
        x = torch.cat([torch.randn(200_000) * scale * 200, (k + 0.5) * scale, k * scale,
                       torch.nextafter((k + 0.5) * scale, torch.tensor(1e9))])
        q = ops.quantize_per_tensor(x, scale, zp, -128, 127, torch.int8)
        want = ops.dequantize_per_tensor(q, scale, zp, -128, 127, torch.int8)
        assert torch.equal(quantize_dequantize(x, scale, zp, -128, 127), want), (scale, zp)


def test_the_fast_reference_and_the_report_probe_give_the_int8_graphs_logits_bit_for_bit():
    """The int8 reference the export scores runs each weight's quantize/dequantize once and each
    activation's pair as one pass; the same logits as the converted graph, to the bit, for PTQ
    and QAT graphs, and in the quantization report's probe."""
    from edgetl.quantizing.layers import is_quant, op_name
    from edgetl.quantizing.quant_report import _Probe
    from edgetl.quantizing.references import fast_reference
    model = _conv_bn_relu6()
    x = torch.randn(16, 3, 12, 12)
    for prepare in (quantize.prepare_ptq, quantize.prepare_qat):
        prepared = prepare(model, (x[:2],))
        prepared(x)
        converted = quantize.convert(prepared)
        fast = fast_reference(converted)
        assert not [n for n in fast.graph.nodes if is_quant(n)], prepare.__name__
        assert any(op_name(n.target) == "quantize_dequantize" for n in fast.graph.nodes)
        with torch.no_grad():
            want = converted(x)
            assert torch.equal(fast(x), want), prepare.__name__
            assert torch.equal(_Probe(converted).run(x), want), prepare.__name__
