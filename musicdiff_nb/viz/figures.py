"""The static figures the notebooks and the command line show: each
function returns a matplotlib Figure (drawn with draw.py, closed in pyplot).
No widgets here: the command line writes these figures without loading
ipywidgets or IPython."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..data import label_names
from ..files import atomic_write
from ..schedule import DDPMSchedule
from ..spectrogram import SpectrogramConfig, db, stft, to_spectrogram
from .draw import (
    SPECTROGRAM_DB_RANGE,
    draw_image_db,
    draw_on_patch_grid,
    draw_spectrogram,
    draw_waveform,
    extent,
    new_figure,
    patch_grid_cells,
    sparse_ticks,
)


def save_figure(fig, path) -> Path:
    """Save a figure as PNG atomically."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    return Path(path)


def plot_spectrograms(specs, cfg: SpectrogramConfig, titles=None, columns: int = 4, suptitle: str = ""):
    """A grid of spectrograms [n, C, F, T] (or a list of [C, F, T])."""
    specs = list(specs)
    rows, cols = (len(specs) + columns - 1) // columns, min(columns, len(specs))
    fig, axes = new_figure(rows, cols, size=(3.6 * cols, 2.8 * rows))
    for i, ax in enumerate(axes.flat):
        if i < len(specs):
            im = draw_spectrogram(ax, specs[i], cfg, titles[i] if titles else "", colorbar=False)
        else:
            ax.axis("off")
    fig.colorbar(im, ax=axes, label="magnitude (dB)")  # one scale for all: they share vmin and vmax
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# -- 01 data --------------------------------------------------------------------

def plot_label_counts(ds, top: int = 30):
    """How many songs carry each label (the ``top`` most frequent), and how
    many labels each song has."""
    names = label_names(ds)
    per_song = dict(zip(ds["song"], ds["labels"]))
    counts = Counter(names[i] for ids in per_song.values() for i in ids).most_common(top)
    per_song_counts = Counter(len(ids) for ids in per_song.values())
    fig, axes = new_figure(1, 2, size=(11, 3.8), width_ratios=[3, 1])
    left, right = axes[0]
    left.bar([name for name, _ in counts], [n for _, n in counts], color="tab:blue")
    left.tick_params(axis="x", rotation=60)
    left.set(title=f"the {len(counts)} most frequent of {len(names)} labels", xlabel="label", ylabel="songs")
    label_counts = range(1, max(per_song_counts) + 1)
    bars = right.bar(label_counts, [per_song_counts[k] for k in label_counts], width=0.6, color="tab:orange")
    right.bar_label(bars, padding=2)
    right.set_xticks(label_counts)
    right.set(title="labels per song", xlabel="labels on the song", ylabel="songs",
              xlim=(0.4, label_counts[-1] + 0.6), ylim=(0, 1.15 * max(per_song_counts.values())))
    for ax in (left, right):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # songs come whole
    return fig


def plot_waveforms(waves, sample_rate: int, titles):
    """Waveforms, one row each, amplitude against time (s)."""
    fig, axes = new_figure(len(waves), 1, size=(10, 1.7 * len(waves)), sharex=True)
    for ax, wave, title in zip(axes[:, 0], waves, titles):
        draw_waveform(ax, wave, sample_rate)
        ax.set_title(title, loc="left", fontsize=10)
        ax.label_outer()
    return fig


def plot_song_clips(ds, song: str, cfg: SpectrogramConfig):
    """How a song was cut: each clip drawn where it starts in the song, in
    alternating colours; a gap is a clip dropped as silent (or not taken)."""
    rows = ds.select([i for i, name in enumerate(ds["song"]) if name == song])
    fig, axes = new_figure(size=(11, 2.6))
    ax = axes[0, 0]
    for k, (start, audio) in enumerate(zip(rows["start_seconds"], rows["audio"])):
        color = ("tab:blue", "tab:orange")[k % 2]
        ax.axvspan(start, start + cfg.clip_seconds, color=color, alpha=0.08)
        draw_waveform(ax, audio, cfg.sample_rate, start=start, color=color)
    ax.set_title(f"{song}: {len(rows)} clips of {cfg.clip_seconds:.2f} s "
                 f"({cfg.clip_samples} samples = hop {cfg.hop_length} x ({cfg.frames} frames - 1))")
    return fig


# -- 02 STFT --------------------------------------------------------------------

def _stft_db(wave: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    return db(stft(torch.as_tensor(wave).float(), cfg).abs())


def plot_framing(wave, cfg: SpectrogramConfig, frames: int = 4):
    """How the STFT reads a signal: a Hann window of n_fft samples centred
    every hop_length samples (top), and the spectrum of one windowed frame
    (bottom), which is one column of the spectrogram."""
    wave = torch.as_tensor(wave).float()
    n = min(len(wave), frames * cfg.hop_length + cfg.n_fft)
    ms = 1000 / cfg.sample_rate
    fig, axes = new_figure(2, 1, size=(10, 5.5))
    top, bottom = axes[:, 0]
    top.plot(np.arange(n) * ms, wave[:n].numpy(), color="0.6", linewidth=0.8, label="signal")
    peak = float(wave[:n].abs().max().clamp_min(1e-6))
    window = torch.hann_window(cfg.n_fft).numpy() * peak
    shown = 1 + frames // 2
    for k in range(1, frames + 1):
        centre = k * cfg.hop_length
        span = np.arange(centre - cfg.n_fft // 2, centre + cfg.n_fft // 2)
        top.plot(span * ms, window, linewidth=2.2 if k == shown else 1.0, label=f"window of frame {k}")
    top.set(title=f"Hann windows of n_fft = {cfg.n_fft} samples ({cfg.n_fft * ms:.1f} ms), "
                  f"one every hop = {cfg.hop_length} samples ({cfg.hop_length * ms:.1f} ms)",
            xlabel="time (ms)", ylabel="amplitude", xlim=(0, n * ms))
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: it hid a window
    column = _stft_db(wave, cfg)[:, shown]
    bottom.plot(np.arange(len(column)) * cfg.sample_rate / cfg.n_fft, column.numpy())
    bottom.set(title=f"|FFT| of frame {shown}: one column of the spectrogram, bins "
                     f"{cfg.sample_rate / cfg.n_fft:.1f} Hz apart",
               xlabel="frequency (Hz)", ylabel="magnitude (dB)", ylim=(SPECTROGRAM_DB_RANGE[0] - 20, None))
    return fig


def _resolution_title(cfg: SpectrogramConfig) -> str:
    return (f"n_fft {cfg.n_fft}, hop {cfg.hop_length}: window {1000 * cfg.n_fft / cfg.sample_rate:.1f} ms, "
            f"bins {cfg.sample_rate / cfg.n_fft:.1f} Hz apart")


def plot_resolution(wave, cfg: SpectrogramConfig, n_ffts=(128, 512, 2048)):
    """The time/frequency trade-off: one sound through short and long windows
    (each hop the same fraction of n_fft as in ``cfg``)."""
    fig, axes = new_figure(1, len(n_ffts), size=(4.2 * len(n_ffts), 3.4))
    for i, (ax, n_fft) in enumerate(zip(axes[0], n_ffts)):
        c = replace(cfg, n_fft=n_fft, hop_length=max(1, n_fft * cfg.hop_length // cfg.n_fft))
        draw_image_db(ax, _stft_db(wave, c), c, _resolution_title(c), colorbar=i == len(n_ffts) - 1)
        ax.title.set_fontsize(9)
    return fig


def plot_magnitude_phase(wave, cfg: SpectrogramConfig):
    """The two halves of the complex STFT: magnitude (dB) and phase (rad)."""
    x = stft(torch.as_tensor(wave).float(), cfg)
    fig, axes = new_figure(1, 2, size=(11, 3.6))
    draw_image_db(axes[0, 0], db(x.abs()), cfg, "magnitude |X|")
    im = axes[0, 1].imshow(x.angle().numpy(), origin="lower", aspect="auto", extent=extent(cfg, *x.shape[-2:]),
                           cmap="twilight", vmin=-np.pi, vmax=np.pi, interpolation="nearest")
    axes[0, 1].set(title="phase angle(X)", xlabel="time (s)", ylabel="frequency (Hz)")
    fig.colorbar(im, ax=axes[0, 1], label="phase (rad)")
    return fig


def _kurtosis(x: torch.Tensor) -> float:
    z = (x - x.mean()) / x.std()
    return float(z.pow(4).mean())


def plot_representation(wave, cfg: SpectrogramConfig):
    """What the model sees: the real and imaginary channels of the compressed
    STFT, and the distribution of their values with and without compression."""
    wave = torch.as_tensor(wave).float()
    spec = to_spectrogram(wave, cfg)
    uncompressed = to_spectrogram(wave, replace(cfg, compression=1.0))
    limit = float(spec.abs().quantile(0.99))
    fig, axes = new_figure(1, 3, size=(14, 3.6))
    for ax, channel, name in zip(axes[0], spec, ("real part (channel 0)", "imaginary part (channel 1)")):
        im = ax.imshow(channel.numpy(), origin="lower", aspect="auto", extent=extent(cfg, *channel.shape),
                       cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set(title=name, xlabel="time (s)", ylabel="frequency (Hz)")
    fig.colorbar(im, ax=axes[0, :2].tolist(), label="value (model units)")
    ax = axes[0, 2]
    bins = np.linspace(-6, 6, 121)
    for values, label in ((spec, f"|X|^{cfg.compression:g} (the model's input)"),
                          (uncompressed, "|X| (no compression)")):
        z = (values / values.std()).flatten().numpy()
        ax.hist(z, bins=bins, density=True, histtype="step", linewidth=1.5,
                label=f"{label}: kurtosis {_kurtosis(values):.0f}")
    ax.plot(bins, np.exp(-bins**2 / 2) / np.sqrt(2 * np.pi), "k--", linewidth=1, label="N(0, 1) noise: kurtosis 3")
    ax.set(title="values / their std", xlabel="value (standard deviations)", ylabel="density", yscale="log",
           ylim=(1e-4, None))
    ax.legend(fontsize=8)
    return fig


def plot_stft(wave, cfg: SpectrogramConfig):
    """One sound's STFT magnitude (dB) at ``cfg``'s n_fft and hop, titled with its resolution and size."""
    image = _stft_db(wave, cfg)
    fig, axes = new_figure(size=(9, 3.6))
    draw_image_db(axes[0, 0], image, cfg, f"{_resolution_title(cfg)}; {image.shape[0]} bins x {image.shape[1]} frames")
    return fig


# -- 03 noise schedule ----------------------------------------------------------

def plot_schedules(schedules: dict[str, DDPMSchedule]):
    """beta_t, abar_t and the signal-to-noise ratio abar_t / (1 - abar_t) of each schedule."""
    fig, axes = new_figure(1, 3, size=(14, 3.6))
    for name, s in schedules.items():
        t = np.arange(s.num_timesteps)
        axes[0, 0].plot(t, s.betas.cpu().numpy(), label=name)
        axes[0, 1].plot(t, s.alphas_cumprod.cpu().numpy(), label=name)
        axes[0, 2].plot(t, (10 * torch.log10(s.snr())).cpu().numpy(), label=name)
    axes[0, 0].set(title="beta_t: noise added at step t", ylabel="beta_t", yscale="log")
    axes[0, 1].set(title="abar_t: signal variance left in x_t", ylabel="abar_t")
    axes[0, 2].set(title="SNR abar_t / (1 - abar_t)", ylabel="SNR (dB)")
    for ax in axes[0]:
        ax.set_xlabel("timestep t")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_noising(x0: torch.Tensor, schedules: dict[str, DDPMSchedule], cfg: SpectrogramConfig, timesteps,
                 seed: int = 0):
    """x_t of one clip at each of ``timesteps`` (columns) under each schedule
    (rows), all with the same noise eps."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = new_figure(len(schedules), len(timesteps), size=(1.7 * len(timesteps) + 1, 2.3 * len(schedules)))
    for row, (name, s) in zip(axes, schedules.items()):
        for ax, t in zip(row, timesteps):
            abar = float(s.alphas_cumprod[t])
            im = draw_spectrogram(ax, s.add_noise(x0, eps, t), cfg, f"{name}, t = {t}\nabar_t = {abar:.3f}",
                                  colorbar=False)
            sparse_ticks(ax)
    fig.colorbar(im, ax=axes, label="magnitude (dB)", fraction=0.02)  # one scale: they share vmin and vmax
    fig.suptitle("x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps: the same clip and the same eps")
    return fig


def plot_timestep(x_t: torch.Tensor, t: int, schedule: DDPMSchedule, cfg: SpectrogramConfig):
    """The noised spectrogram x_t (left) and where t sits on the abar_t curve (right)."""
    abar = schedule.alphas_cumprod.cpu()
    fig, axes = new_figure(1, 2, size=(11, 3.4), width_ratios=[2, 1])
    draw_spectrogram(axes[0, 0], x_t, cfg, f"x_t at t = {t}")
    axes[0, 1].plot(abar.numpy(), label="abar_t")
    axes[0, 1].plot(t, abar[t], "o", color="tab:red", label=f"abar_{t} = {abar[t]:.3f}")
    axes[0, 1].set(title="signal left", xlabel="timestep t", ylabel="abar_t")
    axes[0, 1].legend()
    return fig


# -- 04 DiT model ---------------------------------------------------------------

def plot_patches(spec: torch.Tensor, model, cfg: SpectrogramConfig):
    """Patchify: the spectrogram cut into ``model``'s p x p patches (left,
    numbered in token order) becomes a sequence of N tokens of C * p * p
    numbers (right, ``DiT.patchify``)."""
    p = model.config.patch_size
    rows, cols = model.config.grid_size
    fig, axes = new_figure(1, 2, size=(13, 4.2), width_ratios=[1.3, 1])
    ax = axes[0, 0]
    draw_spectrogram(ax, spec, cfg, f"{p} x {p} patches")
    (left, bottom), (dt, df) = patch_grid_cells(cfg, p, rows, cols)
    for r in range(1, rows):
        ax.axhline(bottom + r * df, color="white", linewidth=0.5)
    for c in range(1, cols):
        ax.axvline(left + c * dt, color="white", linewidth=0.5)
    for r in range(rows):
        for c in range(cols):
            if r in (0, rows - 1) or c in (0, cols - 1):
                ax.text(left + (c + 0.5) * dt, bottom + (r + 0.5) * df, str(r * cols + c), color="white",
                        ha="center", va="center", fontsize=7,
                        bbox=dict(facecolor="black", alpha=0.4, linewidth=0, pad=1))
    tokens = model.patchify(spec[None].float())[0]
    limit = float(tokens.abs().quantile(0.99))
    im = axes[0, 1].imshow(tokens.numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                           interpolation="nearest")
    axes[0, 1].set(title=f"{len(tokens)} tokens x {tokens.shape[1]} values (C x p x p)",
                   xlabel="value within the patch (channel, row, column)", ylabel="token")
    fig.colorbar(im, ax=axes[0, 1], label="value (model units)")
    return fig


def plot_position_embedding(model, cfg: SpectrogramConfig, token: int | None = None):
    """The fixed 2-D sin-cos position embedding: its [N, D] table (left) and
    how similar (cosine) one token's position code is to every other's (right)."""
    pos = model.pos_embed[0].cpu()
    grid = model.config.grid_size
    token = model.config.middle_token if token is None else token
    similarity = F.cosine_similarity(pos[token][None], pos, dim=-1).view(grid)
    fig, axes = new_figure(1, 2, size=(12, 3.8))
    im = axes[0, 0].imshow(pos.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    axes[0, 0].set(title="pos_embed: first half codes frequency, second half time", xlabel="channel",
                   ylabel="token")
    fig.colorbar(im, ax=axes[0, 0], label="value")
    im = draw_on_patch_grid(axes[0, 1], similarity, cfg, model.config.patch_size,
                            f"cosine similarity to token {token}'s position", token)
    fig.colorbar(im, ax=axes[0, 1], label="cosine similarity")
    return fig


def plot_attention(maps, model, cfg: SpectrogramConfig, query: int | None = None):
    """Where one token looks: row ``query`` of each block's (rows) and head's
    (columns) attention matrix, laid out on the patch grid; the cross marks the query."""
    grid = model.config.grid_size
    query = model.config.middle_token if query is None else query
    heads = maps[0].shape[1]
    rows = torch.stack([weights[0, :, query] for weights in maps])  # [blocks, heads, N]
    top = float(rows.max())
    fig, axes = new_figure(len(maps), heads, size=(2.6 * heads + 1, 2.2 * len(maps)))
    for b, (row, weights) in enumerate(zip(axes, rows)):
        for h, ax in enumerate(row):
            im = draw_on_patch_grid(ax, weights[h].view(grid), cfg, model.config.patch_size,
                                    f"block {b}, head {h}", query, vmin=0, vmax=top)
            sparse_ticks(ax)
    bar = fig.colorbar(im, ax=axes, label="attention weight (one scale for all)", fraction=0.03)
    bar.ax.axhline(1 / rows.shape[-1], color="white", linewidth=1.5)
    fig.suptitle(f"attention of token {query} over the {grid[0]} x {grid[1]} patch grid "
                 f"(white line on the bar: 1/{rows.shape[-1]}, an even spread)")
    return fig


# -- 05 training ----------------------------------------------------------------

def plot_loss(history, title: str = "training loss", ax=None, marks=()):
    """The logged loss against the step, on a log scale; ``marks`` are steps to flag."""
    if ax is None:
        ax = new_figure()[1][0, 0]
    ax.plot(history.step, history.loss)
    for step in marks:
        ax.axvline(step, color="0.6", linestyle=":", linewidth=1)
    ax.set(xlabel="step", ylabel="MSE loss", yscale="log", title=title)
    ax.set_xlim(0, max(history.step, default=1) * 1.02)  # from step 0: the first point is logged after a few steps
    ax.grid(alpha=0.3, which="both")
    if history.loss and max(history.loss) < 10 * min(history.loss):  # within a decade: label the minor ticks too
        plain = FuncFormatter(lambda value, _: f"{value:.2g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    return ax.figure


# -- 06 sampling ----------------------------------------------------------------

def plot_trajectory_step(trajectory, cfg: SpectrogramConfig, step: int, index: int = 0):
    """x_t after ``step`` of the sampler's steps for sample ``index`` (left)
    and the model's x_0 prediction there (right; for the finished sample, the last one)."""
    last = len(trajectory.timesteps)
    title = (f"the sample, after all {last} steps" if step == last
             else f"x_t after {step} of {last} steps (t = {trajectory.timesteps[step]})")
    guess = min(step, last - 1)  # the result has no prediction of its own: show the last one
    fig, axes = new_figure(1, 2, size=(11, 3.4))
    draw_spectrogram(axes[0, 0], trajectory.x_t[step, index], cfg, title)
    draw_spectrogram(axes[0, 1], trajectory.x0[guess, index], cfg, f"the model's x_0 prediction at step {guess}")
    return fig
