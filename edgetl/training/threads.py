"""PyTorch's thread count: the one asked for, else torch's default capped at the CPUs this
process may use. torch sizes its pool from the CPUs it can see; in a container with a CPU
quota (--cpus 2 on a 32-core host) that is 32 threads taking turns on 2 CPUs' worth of time."""
import torch

from .. import bundle_runner


def set_threads(threads: int = 0) -> int:
    """Set and return PyTorch's intra-op threads: `threads`, else min(torch's default, the
    CPUs the affinity and quota allow)."""
    torch.set_num_threads(threads or min(torch.get_num_threads(), len(bundle_runner.usable_cpus())))
    return torch.get_num_threads()
