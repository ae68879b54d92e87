"""Does a conditioned model do what it is asked? Generate clips for each
label, and measure

- the hit rate: how often the judge (judge.py) finds the requested label;
- the diversity: how different the clips generated for one label are from
  each other (root-mean-square distance of their dB spectrograms).

``guidance_sweep`` measures both over classifier-free guidance scales; scale
0 is the model without its condition (the unconditioned baseline), scale 1
plain conditional sampling.
"""

from __future__ import annotations

import torch

from .judge import LabelJudge
from .model import DiT
from .neighbours import log_magnitude_features, rms_distance_db
from .sample import sample
from .schedule import DDPMSchedule


def samples_per_label(model: DiT, schedule: DDPMSchedule, label_sets, n_per_set: int, guidance_scale: float,
                      steps: int = 20, seed: int = 0) -> tuple[torch.Tensor, list[tuple[str, ...]]]:
    """``n_per_set`` clips for each set of label names (e.g. ``[["piano"], ["bach", "organ"]]``),
    from the same noise at every scale; returns (spectrograms [S * n, C, F, T],
    the requested labels of each clip)."""
    if model.conditioning is None:
        raise ValueError("the model does not record how it is conditioned: build it as DiT(config, conditioning)")
    requested = [tuple(labels) for labels in label_sets for _ in range(n_per_set)]
    cond = model.conditioning.from_labels(requested)
    specs = sample(model, schedule, len(requested), steps=steps, cond=cond, guidance_scale=guidance_scale,
                   generator=torch.Generator().manual_seed(seed))
    return specs.cpu(), requested


def hit_rate(judge: LabelJudge, specs: torch.Tensor, requested) -> float:
    """Share of the requested labels that the judge finds in the clips asked for them."""
    found = judge.found(specs)
    hits = [bool(found[i, judge.label_names.index(label)]) for i, labels in enumerate(requested) for label in labels]
    return sum(hits) / len(hits)


def diversity(specs: torch.Tensor, requested, spectrogram) -> float:
    """Mean RMS distance (dB) between two clips generated for the same labels."""
    db = log_magnitude_features(specs, spectrogram, floor_db=-100.0)
    distances = []
    for label in dict.fromkeys(requested):
        group = db[[i for i, r in enumerate(requested) if r == label]]
        if len(group) > 1:
            pairs = rms_distance_db(group, group)
            distances.append(pairs[torch.triu_indices(len(group), len(group), 1).unbind()])
    return float(torch.cat(distances).mean())


def guidance_sweep(model: DiT, schedule: DDPMSchedule, judge: LabelJudge, scales, label_sets=None,
                   n_per_set: int = 4, steps: int = 20, seed: int = 0) -> list[dict]:
    """Hit rate and diversity at each guidance scale (``label_sets``: by
    default each of the judge's labels alone)."""
    label_sets = label_sets or [[label] for label in judge.label_names]
    rows = []
    for scale in scales:
        specs, requested = samples_per_label(model, schedule, label_sets, n_per_set, scale, steps, seed)
        rows.append({"scale": float(scale), "hit_rate": hit_rate(judge, specs, requested),
                     "diversity": diversity(specs, requested, judge.spectrogram)})
    return rows
