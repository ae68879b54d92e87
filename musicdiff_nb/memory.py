"""How much GPU memory a training run needs, estimated before it starts, so
that a run that cannot fit is refused with what to lower instead of failing
with an out-of-memory error after minutes of loading; and how much host
memory is available to hold the clips."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .model import DiT, DiTConfig

BACKWARD_ALLOWANCE = 1.25  # the backward's transients on top of what the forward saves (calibrated below)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of GPU memory at the peak of a training step."""

    weights: int      # parameters, gradients, AdamW's two moments, the EMA (and autocast's 16-bit copies)
    activations: int  # what the forward keeps for the backward, and the backward's transients
    data: int         # the clip cache, where it is counted
    batch_size: int
    precision: str

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.data

    def __str__(self) -> str:
        data = f", {gib(self.data)} clip cache" if self.data else ""
        return (f"{gib(self.total)} ({gib(self.weights)} weights, gradients, AdamW and EMA, {gib(self.activations)} "
                f"activations of batch {self.batch_size} in {self.precision}{data})")


def activation_bytes_per_sample(config: DiTConfig, dtype: torch.dtype | None = None) -> int:
    """Bytes the forward pass saves for the backward, per sample.

    Per block and token the residual stream and the two LayerNorms keep 4
    vectors of width D in fp32; the linear layers' inputs and outputs (the
    modulated inputs, q, k, v, attention output and its projection, the MLP
    output: 8 of width D) and the MLP's hidden layer (2 of width
    H = mlp_ratio D) are kept in the autocast dtype (fp32 without autocast).
    Outside the blocks, 3 tensors of the tokens' size and 3 of the clip's
    size (x_t, the output, the target) are kept in fp32. Attention (SDPA:
    flash or memory-efficient on a GPU, flash on a CPU) keeps no N x N matrix.
    """
    width = torch.finfo(dtype).bits // 8 if dtype is not None else 4
    D, N = config.hidden_size, config.num_tokens
    H = int(D * config.mlp_ratio)
    clip = config.in_channels * config.input_size[0] * config.input_size[1]
    per_block = N * (4 * 4 * D + width * (8 * D + 2 * H))
    return config.depth * per_block + 4 * (3 * N * D + 3 * clip)


def estimate_training_memory(model: DiT | DiTConfig, batch_size: int, dtype: torch.dtype | None = None,
                             data_bytes: int = 0) -> MemoryEstimate:
    """The peak GPU memory of training ``model`` (a DiT, or its config) at
    ``batch_size`` (per process) with autocast to ``dtype`` (None: fp32), plus
    ``data_bytes`` of clips kept on the GPU.

    Weights: 20 bytes per parameter (fp32 weights, gradients, AdamW's two
    moments, the EMA copy), 2 more under autocast (the 16-bit weight copies
    it caches during the forward). Activations: ``activation_bytes_per_sample``
    x batch x ``BACKWARD_ALLOWANCE``.

    Calibrated on a CPU (torch 2.14, 1 thread): the bytes saved for the
    backward (``torch.autograd.graph.saved_tensors_hooks``, each storage
    once, parameters excluded) are within 5 % of ``activation_bytes_per_sample``
    for the tiny, small and seed presets and seed variants twice as wide,
    twice as deep or with 8 x 8 patches, in fp32 and in bf16/fp16 autocast.
    The peak of the profiler's memory timeline over whole steps (forward,
    backward, clipping, fused AdamW, EMA; seed preset, batch 1 to 8) was
    20 P (fp32) / 22 P (autocast) bytes plus 26.0 / 18.0 MB per sample, which
    is 1.11x / 1.23x the saved bytes: hence the allowance of 1.25. Not yet
    checked on a GPU: its kernels save the same tensors, but CUDA's caching
    allocator reserves somewhat more than it hands out.
    """
    if isinstance(model, DiTConfig):
        with torch.device("meta"):  # counts the parameters without allocating them
            model = DiT(model)
    weights = model.num_parameters() * (20 if dtype is None else 22)
    activations = round(batch_size * activation_bytes_per_sample(model.config, dtype) * BACKWARD_ALLOWANCE)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return MemoryEstimate(weights, activations, data_bytes, batch_size, precision)


def check_fits(estimate: MemoryEstimate, device: torch.device) -> int:
    """The bytes of ``device`` (a CUDA GPU) still free once ``estimate`` is
    set aside; a run that will not fit is refused with what to lower."""
    free, total = torch.cuda.mem_get_info(device)
    if estimate.total > free:
        hint = ", or train in bf16/fp16 (precision='auto')" if estimate.precision == "fp32" else ""
        raise ValueError(f"training will not fit on {device}: it needs about {estimate}, and {gib(free)} of "
                         f"{gib(total)} is free. Lower batch_size (now {estimate.batch_size} per process), the clip "
                         f"size (the spectrogram's frames or n_fft) or the model preset{hint}; or free the GPU's "
                         "memory (other processes, other notebooks: nvidia-smi)")
    return free - estimate.total


def available_host_memory() -> int:
    """Bytes of RAM that new allocations can take without swapping (what the
    OS counts as available: free memory and reclaimable caches)."""
    try:
        import psutil
        return psutil.virtual_memory().available
    except ImportError:  # psutil is not a dependency; without it, count only the free pages
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
