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
def test_the_gpu_settings_train_save_load_and_sample_at_their_size(tmp_path):
    """8.2-s log-mel clips and the seed's DiT with the overlapping head, through training
    (2 steps of batch 4, fp16 with loss scaling as on Colab's T4), the checkpoint, DDIM
    sampling and Griffin-Lim: everything at the gpu size, 1 x 128 x 1024."""
    run = notebook_settings("gpu").replace(
        data=dict(max_songs=2, max_clips_per_song=4, held_out=0),
        train=dict(steps=2, batch_size=4, log_every=1, checkpoint_every=2, out_dir=str(tmp_path), precision="fp16",
                   progress=False))
    ds = load_data(run, keep_audio=False)
    assert tuple(spectrograms(ds).shape[1:]) == run.spectrogram.shape == (1, 128, 1024)
    assert run.spectrogram.clip_seconds > 8 and run.spectrogram.representation == "mel"
    torch.manual_seed(0)
    model = DiT(run.model)
    assert model.config == DiTConfig.preset("seed", head="overlap", in_channels=1, input_size=(128, 1024))
    history = train(model, DDPMSchedule(run.schedule), ds, run).history
    assert history.step == [1, 2] and history.skipped_steps == 0

    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.step == 2 and ckpt.run == run and ckpt.model.config == model.config
    x = sample(ckpt.ema, ckpt.schedule, 1, steps=3, generator=torch.Generator().manual_seed(0), precision="fp16")
    assert x.shape == (1, 1, 128, 1024) and x.isfinite().all()
    wave = to_waveform(x, ckpt.spectrogram)
    assert wave.shape == (1, ckpt.spectrogram.clip_samples) and wave.isfinite().all()
