"""DistributedDataParallel under torchrun: gloo on CPU, nccl on GPU; one writer (rank 0)."""
import os

import torch
import torch.distributed as dist


def init() -> tuple:
    """(rank, world_size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def gather_rows(local: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """Reassemble per-rank rows (local[i] belongs at index[i]) into one [total, ...] tensor."""
    if not dist.is_initialized():
        return local
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (local, index))
    out = torch.zeros((total, *local.shape[1:]), dtype=local.dtype)
    for rows, idx in parts:
        out[idx] = rows
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
