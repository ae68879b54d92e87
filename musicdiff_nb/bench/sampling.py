"""Sampling: DDIM at 25, 50 and 100 steps against DDPM over all 1000
timesteps, from the same trained model. Wall time per clip (noise ->
spectrogram), and how close each sampler's output statistics come to
DDPM's: the mean and spread of the magnitude (dB) in each frequency bin,
over all clips and frames. A second DDPM run from other noise gives the
distance that sampling noise alone produces, and the training clips the
distance to the data."""

from __future__ import annotations

import torch

from ..model import DiT, DiTConfig
from ..sample import sample
from ..schedule import DDPMSchedule
from ..spectrogram import SpectrogramConfig, magnitude_db
from ..train import TrainConfig, load_checkpoint, train
from . import measure


def demo_model(config: DiTConfig, spec: SpectrogramConfig, device: torch.device, steps: int, timesteps: int,
               max_clips_per_song: int | None):
    """A DiT trained for ``steps`` on the demo set (EMA weights), its
    schedule and its training clips."""
    from ..data import load_music_dataset, spectrograms

    clips = spectrograms(load_music_dataset("demo", spec, max_clips_per_song=max_clips_per_song, keep_audio=False))
    torch.manual_seed(0)
    model = DiT(config)
    schedule = DDPMSchedule(num_timesteps=timesteps)
    cfg = TrainConfig(steps=steps, batch_size=min(16, len(clips)), lr=1e-3, ema_decay=0.995,
                      log_every=steps, checkpoint_every=steps, device=str(device), progress=False)
    history = train(model, schedule, clips, cfg)
    return history.ema, schedule, clips


def spectral_statistics(specs: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """[2, F]: mean and standard deviation of the magnitude in dB per bin."""
    magnitude = magnitude_db(specs.float().cpu(), cfg, floor_db=-80.0).transpose(0, 1).flatten(1)
    return torch.stack([magnitude.mean(dim=1), magnitude.std(dim=1)])


def distance_db(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean absolute difference of the per-bin mean and spread, in dB."""
    return {"mean_db": float((a[0] - b[0]).abs().mean()), "std_db": float((a[1] - b[1]).abs().mean())}


def run(device: torch.device, config: DiTConfig, spec: SpectrogramConfig, checkpoint: str | None = None,
        clips: int = 16, ddim_steps: tuple[int, ...] = (25, 50, 100), train_steps: int = 400,
        timesteps: int = 1000, max_clips_per_song: int | None = 30, repeats: int = 3) -> dict:
    if checkpoint:
        ckpt = load_checkpoint(checkpoint, device)
        model, schedule, spec, data = ckpt.ema, ckpt.schedule, ckpt.spectrogram or spec, None
        source = f"checkpoint {checkpoint}"
    else:
        model, schedule, data = demo_model(config, spec, device, train_steps, timesteps, max_clips_per_song)
        source = (f"a DiT of {model.num_parameters() / 1e6:.2f} M parameters trained {train_steps} steps on the "
                  "demo set")
    model = model.to(device).eval()

    outputs = {}

    def sampler(name, seed, **kwargs):
        def draw():
            generator = torch.Generator(device).manual_seed(seed)
            outputs[name] = sample(model, schedule, clips, generator=generator, **kwargs)
        return draw

    ddpm = f"DDPM-{schedule.num_timesteps}"
    contenders = {f"DDIM-{k}": sampler(f"DDIM-{k}", 1, steps=k, sampler="ddim") for k in ddim_steps}
    contenders[ddpm] = sampler(ddpm, 1, steps=None, sampler="ddpm")
    times = measure.interleaved(contenders, device, repeats=repeats, warmup=0)
    sampler("DDPM, other noise", 2, steps=None, sampler="ddpm")()

    reference = spectral_statistics(outputs[ddpm], spec)
    figures = {name: {"seconds": seconds, "seconds_per_clip": measure.median(seconds) / clips,
                      "speedup_vs_ddpm": measure.median(times[ddpm]) / measure.median(seconds),
                      "distance_to_ddpm": distance_db(spectral_statistics(outputs[name], spec), reference)}
               for name, seconds in times.items()}
    noise_floor = distance_db(spectral_statistics(outputs["DDPM, other noise"], spec), reference)
    data_distance = distance_db(spectral_statistics(data, spec), reference) if data is not None else None
    return {"benchmark": "sampling", "model": source, "clips": clips, "spectrogram": spec.__dict__,
            "contenders": figures, "ddpm_vs_ddpm_other_noise": noise_floor, "data_vs_ddpm": data_distance}


def report(result: dict) -> str:
    lines = [f"sampling {result['clips']} clips of {result['spectrogram']['frames']} frames from {result['model']}; "
             "distance = mean |difference| of the per-bin mean and std of the magnitude (dB) to DDPM's"]
    for name, f in result["contenders"].items():
        d = f["distance_to_ddpm"]
        lines.append(f"  {name:10s} {f['seconds_per_clip']:9.4f} s per clip  {f['speedup_vs_ddpm']:7.1f}x DDPM's speed  "
                     f"distance: mean {d['mean_db']:.2f} dB, std {d['std_db']:.2f} dB")
    floor = result["ddpm_vs_ddpm_other_noise"]
    lines.append(f"  DDPM vs DDPM from other noise: mean {floor['mean_db']:.2f} dB, std {floor['std_db']:.2f} dB "
                 "(what sampling noise alone gives)")
    if result["data_vs_ddpm"]:
        d = result["data_vs_ddpm"]
        lines.append(f"  training clips vs DDPM: mean {d['mean_db']:.2f} dB, std {d['std_db']:.2f} dB")
    return "\n".join(lines)
