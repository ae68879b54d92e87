"""The live view of a training run (05_training): its loss curve, redrawn
as it goes, and the model's x_0 predictions at a few steps."""

from __future__ import annotations

import time

import torch

from ..schedule import DDPMSchedule
from ..spectrogram import SpectrogramConfig
from .draw import draw_spectrogram, new_figure
from .figures import plot_loss
from .widgets import LiveDisplay


class TrainingMonitor:
    """A ``callback`` for ``train``: a loss curve that redraws itself as
    training goes (at most every ``redraw_seconds``), and, at step 0 and at
    ``snapshots`` evenly spaced steps, the model's prediction of x_0 from one
    clip noised to each of ``timesteps`` (the same noise every time)."""

    def __init__(self, model, schedule: DDPMSchedule, clip: torch.Tensor, cfg: SpectrogramConfig, total_steps: int,
                 timesteps=(0, 250, 500, 750, 999), snapshots: int = 4, redraw_seconds: float = 5.0, seed: int = 0):
        self.schedule, self.cfg, self.total_steps = schedule, cfg, total_steps
        self.timesteps = torch.tensor(timesteps)
        self.x0 = clip.float().cpu().expand(len(timesteps), *clip.shape)
        noise = torch.randn(self.x0.shape, generator=torch.Generator().manual_seed(seed))
        self.x_t = schedule.add_noise(self.x0, noise, self.timesteps)
        self.due = sorted({max(1, round(total_steps * (k + 1) / snapshots)) for k in range(snapshots)})
        self.redraw_seconds = redraw_seconds
        self.predictions: dict[int, torch.Tensor] = {}
        self.errors: dict[int, torch.Tensor] = {}
        self._live = LiveDisplay()
        self._drawn = float("-inf")
        self.snapshot(model, 0)

    @torch.no_grad()
    def snapshot(self, model, step: int):
        """Record the model's x_0 predictions (and their MSE per t) at ``step``."""
        device = next(model.parameters()).device
        x_t, t = self.x_t.to(device), self.timesteps.to(device)
        out = model(x_t, t).float()
        x0 = self.schedule.predict_x0(out, x_t, t, model.config.prediction_type).cpu()
        self.predictions[step] = x0
        self.errors[step] = (x0 - self.x0).pow(2).mean(dim=(1, 2, 3))

    def __call__(self, step: int, history, model):
        while self.due and step >= self.due[0]:
            self.snapshot(model, step)
            self.due.pop(0)
        if step >= self.total_steps or time.monotonic() - self._drawn >= self.redraw_seconds:
            self._live.show(self.loss_figure(history))
            self._drawn = time.monotonic()

    def loss_figure(self, history):
        step = history.step[-1] if history.step else 0
        title = f"training loss: step {step} of {self.total_steps}, {history.seconds:.0f} s on {history.device}"
        return plot_loss(history, title, marks=[s for s in self.predictions if s])

    def plot_predictions(self):
        """Rows: the input x_t, then the predicted x_0 at each recorded step;
        columns: the timesteps. The MSE against the clean clip is in each title."""
        steps = sorted(self.predictions)
        cols = len(self.timesteps)
        fig, axes = new_figure(1 + len(steps), cols, size=(2.9 * cols, 2.3 * (1 + len(steps))))
        for ax, x_t, t in zip(axes[0], self.x_t, self.timesteps.tolist()):
            draw_spectrogram(ax, x_t, self.cfg, f"input x_t, t = {t}" + (" (= x_0)" if t == 0 else ""),
                             colorbar=False)
        for row, step in zip(axes[1:], steps):
            for ax, x0, error, t in zip(row, self.predictions[step], self.errors[step], self.timesteps.tolist()):
                draw_spectrogram(ax, x0, self.cfg, f"step {step}: x_0 from t = {t}\nMSE {error:.3f}", colorbar=False)
        for ax in axes.flat:
            ax.label_outer()
        fig.suptitle("the model's prediction of x_0 as training goes")
        return fig
