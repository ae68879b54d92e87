from dataclasses import replace
from pathlib import Path

import pytest
import torch

from musicdiff_nb import RUNS, DDPMSchedule, DiT, DiTConfig, RunConfig, SpectrogramConfig
from musicdiff_nb.conditioning import build_conditioning
from musicdiff_nb.settings import notebook_settings


def test_quick_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MUSICDIFF_QUICK", "1")
    assert notebook_settings() == notebook_settings("quick")
    monkeypatch.setenv("MUSICDIFF_QUICK", "0")
    assert notebook_settings() in (notebook_settings("cpu"), notebook_settings("gpu"))


@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("mode", ["quick", "cpu", "gpu"])
def test_the_pieces_fit_together(mode, conditioned):
    run = notebook_settings(mode, conditioned=conditioned)
    assert isinstance(run, RunConfig)
    spec = run.spectrogram
    assert run.stft.representation == "complex" and run.stft.shape[1:] == spec.shape[1:]  # the same clips
    conditioning = build_conditioning(run, ["a", "b"])
    assert (conditioning is not None) == conditioned
    model = DiT(run.model, conditioning)
    cond = torch.zeros(1, model.config.cond_dim) if conditioned else None
    assert model(torch.zeros(1, *spec.shape), 10, cond).shape == (1, *spec.shape)
    assert DDPMSchedule(run.schedule).num_timesteps == run.schedule.num_timesteps
    out = Path("runs") / mode / ("07_conditioning" if conditioned else "")
    assert run.train.checkpoint_path == out / "last.pt"
    assert str(spec.shape) in run.describe()


def test_the_cpu_run_is_the_main_jobs_defaults():
    assert notebook_settings("cpu") == RunConfig().replace(train=dict(out_dir="runs/cpu"))


@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("mode", ["quick", "cpu", "gpu"])
def test_the_notebooks_runs_are_the_named_runs(mode, conditioned):
    """notebook_settings only places a named run: its checkpoints beside the notebook, its songs."""
    run = notebook_settings(mode, source="my_songs", conditioned=conditioned)
    named = RUNS[f"conditioned-{mode}" if conditioned else mode]
    assert run.replace(train=dict(out_dir=None), data=dict(source=named.data.source)) == named
    assert run.data.source == ("scores" if conditioned else "my_songs")


def test_gpu_mode_is_the_cpu_runs_music_eight_times_longer_through_the_seeds_dit():
    run, cpu = notebook_settings("gpu"), notebook_settings("cpu")
    assert run.spectrogram == replace(cpu.spectrogram, frames=8 * cpu.spectrogram.frames)
    assert run.spectrogram.representation == "mel" and run.spectrogram.clip_seconds > 8
    assert run.model == DiTConfig.preset("seed", head="overlap", in_channels=1, input_size=(128, 1024))
    assert run.data.max_songs is None and run.data.max_clips_per_song is None
    assert notebook_settings("gpu").spectrogram != SpectrogramConfig.preset("seed")  # the seed's: --run seed


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode='tpu': use one of"):
        notebook_settings("tpu")


@pytest.mark.parametrize("mode", ["quick", "cpu", "gpu"])
def test_07s_clips_last_at_least_a_second(mode):
    """A shorter clip plays as "0:00" in a notebook's audio player."""
    conditioned = notebook_settings(mode, conditioned=True)
    assert conditioned.spectrogram.clip_seconds >= 1.0
    assert conditioned.spectrogram.representation == "magnitude" and conditioned.conditioning == "text"
    if mode != "quick":
        assert notebook_settings(mode).spectrogram.clip_seconds >= 1.0


def test_quick_mode_respaces_ddpm_and_shortens_07():
    quick, cpu = notebook_settings("quick"), notebook_settings("cpu")
    assert cpu.sample.ddpm_steps is None and 1 < quick.sample.ddpm_steps < 1000  # all T timesteps, or a respaced few
    quick, cpu = notebook_settings("quick", conditioned=True), notebook_settings("cpu", conditioned=True)
    assert quick.data.max_songs < cpu.data.max_songs and quick.train.steps < cpu.train.steps
