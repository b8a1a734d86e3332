"""Compatibility code for the libraries edgetl builds on, kept here and nowhere else.

torch >= 2.13: `torch.export.export` accepts only an `nn.Module`, but torchao's
`_get_aten_graph_module_for_pattern` (called by torchao's QAT conv-bn fusion and by
litert-torch's PT2E quantizer annotators) still passes it plain pattern functions.
`ensure_pattern_export()` wraps such callables in torchao's own `WrapperModule` before they
reach torch.export, in every module that imported the helper by name. tests/test_compat.py
shows the upstream failure and the fix, so the shim can go once upstream wraps patterns itself.
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
