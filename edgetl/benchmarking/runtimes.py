"""The runtimes edgetl plans with: the bundle runner's own table (the one that ships), plus the
PyTorch baseline, which only the workstation runs; and whether each is installed here."""
import importlib.util

from ..bundle_runner import RUNTIMES, cuda_devices, runtimes_for

TORCH = "torch"                        # the eager PyTorch baseline row (not a bundle runtime)
NAMES = tuple(RUNTIMES) + (TORCH,)


def for_format(fmt: str) -> tuple:
    """Names of the runtimes that run builds of `fmt`, in order of preference."""
    return runtimes_for(fmt)


def installed(name: str) -> bool:
    if name == TORCH:
        return importlib.util.find_spec("torch") is not None
    rt = RUNTIMES[name]
    if importlib.util.find_spec(rt.package) is None:
        return False
    if rt.provider:
        import onnxruntime
        return rt.provider in onnxruntime.get_available_providers()
    if rt.cuda:                                 # the runner's CUDA buffers: libcudart
        return cuda_devices() > 0
    return True
