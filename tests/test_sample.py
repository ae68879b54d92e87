import pytest
import soundfile as sf
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, SpectrogramConfig, sample, save_audio

from conftest import assert_close_for_its_size, dpm_solver_oracle, randomize


def model_and_schedule(cond_dim=0, prediction_type="sample"):
    config = DiTConfig.preset("tiny", input_size=(32, 16), cond_dim=cond_dim, prediction_type=prediction_type)
    return randomize(DiT(config)).eval(), DDPMSchedule()


def test_samplers_shapes_and_determinism():
    model, schedule = model_and_schedule()
    for sampler, steps in (("ddim", 10), ("ddpm", 20), ("ddpm", None), ("dpm++", 10)):
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


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
def test_dpm_solver_sampler_follows_diffusers(prediction_type):
    model, schedule = model_and_schedule(prediction_type=prediction_type)
    _, trajectory = sample(model, schedule, 2, steps=8, sampler="dpm++", return_trajectory=True,
                           generator=torch.Generator().manual_seed(0))
    theirs = dpm_solver_oracle("linear", prediction_type, "trailing", 8)
    for i, t in enumerate(trajectory.timesteps):
        x = trajectory.x_t[i]
        with torch.no_grad():
            expected = theirs.step(model(x, t), t, x).prev_sample
        assert_close_for_its_size(trajectory.x_t[i + 1], expected, t)


def test_dpm_solver_with_guidance():
    model, schedule = model_and_schedule(cond_dim=4)
    cond = torch.tensor([0.0, 1.0, 0.0, 1.0])
    guided, again, plain = (sample(model, schedule, 2, steps=8, sampler="dpm++", cond=cond, guidance_scale=scale,
                                   generator=torch.Generator().manual_seed(0)) for scale in (4.0, 4.0, 1.0))
    assert guided.shape == (2, 2, 32, 16) and torch.isfinite(guided).all() and torch.equal(guided, again)
    assert not torch.allclose(guided, plain, atol=1e-3)


class ClipModel(torch.nn.Module):
    """A model that knows the answer: its output always implies x0 = clip."""

    def __init__(self, clip, schedule, prediction_type):
        super().__init__()
        self.config = DiTConfig.preset("tiny", input_size=tuple(clip.shape[1:]), prediction_type=prediction_type)
        self.clip, self.schedule = clip, schedule
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, cond=None, drop=None):
        eps = self.schedule.predict_epsilon(self.clip, x, t)
        return self.schedule.training_target(self.clip.expand_as(x), eps, t, self.config.prediction_type)


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
def test_dpm_solver_lands_on_an_exactly_predicted_clip(prediction_type):
    schedule = DDPMSchedule()
    clip = torch.randn(2, 32, 16, generator=torch.Generator().manual_seed(1))
    x, trajectory = sample(ClipModel(clip, schedule, prediction_type), schedule, 3, steps=4, sampler="dpm++",
                           return_trajectory=True, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(x, clip.expand_as(x), atol=1e-4)
    # and every step stays on the forward process's path from that clip: x_t = alpha_t clip + sigma_t eps
    eps = schedule.predict_epsilon(clip, trajectory.x_t[0], trajectory.timesteps[0])
    for x_t, t in zip(trajectory.x_t[1:-1], trajectory.timesteps[1:]):
        assert torch.allclose(x_t, schedule.add_noise(clip.expand_as(x_t), eps, t), atol=1e-4)


def test_save_audio_writes_playable_wavs(tmp_path, demo_clips):
    cfg = SpectrogramConfig.preset("small", frames=64)
    paths = save_audio(demo_clips[:2], cfg, tmp_path, prefix="clip")
    assert [p.name for p in paths] == ["clip_000.wav", "clip_001.wav"]
    audio, rate = sf.read(paths[0])
    assert rate == 16000 and len(audio) == cfg.clip_samples and 0 < abs(audio).max() <= 1
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind
