"""What the figures draw on one Axes: spectrograms, waveforms, values on the
patch grid; and the Figure they draw in.

Figures are closed in pyplot as soon as they are made: a notebook shows each
one exactly once, as the value its cell returns, and none piles up in
pyplot's registry.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import FixedLocator, MaxNLocator

from ..spectrogram import SpectrogramConfig, magnitude_db

SPECTROGRAM_DB_RANGE = (-80.0, 0.0)


def new_figure(rows: int = 1, cols: int = 1, size=(6.0, 3.5), **subplots):
    """A constrained-layout Figure and its [rows, cols] Axes array, already
    closed in pyplot (see the module docstring)."""
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained", **subplots)
    plt.close(fig)
    return fig, axes


def sparse_ticks(ax, ticks: int = 3, fontsize: float = 8):
    """Few, readable ticks for a small panel in a grid; tick labels only on
    the grid's outer edges."""
    if not isinstance(ax.yaxis.get_major_locator(), FixedLocator):  # mel bands keep their Hz ticks
        ax.yaxis.set_major_locator(MaxNLocator(ticks))
    ax.xaxis.set_major_locator(MaxNLocator(ticks))
    ax.tick_params(labelsize=fontsize)
    ax.title.set_fontsize(fontsize + 1)
    ax.xaxis.label.set_fontsize(fontsize + 1)
    ax.yaxis.label.set_fontsize(fontsize + 1)
    ax.label_outer()


def _mel_bands(cfg: SpectrogramConfig, bins: int) -> bool:
    return cfg.representation == "mel" and bins == cfg.n_mels


def extent(cfg: SpectrogramConfig, bins: int, frames: int) -> tuple:
    """The imshow extent of a [bins, frames] image: time (s) by frequency
    (Hz), each row centred on its bin's frequency k * sample_rate / n_fft, so
    a full STFT's last row (bin n_fft / 2) sits on the Nyquist frequency. Mel
    bands span 0 to their count (the axis is labelled in Hz)."""
    seconds = frames * cfg.hop_length / cfg.sample_rate
    if _mel_bands(cfg, bins):
        return (0, seconds, 0, bins)
    spacing = cfg.sample_rate / cfg.n_fft
    return (0, seconds, -spacing / 2, (bins - 0.5) * spacing)


def draw_image_db(ax, image_db: torch.Tensor, cfg: SpectrogramConfig, title: str = "", colorbar: bool = True):
    """A [bins, frames] STFT magnitude (or mel bands) in dB over time (s) and frequency (Hz)."""
    im = ax.imshow(image_db.numpy(), origin="lower", aspect="auto", extent=extent(cfg, *image_db.shape),
                   vmin=SPECTROGRAM_DB_RANGE[0],
                   vmax=SPECTROGRAM_DB_RANGE[1], cmap="magma", interpolation="nearest")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    if _mel_bands(cfg, image_db.shape[0]):
        bands = torch.linspace(0, cfg.n_mels - 1, 6).round().long()
        ax.set_yticks((bands + 0.5).tolist(), [f"{f:.0f}" for f in cfg.frequencies()[bands].tolist()])
        ax.set_ylabel("frequency (Hz, mel scale)")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="magnitude (dB)")
    return im


def draw_spectrogram(ax, spec: torch.Tensor, cfg: SpectrogramConfig, title: str = "", colorbar: bool = True):
    """A model tensor [C, F, T] as its STFT magnitude in dB."""
    image = magnitude_db(spec.detach().float().cpu(), cfg)
    return draw_image_db(ax, image, cfg, title, colorbar)


def draw_waveform(ax, wave, sample_rate: int, start: float = 0.0, max_points: int = 4000, **style):
    """A waveform as its min/max envelope over at most ``max_points`` blocks,
    so an hour of audio draws as fast as a second."""
    wave = torch.as_tensor(wave).float()
    block = max(1, len(wave) // max_points)
    blocks = wave[: len(wave) // block * block].view(-1, block)
    times = start + (torch.arange(len(blocks)) * block + block / 2) / sample_rate
    ax.fill_between(times.numpy(), blocks.min(1).values.numpy(), blocks.max(1).values.numpy(),
                    linewidth=0.6, **style)
    ax.set(xlabel="time (s)", ylabel="amplitude")


def patch_grid_cells(cfg: SpectrogramConfig, patch_size: int, rows: int, cols: int):
    """Where a [rows, cols] grid of patches lies over its spectrogram's
    image: the (time, frequency) of its lower-left corner and one patch's
    (width, height), in the units of ``extent``."""
    left, right, bottom, top = extent(cfg, rows * patch_size, cols * patch_size)
    return (left, bottom), ((right - left) / cols, (top - bottom) / rows)


def draw_on_patch_grid(ax, values: torch.Tensor, cfg: SpectrogramConfig, patch_size: int, title: str,
                       token: int | None = None, **scale):
    """One value per patch ([rows, cols]) over the clip's time (s) and
    frequency (Hz); a red cross marks ``token``; ``scale``: imshow's vmin, vmax."""
    rows, cols = values.shape
    im = ax.imshow(values.cpu().numpy(), origin="lower", aspect="auto",
                   extent=extent(cfg, rows * patch_size, cols * patch_size), cmap="viridis",
                   interpolation="nearest", **scale)
    if token is not None:
        (left, bottom), (width, height) = patch_grid_cells(cfg, patch_size, rows, cols)
        row, col = divmod(token, cols)
        ax.plot(left + (col + 0.5) * width, bottom + (row + 0.5) * height, "x", color="red")
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)")
    return im
