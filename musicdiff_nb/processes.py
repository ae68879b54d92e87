"""Where a run computes: the device, and the processes of a ``torchrun`` launch
(rank, world size, and the few collective operations training needs)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_main_process() -> bool:
    """True unless this is a non-zero rank under torchrun."""
    return int(os.environ.get("RANK", "0")) == 0


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: the GPU of this process under torchrun, else cuda, mps, cpu."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:1, mps, ...") from None
        available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not available.get(device.type, True):
            raise ValueError(f"device {name!r} is not available on this machine: use auto or cpu")
        return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Processes:
    """Rank and world size; starts torch.distributed under torchrun."""

    def __init__(self, device_name: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started_here = self.world > 1 and not dist.is_initialized()
        if self.started_here:
            gpu = torch.cuda.is_available() and device_name in ("auto", "cuda")
            if gpu:
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl" if gpu else "gloo")

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(value)
            value = value / self.world
        return value

    def any(self, flag: bool, device) -> bool:
        """True when ``flag`` holds on any process (so that all stop together)."""
        if self.world == 1:
            return flag
        value = torch.tensor(int(flag), device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value)

    def same_everywhere(self, value: int, device) -> bool:
        if self.world == 1:
            return True
        extremes = torch.tensor([value, -value], device=device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        return int(extremes[0]) == -int(extremes[1])

    def close(self, finished: bool):
        if self.world > 1 and finished:  # after an error the other ranks may never get here
            dist.barrier()
        if self.started_here:
            dist.destroy_process_group()
