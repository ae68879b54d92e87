"""Quality per minute of training: every variant trains for the same
wall-clock budget on the training songs of the demo set, then 64 DDIM-50
samples are scored against the held-out songs (quality.py: normalised
Fréchet distance on fixed features and on the judge, flatness, block
energy). The peer of each variant is the baseline, the seed's choices at CPU
size (complex STFT, x0 prediction, plain MSE, linear schedule).

A variant is a set of overrides of the baseline's settings, by part:
``spectrogram`` (SpectrogramConfig fields), ``model`` (``preset`` and
DiTConfig fields), ``schedule`` (DDPMSchedule arguments), ``train``
(TrainConfig fields) and ``data`` (``max_clips_per_song``). Every variant is
a setting of the package, not a fork of its code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import DataConfig, RunConfig, TrainConfig
from ..data import load_data, load_music_dataset, spectrograms
from ..files import atomic_write
from ..model import DiT, DiTConfig
from ..quality import build_reference, evaluate
from ..schedule import DDPMSchedule
from ..spectrogram import SpectrogramConfig, to_spectrogram
from ..train import train

BASELINE = {
    "spectrogram": {"preset": "small"},
    "model": {"preset": "tiny"},
    "schedule": {},
    "train": {"batch_size": 16, "lr": 1e-3, "ema_decay": 0.995},
    "data": {"max_clips_per_song": 30},
}

VARIANTS = {
    "baseline": {},
    "epsilon": {"model": {"prediction_type": "epsilon"}},
    "v": {"model": {"prediction_type": "v_prediction"}},
    "min-snr": {"train": {"loss_weighting": "min_snr"}},
    "v+min-snr": {"model": {"prediction_type": "v_prediction"}, "train": {"loss_weighting": "min_snr"}},
    "cosine": {"schedule": {"beta_schedule": "cosine"}},
    "magnitude": {"spectrogram": {"representation": "magnitude"}},
    "mel": {"spectrogram": {"representation": "mel", "n_fft": 1024}},
    "compression-0.3": {"spectrogram": {"compression": 0.3}},
    "small": {"model": {"preset": "small"}},
    "patch-16": {"model": {"patch_size": 16}},
    "patch-4": {"model": {"patch_size": 4}},
    "lr-3e-3": {"train": {"lr": 3e-3}},
    "lr-3e-4": {"train": {"lr": 3e-4}},
    "batch-32": {"train": {"batch_size": 32}},
    "all-clips": {"data": {"max_clips_per_song": None}},
    "clip-0.5s": {"spectrogram": {"frames": 64}},
    "22kHz": {"spectrogram": {"sample_rate": 22050}},
}


def merged(overrides: dict, base: dict = BASELINE) -> dict:
    """``base`` with ``overrides`` applied part by part."""
    return {part: {**base.get(part, {}), **overrides.get(part, {})} for part in {*base, *overrides}}


def unit_scale(spec: SpectrogramConfig, source: str = "demo") -> SpectrogramConfig:
    """``spec`` with ``scale`` set so the complex representation of the
    source's music has unit standard deviation (a compression exponent other
    than 0.5 changes it)."""
    if spec.representation != "complex":
        return spec
    ds = load_music_dataset(source, spec, subset="train", max_clips_per_song=4)
    waves = ds.with_format("torch", columns=["audio"])[:]["audio"]
    raw = to_spectrogram(waves, SpectrogramConfig(**{**asdict(spec), "scale": 1.0}))
    return SpectrogramConfig(**{**asdict(spec), "scale": round(float(raw.std()), 4)})


def configs(settings: dict) -> tuple[SpectrogramConfig, DiTConfig, DDPMSchedule, dict]:
    spec_fields = dict(settings["spectrogram"])
    spec = SpectrogramConfig.preset(spec_fields.pop("preset"), **spec_fields)
    if "compression" in settings["spectrogram"]:
        spec = unit_scale(spec)
    model_fields = dict(settings["model"])
    model = DiTConfig.preset(model_fields.pop("preset"), **{"in_channels": spec.channels,
                                                           "input_size": spec.shape[1:], **model_fields})
    return spec, model, DDPMSchedule(**settings["schedule"]), settings["data"]


def run_variant(name: str, overrides: dict, minutes: float, out_dir: Path, references: dict, n: int,
                sample_steps: int, seed: int = 0) -> dict:
    settings = merged(overrides)
    spec, model_config, schedule, data = configs(settings)
    run = RunConfig(spec, model_config, schedule.config, data=DataConfig(**data), train=TrainConfig(
        steps=10**9, time_limit=60 * minutes, seed=seed, out_dir=str(out_dir / name), progress=False, log_every=50,
        checkpoint_every=10**6, **settings["train"]))
    ds = load_data(run, keep_audio=False)
    torch.manual_seed(seed)
    model = DiT(run.model)
    state = train(model, schedule, spectrograms(ds), run)
    history = state.history
    key = json.dumps(asdict(spec), sort_keys=True)
    if key not in references:
        references[key] = build_reference(run)
    report = evaluate(state.ema, schedule, references[key], n=n, steps=sample_steps, seed=seed)
    return {"variant": name, "settings": settings, "steps": history.step[-1], "seconds": history.seconds,
            "final_loss": history.loss[-1], "parameters": model.num_parameters(), "clips": len(ds),
            **report.to_dict()}


def run(variants: list[str], minutes: float, out_dir: str, n: int = 64, sample_steps: int = 50,
        json_path: str | None = None) -> dict:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}: use some of {list(VARIANTS)}")
    result = {"benchmark": "quality", "minutes": minutes, "n": n, "sample_steps": sample_steps, "rows": []}
    references = {}
    for name in variants:
        result["rows"].append(run_variant(name, VARIANTS[name], minutes, Path(out_dir), references, n, sample_steps))
        print(row_line(result["rows"][-1]), flush=True)
        if json_path:  # after every variant: a long run interrupted keeps what it measured
            with atomic_write(json_path, "w") as f:
                json.dump(result, f, indent=1, default=str)
    return result


def row_line(row: dict) -> str:
    fd, c = row["fd"], row["clips"]
    return (f"  {row['variant']:16s} {row['steps']:6d} steps  FD features {fd['features']['normalised']:6.3f}  "
            f"judge {fd['judge']['normalised']:6.3f}  flatness {c['flatness']:.3f}  block {c['block_energy']:.3f}  "
            f"silence {c['silence']:.2f}  nearest {c['nearest_db']:5.1f} dB  loss {row['final_loss']:.4f}")


def report(result: dict) -> str:
    lines = [f"quality after {result['minutes']} min of training per variant; {result['n']} DDIM-"
             f"{result['sample_steps']} samples scored against held-out songs (normalised FD: 0 = real, 1 = noise)"]
    lines += [row_line(row) for row in result["rows"]]
    if result["rows"]:
        fd = result["rows"][0]["fd"]
        lines.append(f"  real clips of the training songs: FD features {fd['features']['train_normalised']:.3f}, "
                     f"judge {fd['judge']['train_normalised']:.3f} (a perfect copy of the training data)")
    return "\n".join(lines)
