"""Sizes for the notebooks, by where they run.

- ``"gpu"``: the seed's workload (22.05 kHz, 2 x 256 x 256 spectrograms, the
  seed's 5.39 M-parameter DiT, all the data);
- ``"cpu"``: the same pipeline at a size that trains in minutes, on log-mel
  spectrograms (the representation that docs/quality.md found to reach music
  soonest on a CPU; the seed's complex STFT is ``representation="complex"``);
- ``"quick"``: seconds, for CI and headless runs, chosen by the environment
  variable ``MUSICDIFF_QUICK=1`` (never by editing a notebook): each notebook
  in about a minute on two CPU cores: the DiT takes 16 x 16 patches (fewer
  tokens); 06 respaces DDPM to 100 of its 1000 timesteps; 07 trains on 16
  songs, on clips of 1 s at 8 kHz (a shorter clip plays as "0:00").

Any size can be overridden with ``dataclasses.replace``, e.g.
``replace(notebook_settings("gpu"), max_songs=2, max_clips_per_song=4)``:
the tests run the gpu settings on a CPU that way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .data import SPLIT, load_music_dataset
from .model import DiTConfig
from .spectrogram import SpectrogramConfig
from .train import TrainConfig, pick_device

QUICK_ENV = "MUSICDIFF_QUICK"


@dataclass(frozen=True)
class RunSettings:
    mode: str
    device: torch.device
    spectrogram: SpectrogramConfig
    model_preset: str
    max_songs: int | None
    max_clips_per_song: int | None
    train_steps: int
    batch_size: int
    lr: float
    ema_decay: float
    sample_steps: int
    quality_clips: int = 64  # clips generated and scored against held-out music (quality.py)
    curve_steps: tuple[int, ...] = (5, 10, 25, 50)  # sampling steps of 06's quality-against-steps curve
    representation: str = "complex"  # what the model is trained on; cpu: the winner of docs/quality.md
    patch_size: int | None = None  # None: the preset's; quick: larger patches, fewer tokens
    ddpm_steps: int | None = None  # DDPM's timesteps in 06: None walks all T; fewer are respaced (quick)
    scores_songs: int = 710  # 07_conditioning: songs of the "scores" dataset
    conditioned_sample_rate: int | None = None  # 07_conditioning: None keeps spectrogram's
    conditioned_steps: int = 20000  # 07_conditioning: steps of its conditioned run

    def describe(self) -> str:
        spec = self.training_spectrogram
        clips = f"{self.max_clips_per_song} clips per song" if self.max_clips_per_song else "every clip"
        return (f"mode {self.mode!r} on {self.device}: {spec.clip_seconds:.2f} s clips at {spec.sample_rate} Hz "
                f"-> {spec.representation} tensor {spec.shape}, DiT preset {self.model_preset!r}, {clips}, "
                f"{self.train_steps} steps of batch {self.batch_size}")

    @property
    def training_spectrogram(self) -> SpectrogramConfig:
        """What the model sees: the clips of ``spectrogram`` (the STFT of 02-04) in ``representation``."""
        return self.spectrogram.with_representation(self.representation)

    @property
    def conditioned_spectrogram(self) -> SpectrogramConfig:
        """07's clips: ``spectrogram``'s STFT as log magnitude (a label is heard
        in the spectral envelope), at ``conditioned_sample_rate`` when set."""
        rate = self.conditioned_sample_rate or self.spectrogram.sample_rate
        return replace(self.spectrogram, representation="magnitude", sample_rate=rate)

    @property
    def run_dir(self) -> Path:
        """Where the notebooks keep this mode's checkpoint and outputs (relative to the notebook)."""
        return Path("runs") / self.mode

    def load_data(self, source: str = "demo", **options):
        """``load_music_dataset`` at these settings' clip size and count, every song."""
        return load_music_dataset(source, self.spectrogram, max_songs=self.max_songs,
                                  max_clips_per_song=self.max_clips_per_song, **options)

    def load_training_data(self, source: str = "demo", **options):
        """The clips a model trains on: in ``representation``, from the training
        songs only (the songs ``SPLIT`` holds out are kept for scoring it)."""
        return load_music_dataset(source, self.training_spectrogram, subset="train", **SPLIT,
                                  max_songs=self.max_songs, max_clips_per_song=self.max_clips_per_song, **options)

    def model_config(self, **overrides) -> DiTConfig:
        """The DiT preset, sized for the tensors it trains on."""
        spec = self.training_spectrogram
        sized = dict(in_channels=spec.channels, input_size=spec.shape[1:])
        if self.patch_size is not None:
            sized["patch_size"] = self.patch_size
        return DiTConfig.preset(self.model_preset, **{**sized, **overrides})

    def train_config(self, **overrides) -> TrainConfig:
        """Steps, batch, learning rate and EMA of these settings; checkpoints in ``run_dir``."""
        values = dict(steps=self.train_steps, batch_size=self.batch_size, lr=self.lr, ema_decay=self.ema_decay,
                      out_dir=str(self.run_dir))
        return TrainConfig(**{**values, **overrides})


def notebook_settings(mode: str | None = None) -> RunSettings:
    """Settings for ``mode``, by default: quick under MUSICDIFF_QUICK=1, else
    gpu on a CUDA device, else cpu."""
    device = pick_device()
    if mode is None:
        mode = "quick" if os.environ.get(QUICK_ENV) == "1" else ("gpu" if device.type == "cuda" else "cpu")
    if mode == "gpu":
        return RunSettings(mode, device, SpectrogramConfig.preset("seed"), "seed", None, None,
                           train_steps=20000, batch_size=64, lr=3e-4, ema_decay=0.999, sample_steps=50,
                           scores_songs=710, conditioned_steps=20000)
    if mode == "cpu":
        return RunSettings(mode, device, SpectrogramConfig.preset("small"), "tiny", None, 30,
                           train_steps=5000, batch_size=16, lr=1e-3, ema_decay=0.995, sample_steps=50,
                           representation="mel", scores_songs=120, conditioned_steps=3000)
    if mode == "quick":
        return RunSettings(mode, device, SpectrogramConfig.preset("small", frames=64), "tiny", None, 4,
                           train_steps=150, batch_size=8, lr=2e-3, ema_decay=0.99, sample_steps=10,
                           quality_clips=16, curve_steps=(5, 25), representation="mel", patch_size=16,
                           ddpm_steps=100, scores_songs=16, conditioned_sample_rate=8000, conditioned_steps=600)
    raise ValueError(f"mode={mode!r}: use 'gpu', 'cpu' or 'quick'")
