import soundfile as sf
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, SpectrogramConfig, sample, save_audio

from test_model import randomize


def model_and_schedule(cond_dim=0):
    return randomize(DiT(DiTConfig.preset("tiny", input_size=(32, 16), cond_dim=cond_dim))).eval(), DDPMSchedule()


def test_samplers_shapes_and_determinism():
    model, schedule = model_and_schedule()
    for sampler, steps in (("ddim", 10), ("ddpm", 20), ("ddpm", None)):
        a = sample(model, schedule, 2, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(0))
        b = sample(model, schedule, 2, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(0))
        assert a.shape == (2, 2, 32, 16) and torch.equal(a, b) and torch.isfinite(a).all()


def test_trajectory():
    model, schedule = model_and_schedule()
    x, trajectory = sample(model, schedule, 3, steps=5, return_trajectory=True)
    assert trajectory.timesteps == [999, 799, 599, 399, 199]
    assert trajectory.x_t.shape == (6, 3, 2, 32, 16) and trajectory.x0.shape == (5, 3, 2, 32, 16)
    assert torch.equal(trajectory.x_t[-1], x)
    # the last DDIM step (to t = -1) returns the model's x0 prediction itself
    assert torch.allclose(trajectory.x0[-1], x)


def test_guidance_scale_one_is_plain_conditional_sampling():
    model, schedule = model_and_schedule(cond_dim=4)
    cond = torch.tensor([0.0, 1.0, 0.0, 1.0])
    plain = sample(model, schedule, 2, steps=8, cond=cond, generator=torch.Generator().manual_seed(0))
    scale_one = sample(model, schedule, 2, steps=8, cond=cond, guidance_scale=1.0,
                       generator=torch.Generator().manual_seed(0))
    guided = sample(model, schedule, 2, steps=8, cond=cond, guidance_scale=4.0,
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, scale_one)
    assert not torch.allclose(plain, guided, atol=1e-3)


def test_save_audio_writes_playable_wavs(tmp_path, demo_clips):
    cfg = SpectrogramConfig.preset("small", frames=64)
    paths = save_audio(demo_clips[:2], cfg, tmp_path, prefix="clip")
    assert [p.name for p in paths] == ["clip_000.wav", "clip_001.wav"]
    audio, rate = sf.read(paths[0])
    assert rate == 16000 and len(audio) == cfg.clip_samples and 0 < abs(audio).max() <= 1
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind
