"""The live view of a training run (05 and 07): its loss curve, redrawn as it
goes, with the progress in its title, and the model's x_0 predictions at a
few steps (05 draws them)."""

from __future__ import annotations

import time

import torch

from ..schedule import DDPMSchedule
from .figures import plot_loss
from .widgets import LiveDisplay


class TrainingMonitor:
    """A ``callback`` for ``train`` (pass ``progress=False`` to train: the
    title here is the progress): a loss curve that redraws itself as training
    goes, at most every ``redraw_seconds`` (each redraw costs the loop a
    fraction of a second), and the last time at the end. Given a ``clip``, at
    step 0 and at ``snapshots`` evenly spaced steps it records the model's
    prediction of x_0 from that clip noised to each of ``timesteps`` (the
    same noise every time).

    The curve is one display that each redraw replaces, so a notebook run
    headless stores its final state, not a frozen start."""

    def __init__(self, model, schedule: DDPMSchedule, total_steps: int, clip: torch.Tensor | None = None,
                 timesteps=(0, 250, 500, 750, 999), snapshots: int = 4, redraw_seconds: float = 10.0, seed: int = 0):
        self.schedule, self.total_steps = schedule, total_steps
        self.timesteps = torch.tensor(timesteps)
        self.predictions: dict[int, torch.Tensor] = {}
        self.errors: dict[int, torch.Tensor] = {}
        self.due = []
        if clip is not None:
            self.x0 = clip.float().cpu().expand(len(timesteps), *clip.shape)
            noise = torch.randn(self.x0.shape, generator=torch.Generator().manual_seed(seed))
            self.x_t = schedule.add_noise(self.x0, noise, self.timesteps)
            self.due = sorted({max(1, round(total_steps * (k + 1) / snapshots)) for k in range(snapshots)})
            self.snapshot(model, 0)
        self.redraw_seconds = redraw_seconds
        self._live = LiveDisplay()
        self._drawn = float("-inf")
        self._first = None  # (step, seconds) at the first call: a resumed run's speed counts from there

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
        self._first = self._first or (step, history.seconds)
        if step >= self.total_steps or time.monotonic() - self._drawn >= self.redraw_seconds:
            self._live.show(self.loss_figure(history))
            self._drawn = time.monotonic()

    def loss_figure(self, history):
        step = history.step[-1] if history.step else 0
        title = f"training loss: step {step} of {self.total_steps}, {history.seconds:.0f} s on {history.device}"
        first_step, first_seconds = self._first or (step, history.seconds)
        if first_step < step < self.total_steps:
            per_step = (history.seconds - first_seconds) / (step - first_step)
            title += f", about {per_step * (self.total_steps - step):.0f} s to go"
        return plot_loss(history, title, marks=[s for s in self.predictions if s])
