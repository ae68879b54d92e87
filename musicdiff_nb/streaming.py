"""Clips bigger than memory: training reads each batch's rows from the
dataset's memory-mapped Arrow cache on disk, in ``DataLoader`` worker
processes a few batches ahead, instead of holding every clip in one tensor.

The batches are the index batches of the in-memory path, in its order (a
pure function of seed and epoch, train.py), so both paths train on the same
data bit for bit and a resumed run continues mid-epoch on either.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .memory import available_host_memory

LOADER_WORKERS = 2  # reading a batch takes a fraction of a step: two processes keep ahead of it
MEMORY_SHARE = 0.5  # clips held in memory may take this share of the available RAM; the rest is the run's


def clip_bytes(ds) -> int:
    """Bytes of a dataset's spectrograms held as one float32 tensor."""
    return len(ds) * math.prod(ds.features["spectrogram"].shape) * 4


def streams(data, stream: bool | None = None) -> bool:
    """Whether ``train`` reads ``data``'s clips from disk batch by batch.
    ``stream`` decides when given; None streams a dataset whose clips take
    more than ``MEMORY_SHARE`` of the available RAM. Tensors are already in
    memory: they never stream."""
    if isinstance(data, (torch.Tensor, tuple, list)):
        if stream:
            raise ValueError("stream=True reads the clips from a dataset on disk: pass the dataset from "
                             "load_music_dataset, not tensors (they are in memory already), or leave stream=None")
        return False
    import datasets
    if not isinstance(data, datasets.Dataset):
        return False  # training_tensors says what train takes
    if stream is not None:
        return stream
    return clip_bytes(data) > MEMORY_SHARE * available_host_memory()


class _Rows(Dataset):
    """Item ``indices`` (one batch) is (indices, their clips [B, C, F, T],
    whether they are all finite): checked here, beside training, not in it."""

    def __init__(self, ds):
        self.rows = ds.with_format("torch", columns=["spectrogram"])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, indices: list[int]):
        clips = self.rows[indices]["spectrogram"].float()
        return indices, clips, bool(torch.isfinite(clips).all())


def read_batches(ds, batches: Iterable[torch.Tensor], device: torch.device) -> Iterator:
    """(indices, clips on ``device``) of each index batch of ``batches`` (CPU
    tensors), read from ``ds`` by ``LOADER_WORKERS`` processes ahead of
    training, into pinned memory when ``device`` is a GPU."""
    loader = DataLoader(_Rows(ds), sampler=(idx.tolist() for idx in batches), batch_size=None,
                        num_workers=LOADER_WORKERS, pin_memory=device.type == "cuda")
    for indices, clips, finite in loader:
        if not finite:  # the in-memory path checks every clip before training
            raise ValueError(f"the data's clips {indices} contain NaN or inf values: check the audio files they "
                             "were made from")
        yield torch.tensor(indices), clips.to(device, non_blocking=True)
