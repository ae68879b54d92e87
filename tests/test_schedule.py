"""The schedule's numbers against the published formulas, as implemented by
diffusers' DDPMScheduler / DDIMScheduler / DPMSolverMultistepScheduler (the
numerical oracle)."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from musicdiff_nb import DDPMSchedule

from conftest import ATOL, DIFFUSERS_SCHEDULE, assert_close_for_its_size, dpm_solver_oracle


def oracle(cls, beta_schedule, prediction_type="sample", **kwargs):
    return cls(num_train_timesteps=1000, beta_schedule=DIFFUSERS_SCHEDULE[beta_schedule], beta_start=1e-4,
               beta_end=0.02, clip_sample=False, prediction_type=prediction_type, **kwargs)


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_betas_and_alphas_cumprod(beta_schedule):
    ours, theirs = DDPMSchedule(beta_schedule=beta_schedule), oracle(DDPMScheduler, beta_schedule)
    assert torch.allclose(ours.betas, theirs.betas, atol=ATOL, rtol=0)
    assert torch.allclose(ours.alphas_cumprod, theirs.alphas_cumprod, atol=ATOL, rtol=0)
    if beta_schedule == "cosine":
        assert ours.betas.max() <= 0.999


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_add_noise(beta_schedule):
    ours, theirs = DDPMSchedule(beta_schedule=beta_schedule), oracle(DDPMScheduler, beta_schedule)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 2, 8, 8, generator=g), torch.randn(5, 2, 8, 8, generator=g)
    t = torch.tensor([0, 1, 250, 700, 999])
    assert torch.allclose(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), atol=ATOL)


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_ddpm_step(beta_schedule, prediction_type):
    ours, theirs = DDPMSchedule(beta_schedule=beta_schedule), oracle(DDPMScheduler, beta_schedule, prediction_type)
    g = torch.Generator().manual_seed(1)
    x_t, out = torch.randn(3, 2, 8, 8, generator=g), torch.randn(3, 2, 8, 8, generator=g)
    for t in (999, 500, 10, 1, 0):
        expected = theirs.step(out, t, x_t, generator=torch.Generator().manual_seed(t)).prev_sample
        got = ours.ddpm_step(out, t, x_t, prediction_type=prediction_type, generator=torch.Generator().manual_seed(t))
        assert torch.allclose(got, expected, atol=ATOL), (t, (got - expected).abs().max())


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_ddim_step(beta_schedule, prediction_type, eta, spacing):
    ours = DDPMSchedule(beta_schedule=beta_schedule)
    theirs = oracle(DDIMScheduler, beta_schedule, prediction_type, timestep_spacing=spacing, set_alpha_to_one=True)
    theirs.set_timesteps(50)
    timesteps = ours.timesteps(50, spacing)
    assert timesteps == theirs.timesteps.tolist()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 8, 8, generator=g)
    for i, t in enumerate(timesteps):
        out = torch.randn(2, 2, 8, 8, generator=g) * 0.5 + 0.1 * x
        noise = torch.randn(2, 2, 8, 8, generator=g)
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        expected = theirs.step(out, t, x, eta=eta, variance_noise=noise).prev_sample
        got = ours.ddim_step(out, t, x, t_prev, prediction_type, eta=eta, noise=noise)
        assert torch.allclose(got, expected, atol=ATOL), (t, (got - expected).abs().max())
        x = expected


def gaussian_denoiser(schedule, x, t, prediction_type, generator):
    """A model's output at (x, t) for data x0 ~ N(0, I), where E[x0 | x_t] =
    alpha_t x_t, E[eps | x_t] = sigma_t x_t and E[v | x_t] = 0, off by noise."""
    a = schedule.abar(t, x)
    ideal = {"sample": a.sqrt() * x, "epsilon": (1 - a).sqrt() * x, "v_prediction": torch.zeros_like(x)}
    return ideal[prediction_type] + 0.1 * torch.randn(x.shape, generator=generator)


@pytest.mark.parametrize("spacing, steps", [("trailing", 50), ("trailing", 7), ("leading", 20)])
@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_dpm_solver_step(beta_schedule, prediction_type, spacing, steps):
    ours = DDPMSchedule(beta_schedule=beta_schedule)
    theirs = dpm_solver_oracle(beta_schedule, prediction_type, spacing, steps)
    timesteps = ours.timesteps(steps, spacing)
    g = torch.Generator().manual_seed(4)
    x, previous = torch.randn(2, 2, 8, 8, generator=g), None
    for i, t in enumerate(timesteps):
        out = gaussian_denoiser(ours, x, t, prediction_type, g)
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        expected = theirs.step(out, t, x).prev_sample
        x0 = ours.predict_x0(out, x, t, prediction_type)
        got = ours.dpm_solver_step(out, t, x, t_prev, prediction_type, previous=previous)
        assert_close_for_its_size(got, expected, t)
        x, previous = expected, (x0, t)


def test_dpm_solver_first_step_is_ddim_and_last_returns_x0():
    schedule = DDPMSchedule()
    g = torch.Generator().manual_seed(5)
    x, x0, x0_before = (torch.randn(2, 2, 8, 8, generator=g) for _ in range(3))
    assert torch.allclose(schedule.dpm_solver_step(x0, 500, x, 300), schedule.ddim_step(x0, 500, x, 300), atol=ATOL)
    assert torch.equal(schedule.dpm_solver_step(x0, 100, x, -1, previous=(x0_before, 300)), x0)


def test_dpm_solver_step_per_sample_timesteps():
    schedule = DDPMSchedule()
    g = torch.Generator().manual_seed(6)
    x, x0, x0_before = (torch.randn(3, 2, 8, 8, generator=g) for _ in range(3))
    t, t_prev, t_before = torch.tensor([800, 400, 100]), torch.tensor([600, 250, -1]), torch.tensor([999, 600, 300])
    got = schedule.dpm_solver_step(x0, t, x, t_prev, previous=(x0_before, t_before))
    for i in range(3):
        before = (x0_before[i], int(t_before[i]))
        one = schedule.dpm_solver_step(x0[i], int(t[i]), x[i], int(t_prev[i]), previous=before)
        assert torch.allclose(got[i], one, atol=ATOL)


def test_predictions_invert_the_training_targets():
    schedule = DDPMSchedule()
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(4, 2, 8, 8, generator=g), torch.randn(4, 2, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 998])
    x_t = schedule.add_noise(x0, noise, t)
    for prediction_type in ("sample", "epsilon", "v_prediction"):
        target = schedule.training_target(x0, noise, t, prediction_type)
        assert torch.allclose(schedule.predict_x0(target, x_t, t, prediction_type), x0, atol=1e-3)
    assert torch.allclose(schedule.predict_epsilon(x0, x_t, t), noise, atol=1e-3)


def test_timesteps_and_errors():
    schedule = DDPMSchedule()
    assert schedule.timesteps(4) == [999, 749, 499, 249]
    assert schedule.timesteps() == list(range(999, -1, -1))
    assert schedule.alphas_cumprod[-1] < 1e-4 < schedule.alphas_cumprod[0]  # x_T is almost pure noise
    with pytest.raises(ValueError, match="beta_schedule"):
        DDPMSchedule(beta_schedule="quadratic")
    with pytest.raises(ValueError, match="prediction_type"):
        schedule.predict_x0(torch.zeros(1), torch.zeros(1), 0, "score")
    with pytest.raises(ValueError, match="num_inference_steps"):
        schedule.timesteps(2000)


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
def test_min_snr_weight_is_min_snr_gamma_in_x0_units(prediction_type):
    """Hang et al. 2023: weight min(SNR, gamma) on the x0 error; an eps
    error is SNR times smaller, a v error SNR + 1 times."""
    schedule = DDPMSchedule()
    t = torch.tensor([0, 100, 500, 999])
    snr = schedule.snr()[t]
    per_x0 = torch.minimum(snr, torch.tensor(5.0))
    expected = {"sample": per_x0, "epsilon": per_x0 / snr, "v_prediction": per_x0 / (snr + 1)}[prediction_type]
    got = schedule.min_snr_weight(t, torch.zeros(4, 1, 2, 2), prediction_type, gamma=5.0)
    assert got.shape == (4, 1, 1, 1)
    torch.testing.assert_close(got.flatten(), expected, rtol=1e-5, atol=0)
