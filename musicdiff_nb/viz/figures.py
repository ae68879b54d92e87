"""The static figures the notebooks and the command line show: each
function returns a matplotlib Figure (drawn with draw.py, closed in pyplot).
No widgets here: the command line writes these figures without loading
ipywidgets or IPython."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter

from ..files import atomic_write
from ..spectrogram import SpectrogramConfig
from .draw import draw_spectrogram, new_figure


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
