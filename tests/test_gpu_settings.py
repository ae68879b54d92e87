"""The notebooks' "gpu" settings on a CPU, so that Colab is not the first
machine to run their code paths (all but CUDA's kernels)."""


import pytest
import torch

from musicdiff_nb import (
    DDPMSchedule,
    DiT,
    DiTConfig,
    load_checkpoint,
    load_data,
    sample,
    spectrograms,
    to_waveform,
    train,
)
from musicdiff_nb.settings import notebook_settings


@pytest.mark.slow
def test_the_gpu_settings_train_save_load_and_sample_at_the_seeds_size(tmp_path):
    """The seed's spectrogram and preset through training (2 steps of batch 4,
    fp16 with loss scaling as on Colab's T4), the checkpoint, DDIM sampling
    and the inverse STFT: everything at the seed's size, 2 x 256 x 256."""
    run = notebook_settings("gpu").replace(
        data=dict(max_songs=2, max_clips_per_song=4, held_out=0),
        train=dict(steps=2, batch_size=4, log_every=1, checkpoint_every=2, out_dir=str(tmp_path), precision="fp16",
                   progress=False))
    ds = load_data(run, keep_audio=False)
    assert tuple(spectrograms(ds).shape[1:]) == run.spectrogram.shape == (2, 256, 256)
    torch.manual_seed(0)
    model = DiT(run.model)
    assert model.config == DiTConfig.preset("seed")
    history = train(model, DDPMSchedule(run.schedule), ds, run).history
    assert history.step == [1, 2] and history.skipped_steps == 0

    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.step == 2 and ckpt.run == run and ckpt.model.config == model.config
    x = sample(ckpt.ema, ckpt.schedule, 1, steps=3, generator=torch.Generator().manual_seed(0), precision="fp16")
    assert x.shape == (1, 2, 256, 256) and x.isfinite().all()
    wave = to_waveform(x, ckpt.spectrogram)
    assert wave.shape == (1, ckpt.spectrogram.clip_samples) and wave.isfinite().all()
