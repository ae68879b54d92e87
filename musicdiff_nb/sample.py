"""Generation: noise -> (DDPM, DDIM or DPM-Solver++ reverse steps) -> spectrogram -> waveform."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import soundfile as sf
import torch
from tqdm.auto import tqdm

from .files import atomic_write
from .model import DiT
from .precision import autocast, autocast_dtype
from .schedule import SAMPLERS, DDPMSchedule
from .spectrogram import SpectrogramConfig, to_waveform


class Trajectory(NamedTuple):
    """What a sampler saw: ``timesteps[i]`` is the t of step i, ``x_t[i]`` the
    sample before step i (``x_t[-1]`` is the result) and ``x0[i]`` the
    model's prediction of the clean spectrogram at step i."""

    timesteps: list[int]
    x_t: torch.Tensor   # [steps + 1, n, C, F, T]
    x0: torch.Tensor    # [steps, n, C, F, T]


def guided_output(model: DiT, x: torch.Tensor, t: int, cond: torch.Tensor | None,
                  guidance_scale: float) -> torch.Tensor:
    """The model's output; with a condition and guidance_scale != 1,
    classifier-free guidance: uncond + s * (cond - uncond), on every channel."""
    if cond is None or guidance_scale == 1.0:
        return model(x, t, cond)
    n = x.shape[0]
    drop = torch.arange(2 * n, device=x.device) >= n
    conditional, unconditional = model(torch.cat([x, x]), t, torch.cat([cond, cond]), drop).chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)


@torch.no_grad()
def sample(model: DiT, schedule: DDPMSchedule, n: int = 1, steps: int | None = 50, sampler: str = "ddim",
           eta: float = 0.0, cond: torch.Tensor | None = None, guidance_scale: float = 1.0,
           generator: torch.Generator | None = None, return_trajectory: bool = False,
           spacing: str = "trailing", progress: bool = False, prompt=None, labels=None, precision: str = "auto",
           x_T: torch.Tensor | None = None, timesteps: list[int] | None = None, after_step=None):
    """Draw ``n`` spectrograms [n, C, F, T] from pure noise.

    ``sampler="ddim"`` walks ``steps`` respaced timesteps (eta=0:
    deterministic); ``"dpm++"`` is DPM-Solver++(2M) (Lu et al. 2022), which
    reuses the previous step's x0 prediction for a second-order update, over
    the same timesteps as DDIM (``spacing``, "trailing" by default: diffusers'
    DPMSolverMultistepScheduler with timestep_spacing="trailing", not its
    default "linspace", so that the two samplers differ only in the update);
    ``"ddpm"`` is ancestral sampling, over all T timesteps when ``steps`` is
    None. ``eta`` is DDIM's alone. ``cond`` [n, cond_dim] (or [cond_dim],
    repeated) conditions the model and ``guidance_scale`` sets classifier-free
    guidance, whose output every sampler consumes.
    Instead of ``cond``, ``prompt`` (a text, or one per sample) or ``labels``
    (label names) are turned into it the way the model was trained
    (``model.conditioning``, see conditioning.py).
    ``precision`` picks the forward pass's autocast as in training
    (``autocast_dtype``: bf16 or fp16 on a GPU, fp32 on a CPU).
    With ``return_trajectory`` the result is ``(samples, Trajectory)``.

    The editing operations (editing.py) steer this loop: ``x_T`` is the
    start instead of fresh noise, ``timesteps`` the path instead of
    ``sampling_timesteps``'s (it may start lower, and it may go back up:
    there the forward process noises x again, RePaint's resampling; the
    trajectory's ``x0`` then has an entry per model call only), and
    ``after_step(x, t_prev)`` may change each step's result.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r}: use one of {SAMPLERS}")
    device = next(model.parameters()).device
    config = model.config
    if prompt is not None or labels is not None:
        cond = condition_from(model, prompt, labels)
    if cond is not None:
        cond = cond.to(device).float().expand(n, -1) if cond.ndim == 1 else cond.to(device).float()
    shape = (n, config.in_channels, *config.input_size)
    x = initial_noise(shape, generator, device) if x_T is None else x_T.to(device)
    timesteps = sampling_timesteps(schedule, sampler, steps, spacing) if timesteps is None else timesteps
    dtype = autocast_dtype(device, precision)
    was_training = model.training
    model.eval()
    xs, x0s, previous = [x], [], None
    for i, t in enumerate(tqdm(timesteps, disable=not progress, desc=sampler, unit="step")):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        if t_prev > t:  # back up the path: x_t -> x_{t_prev} by the forward process; the solver starts afresh
            x, previous = schedule.renoise(x, t, t_prev, generator=generator), None
            if return_trajectory:
                xs.append(x)
            continue
        with autocast(device, dtype):
            out = guided_output(model, x, t, cond, guidance_scale).float()
        x0 = schedule.predict_x0(out, x, t, config.prediction_type) if return_trajectory or sampler == "dpm++" else None
        if return_trajectory:
            x0s.append(x0)
        if sampler == "ddim":
            x = schedule.ddim_step(out, t, x, t_prev, config.prediction_type, eta=eta, generator=generator)
        elif sampler == "dpm++":
            x = schedule.dpm_solver_step(out, t, x, t_prev, config.prediction_type, previous=previous)
            previous = (x0, t)
        else:
            x = schedule.ddpm_step(out, t, x, t_prev, config.prediction_type, generator=generator)
        if after_step is not None:
            x = after_step(x, t_prev)
        if return_trajectory:
            xs.append(x)
    model.train(was_training)
    if return_trajectory:
        return x, Trajectory(timesteps, torch.stack(xs).cpu(), torch.stack(x0s).cpu())
    return x


def initial_noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """x_T ~ N(0, I), drawn on the generator's device (so a seed gives the same noise on any device)."""
    return torch.randn(shape, generator=generator, device=generator.device if generator else device).to(device)


def sampling_timesteps(schedule: DDPMSchedule, sampler: str, steps: int | None, spacing: str = "trailing") -> list[int]:
    """The timesteps ``sample`` visits: ``steps`` respaced ones (DDPM and
    DPM-Solver++: all T when ``steps`` is None)."""
    return schedule.timesteps(steps if sampler == "ddim" else (steps or schedule.num_timesteps), spacing)


def condition_from(model: DiT, prompt=None, labels=None) -> torch.Tensor:
    """The condition vector(s) of a prompt or of a list of label names."""
    if model.conditioning is None:
        raise ValueError("this model does not record how it is conditioned (DiT.conditioning is None): "
                         "pass cond= vectors, or train it with a Conditioning (see conditioning.py)")
    if prompt is not None and labels is not None:
        raise ValueError("pass prompt= or labels=, not both")
    conditioning = model.conditioning
    vectors = conditioning.from_prompts(prompt) if prompt is not None else conditioning.from_labels([labels])
    return vectors[0] if len(vectors) == 1 else vectors  # one condition for every sample


def write_wav(path, waveform: torch.Tensor, sample_rate: int) -> Path:
    """Write a mono waveform as 16-bit WAV (atomically), peak-limited to 0.99."""
    wave = waveform.detach().float().cpu()
    peak = wave.abs().max().clamp_min(1e-9)
    wave = wave / peak * 0.99 if peak > 0.99 else wave
    with atomic_write(path) as f:
        sf.write(f, wave.numpy(), sample_rate, format="WAV", subtype="PCM_16")
    return Path(path)


def save_audio(spectrograms: torch.Tensor, cfg: SpectrogramConfig, out_dir, prefix: str = "sample") -> list[Path]:
    """Turn spectrograms [n, C, F, T] into WAV files ``prefix_000.wav``, ..."""
    waves = to_waveform(spectrograms.float().cpu(), cfg)
    return [write_wav(Path(out_dir) / f"{prefix}_{i:03d}.wav", w, cfg.sample_rate) for i, w in enumerate(waves)]
