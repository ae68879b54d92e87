"""Clips bigger than memory: training reads each batch's rows from the
dataset's memory-mapped Arrow cache on disk, in ``DataLoader`` worker
processes a few batches ahead, instead of holding every clip in one tensor.

The batches are the index batches of the in-memory path, in its order (a
pure function of seed and epoch, train.py), so both paths train on the same
data bit for bit and a resumed run continues mid-epoch on either.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .memory import available_host_memory

LOADER_WORKERS = 2  # reading a batch takes a fraction of a step: two processes keep ahead of it
PREFETCH = 2  # batches that each worker reads ahead
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


def clip_arrays(ds) -> list[np.ndarray]:
    """``ds``'s spectrograms as numpy arrays [rows, C, F, T], one per Arrow
    record batch, over the memory-mapped cache itself: no row is read until
    it is indexed."""
    shape = ds.features["spectrogram"].shape
    arrays = []
    for chunk in ds.data.column("spectrogram").chunks:
        values = chunk.storage  # nested lists of fixed lengths, one level per axis
        for _ in shape:
            values = values.flatten()
        arrays.append(values.to_numpy(zero_copy_only=True).reshape(len(chunk), *shape))
    return arrays


class _Rows(Dataset):
    """Item (slot, indices) reads one batch's clips into ``slots[slot]``,
    shared memory that the training process reads them from, and is
    (slot, indices, whether the clips are all finite): checked here, beside
    training, not in it. The slots are made once: new shared memory for
    every batch cost more than reading its rows."""

    def __init__(self, ds, slots: torch.Tensor):
        self.ds, self.slots, self.arrays, self.starts = ds, slots, None, None
        # a selection or shuffle of the cache's rows (ds.select, ds.shuffle) maps indices to them
        self.rows = ds._indices.column(0).to_numpy().astype(np.int64) if ds._indices is not None else None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item: tuple[int, list[int]]):
        if self.arrays is None:  # in the worker: views of a memory map do not travel between processes
            self.arrays = clip_arrays(self.ds)
            self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        slot, indices = item
        rows = self.rows[indices] if self.rows is not None else np.array(indices)
        chunks = np.searchsorted(self.starts, rows, side="right") - 1
        clips = self.slots[slot].numpy()
        np.stack([self.arrays[c][r - self.starts[c]] for c, r in zip(chunks, rows)], out=clips)
        return slot, indices, bool(np.isfinite(clips).all())


def read_batches(ds, batches: Iterable[torch.Tensor], device: torch.device) -> Iterator:
    """(indices, clips on ``device``) of each index batch of ``batches`` (CPU
    tensors, all of one size), read from ``ds`` by ``LOADER_WORKERS``
    processes ahead of training; through pinned memory when ``device`` is a
    GPU."""
    batches = iter(batches)
    first = next(batches)
    # the loader has at most PREFETCH * LOADER_WORKERS batches in flight besides the one it handed out
    # last: with one slot more, no slot is written before its batch has been copied out
    slots = torch.empty(PREFETCH * LOADER_WORKERS + 1, len(first), *ds.features["spectrogram"].shape,
                        dtype=torch.float32)
    slots.share_memory_()
    items = ((n % len(slots), idx.tolist()) for n, idx in enumerate(itertools.chain([first], batches)))
    loader = DataLoader(_Rows(ds, slots), sampler=items, batch_size=None, num_workers=LOADER_WORKERS,
                        prefetch_factor=PREFETCH)
    for slot, indices, finite in loader:
        if not finite:  # the in-memory path checks every clip before training
            raise ValueError(f"the data's clips {indices} contain NaN or inf values: check the audio files they "
                             "were made from")
        clips = slots[slot].pin_memory().to(device, non_blocking=True) if device.type == "cuda" \
            else slots[slot].clone()
        yield torch.tensor(indices), clips
