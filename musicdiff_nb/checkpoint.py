"""Checkpoints: what a run saves (its ``RunConfig``, the weights, the
optimizer, the random state and the loss log), how it is read back, and the
checks before a run resumes from one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from .conditioning import Conditioning
from .config import RunConfig, TrainConfig
from .files import read_checkpoint, write_checkpoint
from .model import DiT, DiTConfig
from .schedule import DDPMSchedule
from .spectrogram import SpectrogramConfig

# settings a resumed run must share with its checkpoint: they fix the data
# order, the random draws and the optimisation, so changing them midway would
# silently make a different run (steps, epochs, devices, logging may change)
RUN_SETTINGS = ("batch_size", "lr", "weight_decay", "grad_clip", "ema_decay", "cond_dropout", "seed",
                "loss_weighting", "min_snr_gamma")
FRESH_START = "choose another out_dir, delete the checkpoint, or pass resume=False to start afresh"


@dataclass
class History:
    """Mean training loss over each ``log_every`` steps, ending at ``step``;
    ``seconds`` of training; ``skipped_steps`` counts the fp16 steps the loss
    scaler skipped for inf/NaN gradients (their weights were left unchanged)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""
    skipped_steps: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """Everything a training step changes, saved whole in a checkpoint: the
    weights, their running average (EMA), the optimizer, the fp16 loss scaler,
    the random generator of the step's draws, the step and the log."""

    model: DiT
    averaged: AveragedModel
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    step: int = 0
    history: History = field(default_factory=History)

    @property
    def ema(self) -> DiT:
        """The model with the averaged weights: the one to sample from."""
        return self.averaged.module


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns. Sample from ``ema`` (the averaged
    weights); ``model`` holds the raw weights of the last step. ``run`` is the
    whole run (None for a model trained on bare tensors with a ``TrainConfig``)."""

    path: Path
    model: DiT
    ema: DiT
    schedule: DDPMSchedule
    train_config: TrainConfig
    run: RunConfig | None
    step: int
    history: History

    @property
    def spectrogram(self) -> SpectrogramConfig | None:
        return self.run.spectrogram if self.run else None

    @property
    def label_names(self) -> list[str]:
        return list(self.model.conditioning.label_names) if self.model.conditioning else []


def recorded_run(config: RunConfig | TrainConfig, model: DiT, schedule: DDPMSchedule) -> dict:
    """What a checkpoint records of its run: the ``RunConfig`` (``to_dict``), with
    the model and schedule it trained (so the record cannot disagree with the weights), or,
    for a model trained on bare tensors with a ``TrainConfig``, the sections
    that exist: the model, the schedule and the training settings."""
    if isinstance(config, RunConfig):  # the model and schedule as trained, whatever the run declared
        model_config = replace(model.config, cond_dim=config.model.cond_dim)
        return config.replace(model=model_config, schedule=schedule.config).to_dict()
    return json.loads(json.dumps({"model": asdict(model.config), "schedule": asdict(schedule.config),
                                  "train": asdict(config)}))


def save_checkpoint(path, state: TrainState, run: dict, num_clips: int) -> Path:
    """The run (``recorded_run``) and the state: weights, EMA, optimizer, random state, log."""
    model = state.model
    return write_checkpoint(path, {
        "run": run, "conditioning": model.conditioning.to_dict() if model.conditioning else None,
        "num_clips": num_clips,
        "model": model.state_dict(), "ema": state.averaged.state_dict(), "optimizer": state.optimizer.state_dict(),
        "step": state.step, "rng": state.generator.get_state(), "history": state.history.to_dict(),
        "scaler": state.scaler.state_dict() if state.scaler.is_enabled() else {},
    })


def _saved_run(state: dict, path) -> dict:
    if not state.get("run"):
        raise ValueError(f"{path} records no run: it was written by an older musicdiff_nb; train it again")
    return state["run"]


def load_checkpoint(path, device="cpu") -> Checkpoint:
    state = read_checkpoint(path)
    run = _saved_run(state, path)
    conditioning = Conditioning.from_dict(state["conditioning"]) if state.get("conditioning") else None
    model = DiT(DiTConfig(**run["model"]), conditioning)
    model.load_state_dict(state["model"])
    averaged = AveragedModel(model)
    averaged.load_state_dict(state["ema"])
    return Checkpoint(
        path=Path(path), model=model.to(device).eval(), ema=averaged.module.to(device).eval(),
        schedule=DDPMSchedule(**run["schedule"]), train_config=TrainConfig.from_dict(run["train"], str(path)),
        run=RunConfig.from_dict(run, source=str(path)) if "spectrogram" in run else None,
        step=state["step"], history=History(**state["history"]),
    )


def check_resume(run: dict, cfg: TrainConfig) -> dict | None:
    """The state a run (``recorded_run``) continues from (``cfg.out_dir/last.pt``),
    or None when it starts afresh. A checkpoint of another model, schedule or
    run settings is refused here, before any work is done."""
    path = cfg.checkpoint_path
    if path is None or not cfg.resume or not path.exists():
        return None
    state = read_checkpoint(path)
    saved = _saved_run(state, path)
    compared = {"model": run["model"], "schedule": run["schedule"],
                "train": {k: run["train"][k] for k in RUN_SETTINGS}}
    changed = [f"{section}.{k}={saved[section].get(k)!r} (now {value!r})"
               for section, values in compared.items() for k, value in values.items() if saved[section].get(k) != value]
    if changed:
        raise ValueError(f"{path} continues a run with {', '.join(changed)}: pass the same settings to resume it, "
                         f"or {FRESH_START}")
    return state


def restore(saved: dict, path: Path, state: TrainState, num_clips: int):
    """Load a checkpoint's weights, optimizer, random state and log into ``state``."""
    if saved.get("num_clips", num_clips) != num_clips:
        raise ValueError(f"{path} was trained on {saved['num_clips']} clips, this data has {num_clips}: resume on "
                         f"the same data (same songs and clip settings), or {FRESH_START}")
    state.model.load_state_dict(saved["model"])
    state.averaged.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.generator.set_state(saved["rng"])
    if state.scaler.is_enabled() and saved.get("scaler"):  # a run that was not fp16 starts the loss scale afresh
        state.scaler.load_state_dict(saved["scaler"])
    state.step, state.history = saved["step"], History(**saved["history"])
