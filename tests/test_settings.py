from pathlib import Path

import pytest
import torch

from musicdiff_nb import DiT, DiTConfig, SpectrogramConfig
from musicdiff_nb.settings import notebook_settings


def test_quick_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MUSICDIFF_QUICK", "1")
    assert notebook_settings().mode == "quick"
    monkeypatch.setenv("MUSICDIFF_QUICK", "0")
    assert notebook_settings().mode in ("cpu", "gpu")


@pytest.mark.parametrize("mode", ["quick", "cpu", "gpu"])
def test_the_pieces_fit_together(mode):
    settings = notebook_settings(mode)
    model = DiT(settings.model_config())
    spec = settings.training_spectrogram
    assert spec.shape[1:] == settings.spectrogram.shape[1:]  # another representation of the same STFT's clips
    assert model(torch.zeros(1, *spec.shape), 10).shape == (1, *spec.shape)
    train = settings.train_config(steps=7)
    assert (train.steps, train.batch_size, train.lr) == (7, settings.batch_size, settings.lr)
    assert train.checkpoint_path == Path("runs") / mode / "last.pt"
    assert mode in settings.describe() and str(spec.shape) in settings.describe()
    magnitude = settings.model_config(in_channels=1, cond_dim=5)  # another representation, conditioned
    assert (magnitude.in_channels, magnitude.cond_dim, magnitude.input_size) == (1, 5, spec.shape[1:])


def test_gpu_mode_is_the_seeds_workload():
    settings = notebook_settings("gpu")
    assert settings.spectrogram == SpectrogramConfig.preset("seed")
    assert settings.model_config() == DiTConfig.preset("seed")
    assert settings.max_songs is None and settings.max_clips_per_song is None


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="'gpu', 'cpu' or 'quick'"):
        notebook_settings("tpu")


@pytest.mark.parametrize("mode", ["quick", "cpu", "gpu"])
def test_07s_clips_last_at_least_a_second(mode):
    """A shorter clip plays as "0:00" in a notebook's audio player."""
    settings = notebook_settings(mode)
    assert settings.conditioned_spectrogram.clip_seconds >= 1.0
    assert settings.conditioned_spectrogram.representation == "magnitude"
    if mode != "quick":
        assert settings.spectrogram.clip_seconds >= 1.0


def test_quick_mode_respaces_ddpm_and_shortens_07():
    quick, cpu = notebook_settings("quick"), notebook_settings("cpu")
    assert cpu.ddpm_steps is None and 1 < quick.ddpm_steps < 1000  # all T timesteps, or a respaced few
    assert quick.scores_songs < cpu.scores_songs and quick.conditioned_steps < cpu.conditioned_steps
