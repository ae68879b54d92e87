"""The DDPM noise schedule (Ho et al. 2020), forward noising, and the DDPM,
DDIM (Song et al. 2021) and DPM-Solver++(2M) (Lu et al. 2022) reverse steps.

Notation, as in the notebooks: ``betas`` = beta_t, ``alphas_cumprod`` =
abar_t = prod_{s<=t} (1 - beta_s), timesteps t = 0 .. T-1 (0-based, as in
diffusers). The forward process is

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps,   eps ~ N(0, I).

A network can be trained to output x_0 (``"sample"``, the seed's choice),
eps (``"epsilon"``) or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
(``"v_prediction"``); ``predict_x0`` turns any of them into x_0. Timestep
``-1`` stands for "clean": abar_{-1} = 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

PREDICTION_TYPES = ("sample", "epsilon", "v_prediction")
BETA_SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm", "dpm++")  # the reverse steps below: ddim_step, ddpm_step, dpm_solver_step


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float32)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): abar(t) = cos^2((t/T + s) / (1 + s) * pi/2)."""
    def abar(t):
        return math.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - abar(i + 1) / abar(i), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float32)


def _check_prediction_type(prediction_type: str):
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type={prediction_type!r}: use one of {PREDICTION_TYPES}")


@dataclass(frozen=True)
class ScheduleConfig:
    """T timesteps and how beta_t grows over them (``"cosine"``: Nichol & Dhariwal 2021)."""

    num_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule={self.beta_schedule!r}: use one of {BETA_SCHEDULES}")
        if self.num_timesteps < 2:
            raise ValueError(f"num_timesteps={self.num_timesteps}: use at least 2")


class DDPMSchedule:
    """Betas, cumulative alphas, and the maths that uses them. Built from a
    ``ScheduleConfig`` or its fields: ``DDPMSchedule(beta_schedule="cosine")``."""

    def __init__(self, config: ScheduleConfig = ScheduleConfig(), **fields):
        self.config = config = replace(config, **fields)
        if config.beta_schedule == "linear":
            betas = linear_betas(config.num_timesteps, config.beta_start, config.beta_end)
        else:
            betas = cosine_betas(config.num_timesteps)
        self.num_timesteps = config.num_timesteps
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        # abar_t for t = -1 .. T-1, so that t = -1 ("clean") indexes 1.0; the host
        # copy stays on the CPU for lookups of an int t (see abar)
        self._abar = self._abar_host = torch.cat([torch.ones(1), self.alphas_cumprod])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())
        return f"DDPMSchedule({args})"

    def to(self, device) -> "DDPMSchedule":
        """Keep the tables on ``device`` so lookups need no host transfer."""
        self.betas, self.alphas_cumprod, self._abar = (
            v.to(device) for v in (self.betas, self.alphas_cumprod, self._abar))
        return self

    def abar(self, t, like: torch.Tensor) -> torch.Tensor:
        """abar_t shaped to broadcast against ``like`` ([B] per-sample t, or a scalar).
        For an int t (a sampler's step) it is a 0-dim host tensor, which PyTorch
        uses as a scalar on any device: no copy to the GPU, no wait for it."""
        if isinstance(t, int):
            return self._abar_host[t + 1]
        t = torch.as_tensor(t, device=self._abar.device)
        return _broadcast(self._abar[t + 1].to(like.device), like)

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) for every t."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)

    def min_snr_weight(self, t, like: torch.Tensor, prediction_type: str = "sample", gamma: float = 5.0):
        """Min-SNR-gamma loss weight (Hang et al. 2023): the loss of every
        target weighted as if it were min(SNR_t, gamma) times the x0 error, so
        that the nearly clean timesteps (huge SNR) no longer dominate training."""
        _check_prediction_type(prediction_type)
        a = self.abar(t, like)
        snr = a / (1 - a)
        clipped = snr.clamp(max=gamma)
        # the x0 error of an eps (v) prediction is 1/SNR (1/(SNR+1)) times its own
        return clipped / {"sample": 1.0, "epsilon": snr, "v_prediction": snr + 1}[prediction_type]

    # -- forward process ----------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        a = self.abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def renoise(self, x_t: torch.Tensor, t, t_later, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw of q(x_{t_later} | x_t), t_later > t: the forward process from
        x_t on, x_t scaled by sqrt(abar_later / abar_t), plus noise of the variance
        that is missing (RePaint's jump back up the path)."""
        ratio = self.abar(t_later, x_t) / self.abar(t, x_t)
        return ratio.sqrt() * x_t + (1 - ratio).sqrt() * _noise_like(x_t, generator)

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t, prediction_type: str = "sample"):
        """What a network of ``prediction_type`` should output for (x0, noise, t)."""
        _check_prediction_type(prediction_type)
        if prediction_type == "sample":
            return x0
        if prediction_type == "epsilon":
            return noise
        a = self.abar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    # -- from a network's output to x0 and eps -------------------------------
    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t, prediction_type: str = "sample"):
        _check_prediction_type(prediction_type)
        if prediction_type == "sample":
            return model_output
        a = self.abar(t, x_t)
        if prediction_type == "epsilon":
            return (x_t - (1 - a).sqrt() * model_output) / a.sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * model_output

    def predict_epsilon(self, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The noise implied by x_t and a prediction of x0."""
        a = self.abar(t, x_t)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    # -- reverse steps ---------------------------------------------------------
    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t, t_prev=None):
        """Mean and variance of q(x_{t_prev} | x_t, x0); t_prev defaults to t - 1.
        With t_prev < t - 1 this is the respaced DDPM posterior."""
        t_prev = _minus_one(t) if t_prev is None else t_prev
        a_t, a_prev = self.abar(t, x_t), self.abar(t_prev, x_t)
        beta = 1 - a_t / a_prev
        mean = (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x_t) / (1 - a_t)
        variance = ((1 - a_prev) / (1 - a_t) * beta).clamp_min(1e-20)
        return mean, variance

    # All three reverse steps take (model_output, t, x_t, t_prev, prediction_type), as diffusers' step() does.
    def ddpm_step(self, model_output: torch.Tensor, t, x_t: torch.Tensor, t_prev=None,
                  prediction_type: str = "sample", *, generator: torch.Generator | None = None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """One ancestral step x_t -> x_{t_prev} (default t - 1) with the fixed-small variance."""
        t_prev = _minus_one(t) if t_prev is None else t_prev
        x0 = self.predict_x0(model_output, x_t, t, prediction_type)
        mean, variance = self.posterior(x0, x_t, t, t_prev)
        noisy = torch.as_tensor(t, device=None if isinstance(t, int) else x_t.device) > 0  # t = 0 adds no noise
        if not bool(noisy.any()):
            return mean
        noise = _noise_like(x_t, generator) if noise is None else noise
        return mean + _broadcast(noisy.to(x_t.dtype), x_t) * variance.sqrt() * noise

    def ddim_step(self, model_output: torch.Tensor, t, x_t: torch.Tensor, t_prev,
                  prediction_type: str = "sample", *, eta: float = 0.0,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One DDIM step x_t -> x_{t_prev} (t_prev = -1: straight to x0).
        eta = 0 is deterministic; eta = 1 has DDPM's variance."""
        x0 = self.predict_x0(model_output, x_t, t, prediction_type)
        eps = self.predict_epsilon(x0, x_t, t)
        a_t, a_prev = self.abar(t, x_t), self.abar(t_prev, x_t)
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0:
            noise = _noise_like(x_t, generator) if noise is None else noise
            x_prev = x_prev + sigma * noise
        return x_prev

    def half_log_snr(self, t, like: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t / sigma_t), alpha_t = sqrt(abar_t), sigma_t =
        sqrt(1 - abar_t): DPM-Solver's time variable (+inf at the clean end t = -1)."""
        a = self.abar(t, like)
        return 0.5 * (a.log() - (-a).log1p())

    def dpm_solver_step(self, model_output: torch.Tensor, t, x_t: torch.Tensor, t_prev,
                        prediction_type: str = "sample", *, previous=None) -> torch.Tensor:
        """One step x_t -> x_{t_prev} of DPM-Solver++(2M) (Lu et al. 2022,
        "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
        Models", Algorithm 2), from the model's x0 prediction at t.

        ``previous`` is the (x0 prediction, t) of the step before; without it the
        update is first order, which is DDIM with eta = 0. The step to the clean
        end (t_prev = -1, sigma = 0) is first order too and returns x0, as
        diffusers' DPMSolverMultistepScheduler does with lower_order_final and
        final_sigmas_type="zero".
        """
        x0 = self.predict_x0(model_output, x_t, t, prediction_type)
        a_t, a_prev = self.abar(t, x_t), self.abar(t_prev, x_t)
        lambda_t, lambda_prev = self.half_log_snr(t, x_t), self.half_log_snr(t_prev, x_t)
        h = lambda_prev - lambda_t
        x0_weight = a_prev.sqrt() * -torch.expm1(-h)  # alpha_prev (1 - e^-h)
        x_prev = ((1 - a_prev) / (1 - a_t)).sqrt() * x_t + x0_weight * x0
        if previous is None:
            return x_prev
        x0_before, t_before = previous
        h_before = lambda_t - self.half_log_snr(t_before, x_t)
        correction = torch.where(h.isinf(), 0.0, x0_weight * h / (2 * h_before))  # 0 at the clean end
        return x_prev + correction * (x0 - x0_before)

    def timesteps(self, num_inference_steps: int | None = None, spacing: str = "trailing") -> list[int]:
        """The descending timesteps a sampler visits.

        ``"trailing"`` (default) starts at T-1, where x_T ~ N(0, I) is right
        (Lin et al. 2024); ``"leading"`` is the original DDIM spacing
        (0, k, 2k, ...), which never sees the noisiest step.
        """
        n = num_inference_steps or self.num_timesteps
        if not 1 <= n <= self.num_timesteps:
            raise ValueError(f"num_inference_steps={n}: use 1 .. {self.num_timesteps}")
        if spacing == "trailing":
            steps = torch.arange(self.num_timesteps, 0, -self.num_timesteps / n).round().long() - 1
        elif spacing == "leading":
            steps = (torch.arange(n) * (self.num_timesteps // n)).flip(0)
        else:
            raise ValueError(f"spacing={spacing!r}: use 'trailing' or 'leading'")
        return steps.tolist()


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar stays a scalar; a per-sample [B] vector becomes [B, 1, 1, ...]."""
    return values.view(-1, *([1] * (like.ndim - 1))) if values.ndim == 1 else values


def _minus_one(t):
    return t - 1 if isinstance(t, int) else torch.as_tensor(t) - 1


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
