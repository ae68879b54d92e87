"""Shared fixtures: real music from the demo set (fetched once into the cache)."""

import pytest
import torch

from musicdiff_nb import SpectrogramConfig, load_music_dataset, spectrograms
from musicdiff_nb.data import decode_audio, demo_folder

# Small enough for fast CPU tests: 128 bins x 64 frames (0.5 s at 16 kHz)
TEST_SPEC = SpectrogramConfig.preset("small", frames=64)


@pytest.fixture(scope="session")
def demo_files():
    return sorted(demo_folder().glob("*.ogg"))


@pytest.fixture(scope="session")
def demo_music(demo_files):
    """20 s of three different demo themes at 22.05 kHz, [3, samples]."""
    waves = [decode_audio(str(path), 22050)[30 * 22050: 50 * 22050] for path in demo_files[:3]]
    return torch.stack(waves)


@pytest.fixture(scope="session")
def demo_clips():
    """Real spectrogram clips [6, 2, 128, 64] (3 clips of 2 songs)."""
    ds = load_music_dataset("demo", TEST_SPEC, max_songs=2, max_clips_per_song=3, keep_audio=False)
    return spectrograms(ds)
