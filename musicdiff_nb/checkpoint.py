"""Checkpoints: what a run saves (its ``RunConfig``, the weights, the
optimizer, the random state and the loss log), how it is read back, and the
checks before a run resumes from one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


def save_checkpoint(path, state: TrainState, schedule: DDPMSchedule, cfg: TrainConfig, run: RunConfig | None,
                    num_clips: int) -> Path:
    model = state.model
    return write_checkpoint(path, {
        "run": run.to_dict() if run else None,
        "model_config": model.config.to_dict(), "schedule_config": asdict(schedule.config),
        "conditioning": model.conditioning.to_dict() if model.conditioning else None,
        "train_config": asdict(cfg), "num_clips": num_clips,
        "model": model.state_dict(), "ema": state.averaged.state_dict(), "optimizer": state.optimizer.state_dict(),
        "step": state.step, "rng": state.generator.get_state(), "history": state.history.to_dict(),
        "scaler": state.scaler.state_dict() if state.scaler.is_enabled() else {},
    })


def _upgrade(state: dict) -> dict:
    """A checkpoint written before runs were recorded kept its spectrogram,
    data and split in a free-form ``metadata`` dict: rebuild its run from them
    (what that dict did not hold, e.g. clips per song, takes RunConfig's defaults)."""
    if "run" in state:
        return state
    meta = state.pop("metadata", None) or {}
    run = None
    if meta.get("spectrogram"):
        run = RunConfig.from_dict({
            "spectrogram": meta["spectrogram"], "model": state["model_config"], "schedule": state["schedule_config"],
            "train": asdict(TrainConfig.from_dict(state["train_config"])),
            "data": {"source": meta.get("data", "demo"), **(meta.get("split") or {})},
            "conditioning": (state.get("conditioning") or {}).get("kind", "none"),
        }).to_dict()
    return {**state, "run": run}


def load_checkpoint(path, device="cpu") -> Checkpoint:
    state = _upgrade(read_checkpoint(path))
    conditioning = state.get("conditioning")
    model = DiT(DiTConfig(**state["model_config"]), Conditioning.from_dict(conditioning) if conditioning else None)
    model.load_state_dict(state["model"])
    averaged = AveragedModel(model)
    averaged.load_state_dict(state["ema"])
    return Checkpoint(
        path=Path(path), model=model.to(device).eval(), ema=averaged.module.to(device).eval(),
        schedule=DDPMSchedule(**state["schedule_config"]), train_config=TrainConfig.from_dict(state["train_config"]),
        run=RunConfig.from_dict(state["run"], source=str(path)) if state["run"] else None,
        step=state["step"], history=History(**state["history"]),
    )


def check_resume(cfg: TrainConfig, model_config: DiTConfig, schedule: DDPMSchedule) -> dict | None:
    """The state a run of these settings continues from (``cfg.out_dir/last.pt``),
    or None when it starts afresh. A checkpoint of another model, schedule or
    run settings is refused here, before any work is done."""
    path = cfg.checkpoint_path
    if path is None or not cfg.resume or not path.exists():
        return None
    state = read_checkpoint(path)
    if state["model_config"] != model_config.to_dict():
        raise ValueError(f"{path} was trained with {DiTConfig(**state['model_config'])}, not {model_config}: "
                         f"{FRESH_START}")
    if state["schedule_config"] != asdict(schedule.config):
        raise ValueError(f"{path} was trained with {DDPMSchedule(**state['schedule_config'])}, not {schedule}: "
                         f"{FRESH_START}")
    changed = {k: (state["train_config"][k], getattr(cfg, k)) for k in RUN_SETTINGS
               if state["train_config"][k] != getattr(cfg, k)}
    if changed:
        was = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in changed.items())
        raise ValueError(f"{path} continues a run with {was}: pass the same settings to resume it, or {FRESH_START}")
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
