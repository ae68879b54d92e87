"""The notebooks' runs, by where they run: ``notebook_settings(mode)`` is a ``RunConfig``.

- ``"gpu"``: the seed's workload (22.05 kHz, 2 x 256 x 256 complex
  spectrograms, the seed's 5.39 M-parameter DiT, every clip of the data);
- ``"cpu"``: the main job's defaults (``RunConfig()``): the same pipeline at
  a size that trains in minutes, on log-mel spectrograms (the representation
  that docs/quality.md found to reach music soonest on a CPU);
- ``"quick"``: seconds, for CI and headless runs, chosen by the environment
  variable ``MUSICDIFF_QUICK=1`` (never by editing a notebook): each notebook
  in about a minute on two CPU cores: the cpu run's 1-s clips (a shorter
  clip plays as "0:00"), the DiT on 16 x 16 patches (a quarter of the
  tokens), fewer clips and steps; 06 respaces DDPM to 100 of its 1000
  timesteps; 07 trains on 16 songs, on clips of 1 s at 8 kHz (half the frames).

``notebook_settings(mode, conditioned=True)`` is 07's run: log-magnitude
clips of the "scores" songs, a model conditioned on the text of their labels.

Any setting can be changed with ``RunConfig.replace``, e.g.
``notebook_settings("gpu").replace(data=dict(max_songs=2, max_clips_per_song=4))``:
the tests run the gpu settings on a CPU that way.
"""

from __future__ import annotations

import os
from dataclasses import replace

from .config import DataConfig, RunConfig, SampleConfig, TrainConfig
from .model import DiTConfig
from .processes import pick_device
from .spectrogram import SpectrogramConfig

QUICK_ENV = "MUSICDIFF_QUICK"
MODES = ("gpu", "cpu", "quick")


def _run(mode: str) -> RunConfig:
    if mode == "gpu":
        return RunConfig(SpectrogramConfig.preset("seed"), DiTConfig.preset("seed"),
                         train=TrainConfig(steps=20000, batch_size=64, lr=3e-4, ema_decay=0.999),
                         data=DataConfig(max_clips_per_song=None))
    if mode == "cpu":
        return RunConfig()
    if mode == "quick":
        return RunConfig(SpectrogramConfig.preset("small", representation="mel"),
                         DiTConfig.preset("tiny", patch_size=16),
                         train=TrainConfig(steps=150, batch_size=8, lr=2e-3, ema_decay=0.99),
                         data=DataConfig(max_clips_per_song=4),
                         sample=SampleConfig(steps=10, ddpm_steps=100, quality_clips=16, curve_steps=(5, 25)))
    raise ValueError(f"mode={mode!r}: use one of {MODES}")


def _conditioned(run: RunConfig, mode: str) -> RunConfig:
    """07's run: every "scores" song (their labels name composers, genres and
    instruments; 07 holds clips out for its judge) as log magnitude (a label
    is heard in the spectral envelope), conditioned on the text of the labels."""
    songs, steps = {"gpu": (710, 20000), "cpu": (120, 3000), "quick": (16, 600)}[mode]
    half = dict(frames=run.stft.frames // 2, sample_rate=run.stft.sample_rate // 2) if mode == "quick" else {}
    return run.replace(
        spectrogram=replace(run.stft, representation="magnitude", **half),
        data=dict(source="scores", max_songs=songs, max_clips_per_song=12, held_out=0),
        train=dict(steps=steps, batch_size=max(run.train.batch_size, 16), lr=2e-3, log_every=50,
                   checkpoint_every=steps, out_dir=f"{run.train.out_dir}/07_conditioning", resume=False),
        sample=dict(steps=max(run.sample.steps, 20)),
        conditioning="text")


def notebook_settings(mode: str | None = None, *, source: str = "demo", conditioned: bool = False) -> RunConfig:
    """The run of notebooks 05-06 (07's with ``conditioned``) for ``mode``, by
    default: quick under MUSICDIFF_QUICK=1, else gpu on a CUDA device, else
    cpu; on the songs of ``source`` (see ``load_music_dataset``); checkpoints
    in ``runs/<mode>`` beside the notebook."""
    if mode is None:
        mode = "quick" if os.environ.get(QUICK_ENV) == "1" else ("gpu" if pick_device().type == "cuda" else "cpu")
    run = _run(mode)
    run = run.replace(train=dict(out_dir=f"runs/{mode}"), data=dict(source=source))
    return _conditioned(run, mode) if conditioned else run
