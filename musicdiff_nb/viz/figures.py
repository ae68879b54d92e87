"""The static figures the notebooks and the command line show: each
function returns a matplotlib Figure (drawn with draw.py, closed in pyplot).
No widgets here: the command line writes these figures without loading
ipywidgets or IPython."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import FuncFormatter

from ..files import atomic_write
from ..spectrogram import SpectrogramConfig
from .draw import (
    draw_spectrogram,
    new_figure,
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

def plot_trajectory(trajectory, cfg: SpectrogramConfig, index: int = 0, count: int = 6):
    """``count`` points of a sampler's trajectory for sample ``index``, from
    pure noise to the finished sample: x_t (top) and the model's prediction
    of x_0 from it (bottom; under the sample, the last prediction)."""
    last = len(trajectory.timesteps)  # x_t has last + 1 entries: x_t[last] is the sample
    steps = np.linspace(0, last, min(count, last + 1)).round().astype(int)
    fig, axes = new_figure(2, len(steps), size=(2.2 * len(steps) + 1, 4.6))
    for col, i in enumerate(steps):
        guess = min(i, last - 1)
        top = (f"after all {last} steps:\nthe sample" if i == last
               else f"after {i} steps:\nx_t, t = {trajectory.timesteps[i]}")
        im = draw_spectrogram(axes[0, col], trajectory.x_t[i, index], cfg, top, colorbar=False)
        draw_spectrogram(axes[1, col], trajectory.x0[guess, index], cfg,
                         f"predicted x_0\nat t = {trajectory.timesteps[guess]}", colorbar=False)
    for ax in axes.flat:
        sparse_ticks(ax)
    fig.colorbar(im, ax=axes, label="magnitude (dB)", fraction=0.03)
    fig.suptitle("denoising: from pure noise (left) to the sample (right)")
    return fig


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


def plot_nearest(samples: torch.Tensor, references: torch.Tensor, neighbours, cfg: SpectrogramConfig, names=None):
    """Each sample (left) beside its nearest training clip (right), with the
    distance between their log-magnitude spectrograms (dB RMS)."""
    fig, axes = new_figure(len(samples), 2, size=(9, 2.8 * len(samples)))
    for row, (sample, j, d) in enumerate(zip(samples, neighbours.index.tolist(), neighbours.distance.tolist())):
        draw_spectrogram(axes[row, 0], sample, cfg, f"sample {row}", colorbar=False)
        name = f" ({names[j]})" if names is not None else ""
        draw_spectrogram(axes[row, 1], references[j], cfg, f"nearest training clip {j}{name}: {d:.1f} dB RMS",
                         colorbar=False)
    for ax in axes.flat:
        ax.label_outer()
    return fig


def plot_quality(reports: dict, title: str = "how far from real music?"):
    """Normalised Fréchet distances (quality.py) of each named report, on
    both embeddings: 0 = held-out real music (the floor), 1 = noise (the
    ceiling), with the real clips of the training songs for scale."""
    embeddings = list(next(iter(reports.values())).fd)
    fig, axes = new_figure(1, len(embeddings), size=(5 * len(embeddings), 0.6 * len(reports) + 1.8))
    first = next(iter(reports.values()))
    for ax, embedding in zip(axes[0], embeddings):
        names = ["real (held out)", "real (training songs)", *reports, "noise"]
        values = [0.0, first.fd[embedding]["train_normalised"],
                  *(r.fd[embedding]["normalised"] for r in reports.values()), 1.0]
        colors = ["tab:green", "tab:green", *["tab:blue"] * len(reports), "tab:gray"]
        bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
        ax.bar_label(bars, fmt="%.3f", padding=3)
        ax.set(xlim=(min(0.0, *values) - 0.02, 1.2 * max(1.0, *values)),
               xlabel="normalised Fréchet distance (0 = real, 1 = noise)",
               title=f"{embedding} embedding")
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[0, 1:]:
        ax.set_yticklabels([])
    fig.suptitle(title)
    return fig


def plot_sampler_quality(curves: dict[str, dict[int, float]], levels: dict[str, float] | None = None,
                         noise: float = 0.0, title: str = "fewer steps at equal quality?"):
    """Normalised Fréchet distance (features) against sampling steps, one
    line per sampler (``curves``: sampler -> {steps: FD}); ``levels`` (name ->
    FD, e.g. DDIM-50, DDPM over all timesteps) as horizontal lines, the first
    with ± ``noise`` shaded around it (what counts as equally good:
    bench/sampling.py). ``bench.sampling.figure_data(result)`` gives all three
    from ``bench sampling``'s result."""
    fig, ((ax,),) = new_figure(size=(6.5, 3.8))
    for sampler, points in curves.items():
        ax.plot(*zip(*sorted(points.items())), "o-", label=sampler.upper())
    for (name, level), style in zip((levels or {}).items(), ("--", ":", "-.")):
        ax.axhline(level, color="black" if style == ":" else "tab:gray", ls=style, label=name)
    if levels and noise:
        name, level = next(iter(levels.items()))
        ax.axhspan(level - noise, level + noise, color="tab:gray", alpha=0.2, label=f"{name} ± FD noise")
    steps = sorted({k for points in curves.values() for k in points})
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(k) for k in steps], minor=False)
    ax.minorticks_off()
    ax.set(xlabel="sampling steps (model calls)", ylabel="normalised FD, features\n(0 = real, 1 = noise)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


# -- 07 conditioning ------------------------------------------------------------

def plot_guidance_sweep(sweep: list[dict], real_hit_rate: float | None = None,
                        title: str = "classifier-free guidance"):
    """Hit rate and diversity (rows of ``guidance.guidance_sweep``) against
    the guidance scale s; s = 0 is the unconditioned model."""
    scales = [row["scale"] for row in sweep]
    fig, ((hits, spread),) = new_figure(1, 2, size=(10, 3.6))
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
