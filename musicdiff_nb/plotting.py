"""The figures the notebooks and the command line show. Every function
returns a matplotlib Figure (or draws on the Axes it is given) and computes
nothing that the rest of the package does not already compute."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .files import atomic_write
from .spectrogram import SpectrogramConfig, magnitude_db


def draw_spectrogram(ax, spec: torch.Tensor, cfg: SpectrogramConfig, title: str = "",
                     vmin: float = -80.0, vmax: float = 0.0, colorbar: bool = True):
    """A model tensor [C, F, T] as its magnitude in dB over time (s) and frequency (Hz)."""
    image = magnitude_db(spec.detach().cpu(), cfg)
    frames = image.shape[-1]
    extent = (0, frames * cfg.hop_length / cfg.sample_rate, 0, cfg.freq_bins * cfg.sample_rate / cfg.n_fft)
    im = ax.imshow(image.numpy(), origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="magma")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="magnitude (dB)")
    return im


def plot_spectrograms(specs, cfg: SpectrogramConfig, titles=None, columns: int = 4, suptitle: str = ""):
    """A grid of spectrograms [n, C, F, T] (or a list of [C, F, T])."""
    specs = list(specs)
    rows = (len(specs) + columns - 1) // columns
    cols = min(columns, len(specs))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i < len(specs):
            draw_spectrogram(ax, specs[i], cfg, titles[i] if titles else "", colorbar=i == len(specs) - 1)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_loss(history, title: str = "training loss", ax=None):
    """The logged loss against the step, on a log scale."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(history.step, history.loss)
    ax.set(xlabel="step", ylabel="MSE loss", yscale="log", title=title)
    ax.grid(alpha=0.3)
    return ax.figure


def plot_guidance_sweep(sweep: list[dict], real_hit_rate: float | None = None,
                        title: str = "classifier-free guidance"):
    """Hit rate and diversity (rows of ``evaluation.guidance_sweep``) against
    the guidance scale s; s = 0 is the unconditioned model."""
    scales = [row["scale"] for row in sweep]
    fig, (hits, spread) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    hits.plot(scales, [100 * row["hit_rate"] for row in sweep], "o-", label="generated clips")
    if real_hit_rate is not None:
        hits.axhline(100 * real_hit_rate, color="gray", ls="--", label="real clips (held out)")
    hits.set(xlabel="guidance scale s", ylabel="requested label found (%)", ylim=(0, 105),
             title="does the clip carry its label?")
    hits.legend()
    spread.plot(scales, [row["diversity"] for row in sweep], "o-", color="tab:orange")
    spread.set(xlabel="guidance scale s", ylabel="distance between clips (dB RMS)",
               title="how different are clips of one label?")
    for ax in (hits, spread):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def save_figure(fig, path) -> Path:
    """Save a figure as PNG atomically and close it."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
