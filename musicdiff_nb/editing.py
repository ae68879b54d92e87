"""Editing with a trained model: what is known stays, the model fills in the rest.

Each operation is ``sample`` (sample.py) started elsewhere or steered at each step:

- ``sample_known``: a mask says which part of a spectrogram is known; after
  every reverse step the known part is put back at the step's noise level
  (RePaint, Lugmayr et al. 2022), optionally with RePaint's resampling jumps.
  ``inpaint`` regenerates a time span (``time_mask``) or a band (``band_mask``).
- ``continuation``: a piece of any length, window after window, each window
  starting with the end of the one before; ``loop``: a piece whose end
  leads back into its beginning. ``spectrogram.to_waveform`` turns the whole
  piece into audio at once (one Griffin-Lim, or the exact inverse), so the
  joins have no phase seam.
- ``variation``: SDEdit (Meng et al. 2022): a clip noised to strength s and
  denoised; s = 0 is the clip, s = 1 plain sampling.
- ``invert`` and ``interpolate``: DDIM inversion of clips to their noise,
  spherical interpolation between two noises, deterministic decoding.

Spectrograms are [n, C, F, T] (a single [C, F, T] is taken as n = 1), T the
model's window, except for the pieces of ``continuation`` and ``loop``.
"""

from __future__ import annotations

import torch

from .model import DiT
from .sample import guided_output, initial_noise, sample, sampling_timesteps
from .schedule import DDPMSchedule


def _batch(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.ndim == 3 else x


def time_mask(like: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """True on frames ``start:end`` of a spectrogram shaped like ``like``."""
    mask = torch.zeros_like(like, dtype=torch.bool)
    mask[..., start:end] = True
    return mask


def band_mask(like: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """True on frequency bins ``low:high`` of a spectrogram shaped like ``like``."""
    mask = torch.zeros_like(like, dtype=torch.bool)
    mask[..., low:high, :] = True
    return mask


def resampling_path(timesteps: list[int], jump: int = 1, resample: int = 1) -> list[int]:
    """RePaint's schedule over a sampler's ``timesteps``: every ``jump`` steps
    down, go back up ``jump`` steps (one forward-noising jump) and down again,
    ``resample - 1`` times, so the filled-in part has more steps to agree with
    the known part. ``resample=1`` is the path itself."""
    if jump < 1 or resample < 1:
        raise ValueError(f"jump={jump}, resample={resample}: use 1 or more (resample=1: no resampling)")
    path = [timesteps[0]]
    for i in range(1, len(timesteps)):
        path.append(timesteps[i])
        if i % jump == 0:
            for _ in range(resample - 1):
                path += timesteps[i - jump:i + 1]  # up to timesteps[i - jump], then down again
    return path


def sample_known(model: DiT, schedule: DDPMSchedule, known: torch.Tensor, mask: torch.Tensor,
                 steps: int | None = 50, sampler: str = "ddim", generator: torch.Generator | None = None,
                 spacing: str = "trailing", jump: int = 1, resample: int = 1, **sampling) -> torch.Tensor:
    """Sample spectrograms that equal ``known`` where ``mask`` is True.

    The known part is noised with the start's own noise x_T: at timestep t it
    is sqrt(abar_t) known + sqrt(1 - abar_t) x_T, where a deterministic
    sampler's path from x_T would have it, and the sampler's own random draws
    stay untouched: with nothing known this is ``sample`` with the same
    generator, and at the end (t = -1, abar = 1) the known part is exactly
    ``known``. ``jump`` and ``resample``: see ``resampling_path``. Any other
    option (``cond``, ``prompt``, ``guidance_scale``, ``eta``, ...) is
    ``sample``'s."""
    known = _batch(known).to(next(model.parameters()).device)
    mask = torch.broadcast_to(mask.to(known.device), known.shape)
    path = resampling_path(sampling_timesteps(schedule, sampler, steps, spacing), jump, resample)
    noise = initial_noise(known.shape, generator, known.device)

    def put_back_known(x: torch.Tensor, t: int) -> torch.Tensor:
        return torch.where(mask, schedule.add_noise(known, noise, t), x)

    return sample(model, schedule, len(known), sampler=sampler, generator=generator, x_T=put_back_known(noise, path[0]),
                  timesteps=path, after_step=put_back_known, **sampling)


def inpaint(model: DiT, schedule: DDPMSchedule, clip: torch.Tensor, region: torch.Tensor, **sampling) -> torch.Tensor:
    """``clip`` with ``region`` (a boolean mask, e.g. ``time_mask`` or
    ``band_mask``) generated anew to fit around the rest."""
    return sample_known(model, schedule, clip, ~region, **sampling)


def default_overlap(model: DiT) -> int:
    """About half a window: half a window and half a patch, so that each join
    falls inside a patch of the model, away from the patch edges where the
    model's own output changes most from frame to frame (docs/benchmarks.md)."""
    return model.config.input_size[1] // 2 + model.config.patch[1] // 2


def continuation(model: DiT, schedule: DDPMSchedule, frames: int, n: int = 1, overlap: int | None = None,
                 generator: torch.Generator | None = None, start: torch.Tensor | None = None,
                 **sampling) -> torch.Tensor:
    """``n`` pieces [n, C, F, frames] of any length: a first window (``start``,
    or sampled), then windows whose first ``overlap`` frames (about half a
    window by default: ``default_overlap``) are the last ones of the piece so
    far, each adding ``window - overlap`` new frames."""
    window = model.config.input_size[1]
    overlap = default_overlap(model) if overlap is None else overlap
    if not 0 <= overlap < window:
        raise ValueError(f"overlap={overlap}: use 0 <= overlap < {window} (the model's window, in frames)")
    if frames < 1:
        raise ValueError(f"frames={frames}: ask for at least one frame")
    if start is None:  # nothing known: plain sampling (with the options only sample_known takes)
        shape = (n, model.config.in_channels, *model.config.input_size)
        start = sample_known(model, schedule, torch.zeros(shape), torch.zeros(shape, dtype=torch.bool),
                             generator=generator, **sampling)
    piece = _batch(start)
    while piece.shape[-1] < frames:
        known = torch.zeros_like(piece[..., :window])
        known[..., :overlap] = piece[..., piece.shape[-1] - overlap:]
        new = sample_known(model, schedule, known, time_mask(known, 0, overlap), generator=generator, **sampling)
        piece = torch.cat([piece, new[..., overlap:]], dim=-1)
    return piece[..., :frames]


def loop(model: DiT, schedule: DDPMSchedule, frames: int, n: int = 1, overlap: int | None = None,
         generator: torch.Generator | None = None, **sampling) -> torch.Tensor:
    """A piece of ``frames`` frames that loops: played again from its start,
    its end leads into its beginning. A continuation, closed by one last
    window whose first and last quarter are known (the piece's end and its
    beginning) and whose middle half is generated between them."""
    window = model.config.input_size[1]
    bridge, quarter = window - 2 * (window // 4), window // 4
    if frames < window + bridge:
        raise ValueError(f"frames={frames}: a loop needs at least {window + bridge} frames (a window and a bridge)")
    piece = continuation(model, schedule, frames - bridge, n, overlap, generator, **sampling)
    known = torch.cat([piece[..., -quarter:], torch.zeros_like(piece[..., :bridge]), piece[..., :quarter]], dim=-1)
    mask = time_mask(known, 0, quarter) | time_mask(known, window - quarter, window)
    closing = sample_known(model, schedule, known, mask, generator=generator, **sampling)
    return torch.cat([piece, closing[..., quarter:window - quarter]], dim=-1)


def variation(model: DiT, schedule: DDPMSchedule, clip: torch.Tensor, strength: float, steps: int | None = 50,
              sampler: str = "ddim", generator: torch.Generator | None = None, spacing: str = "trailing",
              **sampling) -> torch.Tensor:
    """SDEdit: ``clip`` noised to timestep round(strength * T) - 1, then
    denoised over the sampler's timesteps from there on. ``strength=0``
    returns the clip; ``strength=1`` starts from the noise alone, which is
    plain ``sample`` with the same generator (abar_{T-1} would leave a trace
    of the clip: 0.6 % of it on the linear schedule)."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength={strength}: use a value in [0, 1] (0: the clip itself, 1: a new sample)")
    clip = _batch(clip).to(next(model.parameters()).device)
    start = round(strength * schedule.num_timesteps) - 1
    path = [t for t in sampling_timesteps(schedule, sampler, steps, spacing) if t <= start]
    noise = initial_noise(clip.shape, generator, clip.device)
    x_T = noise if strength == 1 else schedule.add_noise(clip, noise, path[0] if path else -1)
    return sample(model, schedule, len(clip), sampler=sampler, generator=generator, x_T=x_T, timesteps=path,
                  **sampling)


@torch.no_grad()
def invert(model: DiT, schedule: DDPMSchedule, clip: torch.Tensor, steps: int = 50, spacing: str = "trailing",
           cond: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
    """DDIM inversion: the noise x_T from which deterministic DDIM (eta = 0,
    ``steps``) decodes back to about ``clip``. DDIM's path run upwards: the
    clip stands for x at the path's lowest timestep (its noise is
    sqrt(1 - abar) of it: 5 % at 50 of 1000 steps), and each step up uses
    the model's output at the step's start (Song et al. 2021, Sec. 4.3)."""
    x = _batch(clip).to(next(model.parameters()).device).float()
    path = sampling_timesteps(schedule, "ddim", steps, spacing)[::-1]
    was_training = model.training
    model.eval()
    for t, t_next in zip(path, path[1:]):
        x0 = schedule.predict_x0(guided_output(model, x, t, cond, guidance_scale).float(), x, t,
                                 model.config.prediction_type)
        x = schedule.add_noise(x0, schedule.predict_epsilon(x0, x, t), t_next)  # DDIM's update, run upwards
    model.train(was_training)
    return x


def slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (weight 0) to ``b`` (weight 1): it
    keeps the norm a Gaussian noise has, which a straight line would shrink."""
    cos = (a * b).sum() / (a.norm() * b.norm())
    angle = cos.clamp(-1, 1).acos()
    if angle < 1e-4:
        return torch.lerp(a, b, weight)
    return (torch.sin((1 - weight) * angle) * a + torch.sin(weight * angle) * b) / torch.sin(angle)


def interpolate(model: DiT, schedule: DDPMSchedule, noise_a: torch.Tensor, noise_b: torch.Tensor, frames: int = 8,
                steps: int = 50, spacing: str = "trailing", **sampling) -> torch.Tensor:
    """``frames`` spectrograms [frames, C, F, T] decoded by deterministic DDIM
    from the slerp path between two noises [C, F, T] (of ``invert``, or
    drawn): the first and last are the two noises' clips."""
    if frames < 2:
        raise ValueError(f"frames={frames}: an interpolation needs at least 2 (its two ends)")
    noise_a, noise_b = _batch(noise_a)[0], _batch(noise_b)[0]
    path = torch.stack([slerp(noise_a, noise_b, w) for w in torch.linspace(0, 1, frames).tolist()])
    return sample(model, schedule, frames, steps=steps, sampler="ddim", eta=0.0, spacing=spacing, x_T=path,
                  **sampling)


__all__ = ["time_mask", "band_mask", "resampling_path", "sample_known", "inpaint", "default_overlap",
           "continuation", "loop",
           "variation", "invert", "slerp", "interpolate"]
