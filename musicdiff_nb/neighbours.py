"""Is a generated clip a copy of a training clip? Its nearest training clip,
by the distance between log-magnitude spectrograms.

The distance is the RMS difference of the two STFT magnitudes in dB, floored
at ``floor_db`` so that near-silent bins do not dominate. It ignores phase
(two clips that sound alike can have any phase) and is in units one can
judge: 0 dB is an exact copy. A sample is suspicious when it sits much closer
to a training clip than training clips sit to each other
(``nearest_clips(train, train, cfg, exclude_self=True)``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .spectrogram import SpectrogramConfig, magnitude_db


class Neighbours(NamedTuple):
    index: torch.Tensor     # [Q] the nearest reference clip of each query
    distance: torch.Tensor  # [Q] its distance, dB RMS


def log_magnitude_features(specs: torch.Tensor, cfg: SpectrogramConfig, floor_db: float = -80.0) -> torch.Tensor:
    """Model tensors [N, C, F, T] -> [N, F * T] magnitudes in dB, floored."""
    return magnitude_db(specs.detach().float().cpu(), cfg, floor_db).flatten(1)


def rms_distance_db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Features [A, D] and [B, D] in dB -> their RMS distances [A, B] (dB)."""
    return torch.cdist(a.double(), b.double()) / a.shape[1] ** 0.5


def nearest_clips(queries: torch.Tensor, references: torch.Tensor, cfg: SpectrogramConfig,
                  exclude_self: bool = False, floor_db: float = -80.0) -> Neighbours:
    """For each of ``queries`` [Q, C, F, T], the nearest of ``references``
    [R, C, F, T]. ``exclude_self`` (when the two are the same clips) skips
    each clip's match with itself."""
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(f"queries {tuple(queries.shape[1:])} and references {tuple(references.shape[1:])} "
                         "must be clips of the same shape")
    q = log_magnitude_features(queries, cfg, floor_db)
    r = log_magnitude_features(references, cfg, floor_db)
    distances = rms_distance_db(q, r)
    if exclude_self:
        if len(q) != len(r):
            raise ValueError("exclude_self needs the queries to be the references")
        distances.fill_diagonal_(float("inf"))
    distance, index = distances.min(dim=1)
    return Neighbours(index, distance.float())
