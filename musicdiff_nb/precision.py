"""Which floating-point precision the DiT computes in, decided in one place
for training and sampling."""

from __future__ import annotations

from contextlib import nullcontext

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The dtype the forward pass autocasts to, or None for plain fp32.

    ``"auto"``: bf16 on a CUDA GPU of compute capability >= 8.0 (Ampere and
    later compute bf16 natively, and bf16 has fp32's range, so the loss needs
    no scaling); fp16 below 8.0 (Colab's free T4 is 7.5: it only emulates
    bf16, slowly), which training pairs with a ``torch.amp.GradScaler``; fp32
    on a CPU and on Apple's MPS. ``"fp32"``, ``"bf16"`` and ``"fp16"`` are
    taken as given on any device. On a CPU, bf16 pays only for large models on
    CPUs with bf16 matrix units (AMX: the seed preset's step 1.7x faster; the
    tiny CPU run's not at all, docs/benchmarks.md); elsewhere it is emulated, slowly.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: use one of {PRECISIONS}")
    device = torch.device(device)
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The autocast context of ``dtype`` on ``device`` (none for fp32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
