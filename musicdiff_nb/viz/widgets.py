"""The notebooks' interactive parts: explorers (controls over a view that
redraws when one changes), a live display and an audio player. The only
module of the package that imports ipywidgets and IPython.

An explorer's first view is drawn at once, so a headless run executes it too.
"""

from __future__ import annotations

from dataclasses import replace

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import Audio, display
from matplotlib.figure import Figure

from ..schedule import DDPMSchedule
from ..spectrogram import SpectrogramConfig, to_waveform
from .figures import plot_stft, plot_timestep, plot_trajectory_step

STILL_TITLE = "a still of the first view, for pages that cannot run widgets; the controls below redraw it"


def play(wave: torch.Tensor, sample_rate: int) -> Audio:
    """An audio player, loudness-normalised (a silent clip stays silent)."""
    wave = torch.as_tensor(wave).detach().float().cpu().numpy()
    return Audio(wave, rate=sample_rate, normalize=bool(np.abs(wave).max() > 0))


def explorer(render, **controls) -> widgets.VBox:
    """``controls`` (named widgets) above an Output that shows everything
    ``render(**values)`` returns (figures, audio players), redrawn when a
    control changes; the first view is drawn at once.

    The first view's figures are also displayed as a still, before the box:
    a static page (GitHub, nbviewer, exported HTML) shows widgets blank."""
    output = widgets.Output()

    def redraw(_=None) -> list:
        output.outputs = ()
        items = list(render(**{name: control.value for name, control in controls.items()}))
        for item in items:
            _show(output, item)
        return items

    for control in controls.values():
        control.observe(redraw, names="value")
    for item in redraw():  # the Output holds its view already rendered, so the still's title stays out of it
        if isinstance(item, Figure):
            item.suptitle(STILL_TITLE, fontsize=9, color="0.4")
            display(item)
    return widgets.VBox([widgets.HBox(list(controls.values())), output])


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


def stft_explorer(wave, cfg: SpectrogramConfig, n_ffts=(64, 128, 256, 512, 1024, 2048, 4096)) -> widgets.VBox:
    """Sliders for n_fft and the hop (as a fraction of n_fft) over one sound's spectrogram."""
    wave = torch.as_tensor(wave).float()

    def render(n_fft, hop_fraction):
        yield plot_stft(wave, replace(cfg, n_fft=n_fft, hop_length=max(1, n_fft // hop_fraction)))

    style = dict(continuous_update=False, style={"description_width": "initial"})
    return explorer(render,
                    n_fft=widgets.SelectionSlider(options=list(n_ffts), value=cfg.n_fft, description="n_fft", **style),
                    hop_fraction=widgets.SelectionSlider(options=[(f"n_fft/{k}", k) for k in (8, 4, 2, 1)], value=4,
                                                         description="hop", **style))


def timestep_explorer(x0: torch.Tensor, schedule: DDPMSchedule, cfg: SpectrogramConfig, t: int = 250,
                      seed: int = 0) -> widgets.VBox:
    """A slider for t: the noised spectrogram x_t, where t sits on the abar_t
    curve, and x_t as audio. The noise eps is drawn once, so only t changes."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def render(t):
        x_t = schedule.add_noise(x0, eps, t)
        yield plot_timestep(x_t, t, schedule, cfg)
        yield play(to_waveform(x_t, cfg), cfg.sample_rate)

    slider = widgets.IntSlider(value=t, min=0, max=schedule.num_timesteps - 1, description="t",
                               continuous_update=False, layout=widgets.Layout(width="60%"))
    return explorer(render, t=slider)


def trajectory_explorer(trajectory, cfg: SpectrogramConfig, index: int = 0) -> widgets.VBox:
    """A slider over the sampler's steps: x_t, the model's x_0 prediction, and x_t as audio."""
    last = len(trajectory.timesteps)

    def render(step):
        yield plot_trajectory_step(trajectory, cfg, step, index)
        yield play(to_waveform(trajectory.x_t[step, index], cfg), cfg.sample_rate)

    slider = widgets.IntSlider(value=last, min=0, max=last, description="step", continuous_update=False,
                               layout=widgets.Layout(width="60%"))
    return explorer(render, step=slider)
