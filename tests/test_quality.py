"""The quality measure: real music scores near 0, noise near 1, music with
noise added in between, against held-out and training music, on the fixed
features and on the structure in time, and the score does not hang on the seed."""

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
from musicdiff_nb.quality import (
    block_energy,
    build_reference,
    evaluate,
    feature_stft,
    frechet_distance,
    score,
    silence_ratio,
)
from musicdiff_nb.settings import notebook_settings
from musicdiff_nb.spectrogram import SpectrogramConfig
from musicdiff_nb.structure import join_clips, structure_features

from conftest import TEST_SPEC

N = 48
LONG_SPEC = SpectrogramConfig.preset("small", frames=512)  # 4.09 s: long enough for the structure in time


def set_aside(reference, n, seed=0):
    """n held-out and n training clips to be scored as 'real', and the reference of the rest."""
    generator = torch.Generator().manual_seed(seed)
    held_out = torch.randperm(len(reference.real), generator=generator)
    train = torch.randperm(len(reference.train), generator=generator)
    rest = replace(reference, real=reference.real[held_out[n:]], train=reference.train[train[n:]],
                   train_specs=reference.train_specs[train[n:]])
    return reference.real[held_out[:n]], reference.train[train[:n]], rest


@pytest.fixture(scope="module")
def split_reference():
    """Held-out demo songs: N clips drawn from them to be scored as 'real', and the reference of the rest."""
    real, _, rest = set_aside(build_reference(RunConfig(spectrogram=TEST_SPEC), max_train_clips_per_song=16), N)
    return real, rest


def scored(reference, waves, seed=0, spec=TEST_SPEC):
    return score(reference, to_spectrogram(waves, spec), patch_size=8, seed=seed)


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
    s = {name: r.fd["features"]["normalised"] for name, r in results.items()}
    assert s["real"] < s["noisy"] < s["noise"], s
    assert abs(s["real"]) < 0.1 and s["noise"] > 0.5, s
    assert results["noisy"].clips["flatness"] > results["real"].clips["flatness"]
    assert list(results["real"].fd) == ["features"]  # 0.5 s clips: no structure in time, and the report says why
    assert "clips of 0.50 s are too short for the structure-in-time measure" in results["real"].summary()


@pytest.mark.slow
def test_fit_to_the_training_music():
    """Against the training songs' music: their own clips score about 0, other
    songs' clips more, noise about 1; real clips through the representation
    (exact for the complex STFT) score as real ones; every piece is reported."""
    real, train, reference = set_aside(build_reference(RunConfig(spectrogram=TEST_SPEC)), N)
    noise = with_noise(0 * train, 1) + 1e-2 * torch.randn(train.shape)
    s = {name: scored(reference, waves).fd_train["features"] for name, waves in
         [("train", train), ("held_out", real), ("noise", noise)]}
    assert abs(s["train"]["normalised"]) < 0.1 and s["noise"]["normalised"] > 0.5, s
    assert s["train"]["normalised"] < s["held_out"]["normalised"] < s["noise"]["normalised"], s
    assert abs(s["train"]["round_trip_normalised"]) < 0.1 and s["train"]["n"] == N
    assert s["train"]["floor"] < s["train"]["ceiling"]
    summary = scored(reference, train).summary()
    assert "against the training songs' music" in summary and "real clips through the representation" in summary


@pytest.fixture(scope="module")
def long_reference():
    """Real clips of 4.09 s: 24 held-out ones to score, and the reference of the rest."""
    real, _, rest = set_aside(build_reference(RunConfig(spectrogram=LONG_SPEC), max_train_clips_per_song=8), 24)
    return real, rest


@pytest.mark.slow
def test_structure_in_time_is_calibrated(long_reference):
    """On 4-s clips: real music near 0, noise near 1, and a held tone (no
    onset, no change) far from music, on both comparisons."""
    real, reference = long_reference
    tone = 0.1 * torch.sin(torch.arange(real.shape[-1]) * 2 * torch.pi * 440 / 16000).expand_as(real)
    noise = with_noise(0 * real, 1) + 1e-2 * torch.randn(real.shape)
    results = {name: scored(reference, waves, spec=LONG_SPEC)
               for name, waves in [("real", real), ("tone", tone + 1e-3 * torch.randn(real.shape)), ("noise", noise)]}
    s = {name: r.fd["structure"]["normalised"] for name, r in results.items()}
    assert abs(s["real"]) < 0.15 and s["noise"] > 0.5 and s["tone"] > 0.5, s
    assert results["real"].notes == [] and results["noise"].fd_train["structure"]["normalised"] > 0.5


def test_structure_refuses_short_clips_and_joins_them():
    """Under 4 s the structure features refuse, naming the length and what to
    do; joined clips lie end to end in time."""
    with pytest.raises(ValueError, match=r"clips of 1\.02 s are too short .* needs 4 s or more: train on longer"):
        structure_features(feature_stft(torch.randn(2, 16320), 16000), 16000, 256)
    specs = torch.randn(9, 1, 8, 4)
    joined = join_clips(specs, 4)
    assert joined.shape == (2, 1, 8, 16) and torch.equal(joined[1, ..., 4:8], specs[5])
    with pytest.raises(ValueError, match="cannot join 9 clips 10 at a time"):
        join_clips(specs, 10)


@pytest.mark.slow
def test_stable_across_seeds(split_reference):
    """Other halves, other noise: the normalised score of the same clips moves by less than 0.05."""
    real, reference = split_reference
    noisy = with_noise(real, 0.5)
    a, b = scored(reference, noisy, seed=0), scored(reference, noisy, seed=1)
    for fd_a, fd_b in [(a.fd, b.fd), (a.fd_train, b.fd_train)]:
        assert abs(fd_a["features"]["normalised"] - fd_b["features"]["normalised"]) < 0.05, (fd_a, fd_b)


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
    rectangles = smooth + torch.randn(2, 2, 32, 8).repeat_interleave(4, -2).repeat_interleave(8, -1)
    assert (block_energy(rectangles, TEST_SPEC, (4, 8)) > 0.9).all()  # (frequency, time): every border
    assert (block_energy(rectangles, TEST_SPEC, 8) < 0.8).all()  # 8 x 8 sees half the frequency borders
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
    reference = build_reference(ckpt.run, max_train_clips_per_song=8)
    quick = notebook_settings("quick")
    clips = spectrograms(load_data(ckpt.run, max_clips_per_song=4, keep_audio=False))
    torch.manual_seed(0)
    state = train(DiT(ckpt.model.config), DDPMSchedule(), clips, replace(quick.train, out_dir=None, progress=False))
    scores = {name: evaluate(model, DDPMSchedule(), reference, n=32, steps=20).fd["features"]["normalised"]
              for name, model in [("shipped", ckpt.ema), ("quick", state.ema)]}
    assert scores["shipped"] < scores["quick"], scores
    assert scores["shipped"] < 0.3, scores  # the goal docs/quality.md set for 10 CPU minutes (06 shows this score)
