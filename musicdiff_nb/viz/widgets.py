"""The notebooks' interactive parts: explorers (controls over a view that
redraws when one changes), a live display and an audio player. The only
module of the package that imports ipywidgets and IPython.

An explorer's first view is drawn at once, so a headless run executes it too.
It also carries a still of that view, for pages that cannot run widgets: the
still is one more format of the explorer's own output (``image/png`` beside
the widget view), so each page shows exactly one of them. JupyterLab and
Colab draw the live widget, and a page built with the notebook's saved widget
state draws the widget as saved (its first view); both pass over the PNG.
GitHub, or an HTML export without widget state, cannot draw the widget and
shows the PNG in its place. Displayed as a separate output, the still would
stay above the live view, stale once a control moved.
"""

from __future__ import annotations

import base64
from dataclasses import replace

import ipywidgets as widgets
import numpy as np
import torch
from IPython.core.pylabtools import print_figure
from IPython.display import Audio, display
from matplotlib.figure import Figure

from ..schedule import DDPMSchedule
from ..spectrogram import SpectrogramConfig, db, stft, to_waveform
from .draw import draw_image_db, draw_spectrogram, new_figure
from .figures import plot_trajectory_step

STILL_TITLE = "a still of the first view: run the notebook to move the controls"


def play(wave: torch.Tensor, sample_rate: int) -> Audio:
    """An audio player, loudness-normalised (a silent clip stays silent)."""
    wave = torch.as_tensor(wave).detach().float().cpu().numpy()
    return Audio(wave, rate=sample_rate, normalize=bool(np.abs(wave).max() > 0))


def explorer(render, **controls) -> "Explorer":
    """``controls`` (named widgets) above an Output that shows everything
    ``render(**values)`` returns (figures, audio players), redrawn when a
    control changes; the first view is drawn at once, and its first figure
    becomes the still of pages that cannot run widgets (module docstring)."""
    output = widgets.Output()

    def redraw(_=None) -> list:
        output.outputs = ()
        items = list(render(**{name: control.value for name, control in controls.items()}))
        for item in items:
            _show(output, item)
        return items

    for control in controls.values():
        control.observe(redraw, names="value")
    figures = [item for item in redraw() if isinstance(item, Figure)]
    return Explorer([widgets.HBox(list(controls.values())), output], still=_still_png(figures[0]) if figures else None)


class Explorer(widgets.VBox):
    """A VBox whose output also holds a PNG still: a front end that renders
    widgets picks the widget view, one that cannot falls back to the PNG.
    (ipywidgets 7, which Colab ships, displays a widget through its own
    ``_ipython_display_``: there the live widget shows, without a still.)"""

    def __init__(self, children, still: str | None = None):
        super().__init__(children)
        self.still = still

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if self.still is not None:
            bundle["image/png"] = self.still
        return bundle


def _still_png(fig: Figure) -> str:
    """The figure as PNG, titled as a still. The Output holds the view already
    rendered, so the title stays out of the live view."""
    fig.suptitle(STILL_TITLE, fontsize=9, color="0.4")
    return base64.b64encode(print_figure(fig, "png")).decode("ascii")  # as a cell's figure output holds it


def _show(output: widgets.Output, item):
    """Add ``item``, rendered now, to ``output``'s state. Not ``with output:
    display(item)``: capturing a cell's output into the widget makes a
    notebook run headless (nbclient, nbmake) stall until the cell's timeout
    every few runs."""
    output.append_display_data(item)


class LiveDisplay:
    """One place in a cell's output that each ``show`` replaces (a figure that redraws itself)."""

    def __init__(self):
        self._handle = None

    def show(self, item):
        if self._handle is None:
            self._handle = display(item, display_id=True)
        else:
            self._handle.update(item)


def stft_view(wave: torch.Tensor, cfg: SpectrogramConfig) -> Figure:
    """One sound's STFT magnitude (dB) at ``cfg``'s n_fft and hop, titled with its resolution and size."""
    image = db(stft(wave, cfg).abs())
    fig, axes = new_figure(size=(9, 3.6))
    draw_image_db(axes[0, 0], image, cfg, f"n_fft {cfg.n_fft}, hop {cfg.hop_length}: window "
                  f"{1000 * cfg.n_fft / cfg.sample_rate:.1f} ms, bins {cfg.sample_rate / cfg.n_fft:.1f} Hz apart; "
                  f"{image.shape[0]} bins x {image.shape[1]} frames")
    return fig


def stft_explorer(wave, cfg: SpectrogramConfig, n_ffts=(64, 128, 256, 512, 1024, 2048, 4096)) -> Explorer:
    """Sliders for n_fft and the hop (as a fraction of n_fft) over one sound's spectrogram."""
    wave = torch.as_tensor(wave).float()

    def render(n_fft, hop_fraction):
        yield stft_view(wave, replace(cfg, n_fft=n_fft, hop_length=max(1, n_fft // hop_fraction)))

    style = dict(continuous_update=False, style={"description_width": "initial"})
    return explorer(render,
                    n_fft=widgets.SelectionSlider(options=list(n_ffts), value=cfg.n_fft, description="n_fft", **style),
                    hop_fraction=widgets.SelectionSlider(options=[(f"n_fft/{k}", k) for k in (8, 4, 2, 1)], value=4,
                                                         description="hop", **style))


def timestep_view(x_t: torch.Tensor, t: int, schedule: DDPMSchedule, cfg: SpectrogramConfig) -> Figure:
    """The noised spectrogram x_t (left) and where t sits on the abar_t curve (right)."""
    abar = schedule.alphas_cumprod.cpu()
    fig, axes = new_figure(1, 2, size=(11, 3.4), width_ratios=[2, 1])
    draw_spectrogram(axes[0, 0], x_t, cfg, f"x_t at t = {t}")
    axes[0, 1].plot(abar.numpy(), label="abar_t")
    axes[0, 1].plot(t, abar[t], "o", color="tab:red", label=f"abar_{t} = {abar[t]:.3f}")
    axes[0, 1].set(title="signal left", xlabel="timestep t", ylabel="abar_t")
    axes[0, 1].legend()
    return fig


def timestep_explorer(x0: torch.Tensor, schedule: DDPMSchedule, cfg: SpectrogramConfig, t: int = 250,
                      seed: int = 0) -> Explorer:
    """A slider for t: the noised spectrogram x_t, where t sits on the abar_t
    curve, and x_t as audio. The noise eps is drawn once, so only t changes."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def render(t):
        x_t = schedule.add_noise(x0, eps, t)
        yield timestep_view(x_t, t, schedule, cfg)
        yield play(to_waveform(x_t, cfg), cfg.sample_rate)

    slider = widgets.IntSlider(value=t, min=0, max=schedule.num_timesteps - 1, description="t",
                               continuous_update=False, layout=widgets.Layout(width="60%"))
    return explorer(render, t=slider)


def trajectory_explorer(trajectory, cfg: SpectrogramConfig, index: int = 0) -> Explorer:
    """A slider over the sampler's steps: x_t, the model's x_0 prediction, and x_t as audio."""
    last = len(trajectory.timesteps)

    def render(step):
        yield plot_trajectory_step(trajectory, cfg, step, index)
        yield play(to_waveform(trajectory.x_t[step, index], cfg), cfg.sample_rate)

    slider = widgets.IntSlider(value=last, min=0, max=last, description="step", continuous_update=False,
                               layout=widgets.Layout(width="60%"))
    return explorer(render, step=slider)
