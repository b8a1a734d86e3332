"""The one compatibility shim: pattern functions reach torch.export wrapped in a Module."""
import subprocess
import sys

import torch
import torch.nn.functional as F

from edgetl.quantizing import compat

UPSTREAM_BREAK = """
import torch, torch.nn.functional as F
from torchao.quantization.pt2e.utils import _get_aten_graph_module_for_pattern
try:
    _get_aten_graph_module_for_pattern(lambda x, w: F.conv2d(x, w),
                                       (torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)))
    print("upstream accepts plain functions")
except ValueError as e:
    print("upstream break:", e)
"""


def test_upstream_still_needs_the_shim():
    """Without edgetl, torch.export rejects the plain pattern functions torchao passes it. When
    this fails, upstream fixed it: delete edgetl/quantizing/compat.py and this test."""
    out = subprocess.run([sys.executable, "-c", UPSTREAM_BREAK], capture_output=True,
                         text=True, timeout=300).stdout
    assert "upstream break:" in out and "nn.Module" in out


def test_shim_exports_plain_patterns_everywhere_they_are_imported():
    compat.ensure_pattern_export()
    compat.ensure_pattern_export()            # idempotent: no double wrapping
    import litert_torch.quantize.pt2e_quantizer_utils as litert_utils
    import torchao.quantization.pt2e.qat_utils as qat_utils
    fn = qat_utils._get_aten_graph_module_for_pattern
    assert litert_utils._get_aten_graph_module_for_pattern is fn
    assert not hasattr(fn.edgetl_wrapped, "edgetl_wrapped")
    gm = fn(lambda x, w: F.conv2d(x, w), (torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.conv2d.default in targets


def test_qat_prepare_of_a_conv_bn_relu6_model_works_with_the_shim():
    """The QAT path that breaks without the shim: conv-bn fusion and litert-torch annotation."""
    from edgetl.quantizing.quantize import prepare_qat
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 2))
    prepared = prepare_qat(model, (torch.randn(2, 3, 16, 16),))
    assert prepared(torch.randn(2, 3, 16, 16)).shape == (2, 2)
    names = " ".join(str(n.target) for n in prepared.graph.nodes)
    assert "activation_post_process" in names or "FakeQuantize" in names or \
        any("activation_post_process" in n.name for n in prepared.graph.nodes)
