"""How the benchmarks measure: the machine, interleaved repeats, FLOPs, peak
FLOP/s and peak memory; and the command line they share (the device, the
threads, the named run measured, the JSON file of the figures).

Timings on a shared machine are noisy, so every contender of a benchmark is
run in the same process, round after round in rotating order, and each
contender's median is reported; ratios are taken between medians of the
same rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import time
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from musicdiff_nb.config import RUNS, RunConfig, named_run
from musicdiff_nb.files import atomic_write
from musicdiff_nb.processes import pick_device
from musicdiff_nb.spectrogram import REPRESENTATIONS


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()


def machine(device: torch.device) -> dict:
    """What the figures were measured on, and how busy the machine was."""
    return {"date": datetime.date.today().isoformat(), "device": device_name(device), "cpu": cpu_name(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": round(os.getloadavg()[0], 2)}


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def interleaved(contenders: dict[str, Callable[[], object]], device: torch.device,
                repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each contender: ``warmup`` untimed calls each, then
    ``repeats`` rounds in which every contender runs once, the order rotating
    from round to round so none is always first after a pause."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    names = list(contenders)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            contenders[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """'median (min-max)' in seconds, for the printed report."""
    return f"{median(values):.4g} s ({min(values):.3g}-{max(values):.3g})"


def flops_by_operator(fn: Callable[[], object]) -> dict[str, int]:
    """FLOPs of ``fn`` (forward and backward) per operator, by PyTorch's
    FlopCounterMode. Attention runs through the math backend while counting,
    whose matmuls every device's counter knows: they are the batched ones,
    ``aten.bmm`` (the linear layers fold their batch into ``mm``/``addmm``)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn``: matmuls, convolutions, attention; forward and backward."""
    return sum(flops_by_operator(fn).values())


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> int:
    """PyTorch operators ``fn`` runs, views not counted: in eager mode on a GPU
    each is at least one kernel launch, the cost that bounds small models."""
    with _OpCounter() as counter:
        fn()
    return counter.count


def matmul(device: torch.device, dtype: torch.dtype, size: int | None = None) -> tuple[Callable[[], object], int]:
    """A large square matmul (the device's best case) and its FLOPs: the
    reference that MFU is measured against, timed beside the workload."""
    size = size or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return (lambda: a @ b), 2 * size**3


def reset_peak_memory(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Bytes: the most GPU memory allocated since ``reset_peak_memory``, or on
    a CPU the peak resident memory of this process (the OS keeps one peak
    per process, so it includes everything loaded before)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- the command line every benchmark shares -------------------------------------------------------------------

def parser(description: str) -> argparse.ArgumentParser:
    """A benchmark's command line, with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p


def add_run_arguments(p: argparse.ArgumentParser, run: str | None = "seed", representation: str | None = "complex",
                      representations: tuple[str, ...] = REPRESENTATIONS):
    """``--run``: the named run (``config.RUNS``) whose spectrogram and model
    are measured; ``--representation`` replaces its spectrogram's."""
    p.add_argument("--run", choices=list(RUNS), default=run,
                   help=f"the named run measured (default: {run or 'gpu on a GPU, cpu on a CPU'})")
    own = representation or "the run's own"
    p.add_argument("--representation", choices=representations, default=representation,
                   help=f"the run's spectrogram in this representation (default: {own})")


def chosen_run(args, device: torch.device) -> RunConfig:
    """The run that ``--run`` and ``--representation`` name."""
    run = named_run(args.run or ("gpu" if device.type == "cuda" else "cpu"))
    if args.representation:
        run = run.replace(spectrogram=run.spectrogram.with_representation(args.representation))
    return run


def batch_size(given: int | None, device: torch.device) -> int:
    """The batch a benchmark of one step times: ``given``, else 64 on a GPU, 8 on a CPU."""
    return given or (64 if device.type == "cuda" else 8)


def write_json(path, result: dict):
    with atomic_write(path, "w") as f:
        json.dump(result, f, indent=1, default=str)


def run_benchmark(args, measure_fn: Callable[[torch.device], dict], report: Callable[[dict], str]) -> dict:
    """``measure_fn(device)`` on the device ``args`` name, with its threads;
    its figures printed after the machine they were measured on (and how busy
    it was, before and after), and written to ``args.json``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    before = machine(device)
    result = measure_fn(device)
    result["machine"] = {**before, "load_average_after": machine(device)["load_average"]}
    print(header(result["machine"]))
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return result


def header(machine: dict) -> str:
    return (f"{machine['date']}, device {machine['device']}; CPU {machine['cpu']}, {machine['cores']} cores, "
            f"{machine['threads']} PyTorch threads; torch {machine['torch']}; load average "
            f"{machine['load_average']} -> {machine['load_average_after']}")
