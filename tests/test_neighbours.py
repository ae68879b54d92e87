import pytest
import torch

from musicdiff_nb import to_spectrogram
from musicdiff_nb.neighbours import nearest_clips

from conftest import TEST_SPEC


def test_a_copy_is_found_at_zero_and_excluded_from_itself(demo_clips):
    found = nearest_clips(demo_clips, demo_clips, TEST_SPEC)
    assert found.index.tolist() == list(range(len(demo_clips))) and found.distance.max() < 1e-3
    others = nearest_clips(demo_clips, demo_clips, TEST_SPEC, exclude_self=True)
    assert (others.index != torch.arange(len(demo_clips))).all() and (others.distance > 1).all()


def test_distance_is_the_rms_difference_in_db(demo_music):
    """Half the amplitude is 20 log10(2) = 6.02 dB quieter in every bin."""
    wave = demo_music[0, : TEST_SPEC.clip_samples * 2]
    clips = to_spectrogram(wave.view(2, -1)[:, : TEST_SPEC.clip_samples], TEST_SPEC)
    quieter = to_spectrogram(0.5 * wave[: TEST_SPEC.clip_samples], TEST_SPEC)
    found = nearest_clips(quieter[None], clips, TEST_SPEC, floor_db=-300)
    assert found.index.item() == 0
    assert found.distance.item() == pytest.approx(6.0206, abs=1e-3)


def test_bad_input_is_named(demo_clips):
    with pytest.raises(ValueError, match="same shape"):
        nearest_clips(demo_clips[:, :, :64], demo_clips, TEST_SPEC)
    with pytest.raises(ValueError, match="exclude_self"):
        nearest_clips(demo_clips[:2], demo_clips, TEST_SPEC, exclude_self=True)
