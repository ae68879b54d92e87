"""The quality measure: real music scores near 0, noise near 1, music with
noise added in between, and the score does not hang on the seed."""

from dataclasses import replace

import pytest
import torch

from musicdiff_nb import (
    DDPMSchedule,
    DiT,
    RunConfig,
    load_checkpoint,
    load_data,
    spectrograms,
    to_spectrogram,
    train,
    trained_checkpoint,
)
from musicdiff_nb.quality import block_energy, build_reference, evaluate, frechet_distance, score, silence_ratio
from musicdiff_nb.settings import notebook_settings

from conftest import TEST_SPEC

N = 48


@pytest.fixture(scope="module")
def split_reference():
    """Held-out demo songs: N clips drawn from them to be scored as 'real', and the reference of the rest."""
    reference = build_reference(RunConfig(spectrogram=TEST_SPEC), max_train_clips_per_song=8, judge_steps=150)
    order = torch.randperm(len(reference.real), generator=torch.Generator().manual_seed(0))
    return reference.real[order[:N]], replace(reference, real=reference.real[order[N:]])


def scored(reference, waves, seed=0):
    return score(reference, to_spectrogram(waves, TEST_SPEC), patch_size=8, seed=seed)


def with_noise(waves, share, seed=0):
    noise = torch.randn(waves.shape, generator=torch.Generator().manual_seed(seed))
    return waves + share * waves.pow(2).mean(-1, keepdim=True).sqrt() * noise


def test_frechet_distance_of_gaussians():
    """Two Gaussians with identity covariance and means 2 apart: FD = 4 (up to sampling)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20000, 3, generator=g), torch.randn(20000, 3, generator=g) + torch.tensor([2.0, 0, 0])
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.1)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_ranks_real_above_noisy_music_above_noise(split_reference):
    real, reference = split_reference
    noisy, noise = with_noise(real, 0.5), with_noise(0 * real, 1) + 1e-2 * torch.randn(real.shape)
    results = {name: scored(reference, waves) for name, waves in [("real", real), ("noisy", noisy), ("noise", noise)]}
    for embedding in ("features", "judge"):
        s = {name: r.fd[embedding]["normalised"] for name, r in results.items()}
        assert s["real"] < s["noisy"] < s["noise"], (embedding, s)
        assert abs(s["real"]) < 0.1 and s["noise"] > 0.5, (embedding, s)
    assert results["noisy"].clips["flatness"] > results["real"].clips["flatness"]


@pytest.mark.slow
def test_stable_across_seeds(split_reference):
    """Other halves, other noise: the normalised score of the same clips moves by less than 0.05."""
    real, reference = split_reference
    noisy = with_noise(real, 0.5)
    a, b = scored(reference, noisy, seed=0), scored(reference, noisy, seed=1)
    for embedding in ("features", "judge"):
        assert abs(a.fd[embedding]["normalised"] - b.fd[embedding]["normalised"]) < 0.05, (a.fd, b.fd)


@pytest.mark.slow
def test_the_real_side_is_computed_once_per_n_and_seed(split_reference):
    """A curve of many scores pays for the held-out halves, noise and training clips once."""
    real, reference = split_reference
    fresh = replace(reference)
    assert fresh._calibrations == {}  # a copy does not share the cache
    first, again = scored(fresh, real[:8]), scored(fresh, real[:8])
    assert first.to_dict() == again.to_dict() and list(fresh._calibrations) == [(8, 0, 8)]
    scored(fresh, real[:8], seed=1)
    assert len(fresh._calibrations) == 2


def test_block_energy_sees_patch_squares_and_silence_is_counted():
    smooth = torch.randn(2, 2, 128, 64).cumsum(-1).cumsum(-2) * 1e-3
    squares = smooth + torch.randn(2, 2, 16, 8).repeat_interleave(8, -2).repeat_interleave(8, -1)
    assert (block_energy(squares, TEST_SPEC, 8) > 2 * block_energy(smooth, TEST_SPEC, 8)).all()
    wave = torch.cat([torch.zeros(8000), 0.1 * torch.randn(8000)])[None]
    assert silence_ratio(wave, 16000).item() == pytest.approx(0.5, abs=0.05)


@pytest.mark.slow
def test_the_shipped_model_sounds_better_than_a_quick_one():
    """The checkpoint the package ships (an hour of CPU training) scores
    closer to held-out music than the quick settings' model trained now."""
    path = trained_checkpoint()
    assert path.stat().st_size <= 25e6
    ckpt = load_checkpoint(path)
    assert ckpt.run.data.held_out > 0 and ckpt.spectrogram == notebook_settings("cpu").spectrogram
    reference = build_reference(ckpt.run, max_train_clips_per_song=8, judge_steps=150)
    quick = notebook_settings("quick")
    clips = spectrograms(load_data(ckpt.run, max_clips_per_song=4, keep_audio=False))
    torch.manual_seed(0)
    state = train(DiT(ckpt.model.config), DDPMSchedule(), clips, replace(quick.train, out_dir=None, progress=False))
    scores = {name: evaluate(model, DDPMSchedule(), reference, n=32, steps=20).fd["features"]["normalised"]
              for name, model in [("shipped", ckpt.ema), ("quick", state.ema)]}
    assert scores["shipped"] < scores["quick"], scores
