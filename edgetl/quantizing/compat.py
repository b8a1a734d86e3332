"""Compatibility code for the libraries edgetl builds on, kept here and nowhere else.

torch >= 2.13: `torch.export.export` accepts only an `nn.Module`, but torchao's
`_get_aten_graph_module_for_pattern` (called by torchao's QAT conv-bn fusion and by
litert-torch's PT2E quantizer annotators) still passes it plain pattern functions.
`ensure_pattern_export()` wraps such callables in torchao's own `WrapperModule` before they
reach torch.export, in every module that imported the helper by name. tests/test_compat.py
shows the upstream failure and the fix, so the shim can go once upstream wraps patterns itself.

litert-torch 0.10: its NCHW->NHWC layout pass knows reflection/replication padding but not zero
padding (`constant_pad_nd`, what TF "SAME" padding of stride-2 convs exports to), so each such PAD
stayed NCHW between two TRANSPOSEs. `ensure_nhwc_zero_pad()` registers the missing rule: a
spatial-only zero pad is rewritten to pad H and W of the NHWC tensor.
"""
import importlib

import torch

PATTERN_USERS = ("torchao.quantization.pt2e.utils", "torchao.quantization.pt2e.qat_utils",
                 "torchao.quantization.pt2e.reference_representation_rewrite",
                 "litert_torch.quantize.pt2e_quantizer_utils")
_NAME = "_get_aten_graph_module_for_pattern"


def _module_wrapping(original):
    from torchao.quantization.pt2e.export_utils import WrapperModule

    def get_aten_graph_module_for_pattern(pattern, example_inputs, is_cuda=False, **kwargs):
        if not isinstance(pattern, torch.nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, example_inputs, is_cuda, **kwargs)

    get_aten_graph_module_for_pattern.edgetl_wrapped = original
    return get_aten_graph_module_for_pattern


def ensure_pattern_export() -> None:
    """Idempotently route pattern functions through WrapperModule for torch.export."""
    utils = importlib.import_module(PATTERN_USERS[0])
    current = getattr(utils, _NAME)
    original = getattr(current, "edgetl_wrapped", current)
    wrapped = current if hasattr(current, "edgetl_wrapped") else _module_wrapping(original)
    for name in PATTERN_USERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, _NAME):
            setattr(module, _NAME, wrapped)


def _pad_is_spatial(node) -> bool:
    pad = node.args[1] if len(node.args) > 1 else []
    return len(pad) <= 4


def _constant_pad_nhwc(x, pad, value=0.0):
    """NCHW pad (w_left, w_right, h_top, h_bottom) applied to an NHWC tensor."""
    pad = list(pad) + [0] * (4 - len(pad))
    return torch.ops.aten.constant_pad_nd(x, [0, 0, *pad[:4]], value)


def ensure_nhwc_zero_pad() -> None:
    """Idempotently teach litert-torch's layout pass to keep zero padding in NHWC."""
    from litert_torch._convert.fx_passes.optimize_layout_transposes_pass import (layout_check,
                                                                                 layout_rewrite)
    op = torch.ops.aten.constant_pad_nd.default
    if op in layout_rewrite.rewriters:
        return

    def checker(node):
        ok = _pad_is_spatial(node) and layout_check.is_4d(node) and \
            layout_check.all_layout_sensitive_inputs_are_4d(node)
        return layout_check.NHWCable(can_be=ok, must_be=False)

    def rewriter(node):
        node.target = _constant_pad_nhwc

    layout_check.layout_sensitive_inputs_getters.register(op)(lambda node: [node.args[0]])
    layout_check.nhwcable_node_checkers.register(op)(checker)
    layout_rewrite.rewriters.register(op)(rewriter)
