"""Training: the seed's objective by default (the DiT sees x_t and t and
predicts x_0; MSE; Adam), with EMA weights, checkpoints that resume exactly,
and the same code on a CPU, one GPU or several GPUs under ``torchrun``.

Reproducibility: the data order comes from a ``DistributedSampler`` (a pure
function of seed and epoch) and every random draw of a step (noise,
timesteps, condition dropout) from one generator whose state is checkpointed,
so a resumed run repeats the uninterrupted one. The draws are made for the
global batch and each process takes its rows, so N processes compute what
one process would with the same global batch.

The clips are held in memory as one tensor (on the GPU when they fit) or,
when they do not fit in RAM, read batch by batch from the dataset's cache on
disk (streaming.py); both paths train on the same batches in the same order.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from .conditioning import Conditioning
from .data import condition_vectors, training_tensors
from .files import check_writable_folder, read_checkpoint, write_checkpoint
from .memory import MemoryEstimate, check_fits, estimate_training_memory
from .model import DiT, DiTConfig
from .precision import PRECISIONS, autocast, autocast_dtype
from .schedule import DDPMSchedule
from .spectrogram import SpectrogramConfig
from .streaming import read_batches, streams

LOSS_WEIGHTINGS = ("none", "min_snr")
# settings a resumed run must share with its checkpoint: they fix the data
# order, the random draws and the optimisation, so changing them midway would
# silently make a different run (steps, epochs, devices, logging may change)
RUN_SETTINGS = ("batch_size", "lr", "weight_decay", "grad_clip", "ema_decay", "cond_dropout", "seed",
                "loss_weighting", "min_snr_gamma")


@dataclass
class TrainConfig:
    """``batch_size`` is the global batch, split over processes under torchrun.
    ``epochs``, when set, overrides ``steps``; ``time_limit`` (seconds of
    training, counted over resumed runs too) stops earlier, at the first
    logged step past it: a budget of time instead of steps.
    ``precision``: see ``autocast_dtype`` (``"auto"``: bf16 on Ampere and
    later GPUs, fp16 with loss scaling on older ones such as Colab's T4, fp32
    on a CPU). ``loss_weighting="min_snr"`` weights each sample's MSE by min-SNR-gamma
    (``DDPMSchedule.min_snr_weight``); ``"none"`` is plain MSE. Checkpoints go to
    ``out_dir/last.pt`` every ``checkpoint_every`` steps and at the end; with
    ``resume`` a run finds its checkpoint there and continues. ``stream``:
    True reads a dataset's clips from its cache on disk batch by batch, False
    holds them all in memory, None (default) streams only when they take more
    than half of the available RAM (see ``streams``)."""

    steps: int = 2000
    epochs: float | None = None
    time_limit: float | None = None
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cond_dropout: float = 0.1
    loss_weighting: str = "none"
    min_snr_gamma: float = 5.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 500
    out_dir: str | None = None
    resume: bool = True
    compile: bool = False
    stream: bool | None = None
    progress: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: use one of {PRECISIONS}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting={self.loss_weighting!r}: use one of {LOSS_WEIGHTINGS}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit={self.time_limit}: give a positive number of seconds, or None")
        if self.steps < 1 if self.epochs is None else self.epochs <= 0:
            what = f"steps={self.steps}" if self.epochs is None else f"epochs={self.epochs}"
            raise ValueError(f"{what}: train at least one step (steps >= 1, epochs > 0)")
        too_small = [f"{k}={getattr(self, k)}" for k in ("batch_size", "log_every", "checkpoint_every")
                     if getattr(self, k) < 1]
        if too_small:
            raise ValueError(f"{', '.join(too_small)}: batch_size, log_every and checkpoint_every must be >= 1")
        if self.checkpoint_every % self.log_every:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} must be a multiple of "
                             f"log_every={self.log_every}, so that every checkpoint follows a loss check")
        if not (self.stream is None or isinstance(self.stream, bool)):
            raise ValueError(f"stream={self.stream!r}: use True (read the clips from disk), False (hold them in "
                             "memory) or None (decide from their size)")
        if not 0 <= self.cond_dropout < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError("cond_dropout and ema_decay must lie in [0, 1)")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def checkpoint_path(self) -> Path | None:
        return Path(self.out_dir) / "last.pt" if self.out_dir else None


@dataclass
class History:
    """Mean training loss over each ``log_every`` steps, ending at ``step``;
    ``skipped_steps`` counts the fp16 steps the loss scaler skipped for
    inf/NaN gradients (their weights were left unchanged);
    after ``train``, ``ema`` is the model with the averaged weights."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""
    skipped_steps: int = 0
    ema: DiT | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return dict(step=self.step, loss=self.loss, seconds=self.seconds, device=self.device,
                    skipped_steps=self.skipped_steps)


def is_main_process() -> bool:
    """True unless this is a non-zero rank under torchrun."""
    return int(os.environ.get("RANK", "0")) == 0


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: the GPU of this process under torchrun, else cuda, mps, cpu."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:1, mps, ...") from None
        available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not available.get(device.type, True):
            raise ValueError(f"device {name!r} is not available on this machine: use auto or cpu")
        return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def ema_model(model: DiT) -> AveragedModel:
    """A copy of ``model`` that holds the EMA of its weights (see ``update_ema``)."""
    return AveragedModel(model)


@torch.no_grad()
def update_ema(ema: AveragedModel, model: DiT, decay: float, num_averaged: int):
    """One EMA step with warm-up: decay_n = min(decay, (1 + n) / (10 + n)) after
    n = ``num_averaged`` updates (the first copies the weights), so short runs
    are not dominated by the random initial weights. n comes from the host, so
    the GPU never has to report it back (``AveragedModel.update_parameters``
    reads its counter from the device twice per call)."""
    n = num_averaged
    weight = 1.0 if n == 0 else 1 - min(decay, (1 + n) / (10 + n))
    torch._foreach_lerp_(list(ema.module.parameters()), list(model.parameters()), weight)
    ema.n_averaged += 1


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns. Sample from ``ema`` (the averaged
    weights); ``model`` holds the raw weights of the last step."""

    path: Path
    model: DiT
    ema: DiT
    schedule: DDPMSchedule
    train_config: TrainConfig
    step: int
    history: History
    metadata: dict

    @property
    def spectrogram(self) -> SpectrogramConfig | None:
        spec = self.metadata.get("spectrogram")
        return SpectrogramConfig(**spec) if spec else None

    @property
    def label_names(self) -> list[str]:
        return list(self.metadata.get("label_names", []))


def load_checkpoint(path, device="cpu") -> Checkpoint:
    state = read_checkpoint(path)
    conditioning = state.get("conditioning")
    model = DiT(DiTConfig(**state["model_config"]), Conditioning.from_dict(conditioning) if conditioning else None)
    model.load_state_dict(state["model"])
    ema = ema_model(model)
    ema.load_state_dict(state["ema"])
    return Checkpoint(
        path=Path(path), model=model.to(device).eval(), ema=ema.module.to(device).eval(),
        schedule=DDPMSchedule(**state["schedule_config"]), train_config=TrainConfig.from_dict(state["train_config"]),
        step=state["step"], history=History(**state["history"]), metadata=state.get("metadata", {}),
    )


def save_training_state(path, model, ema, optimizer, schedule, cfg, step, generator, history, metadata,
                        num_clips, scaler=None):
    return write_checkpoint(path, {
        "model_config": model.config.to_dict(), "schedule_config": dict(schedule.config),
        "conditioning": model.conditioning.to_dict() if model.conditioning else None,
        "train_config": asdict(cfg), "metadata": metadata or {}, "num_clips": num_clips,
        "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
        "step": step, "rng": generator.get_state(), "history": history.to_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
    })


FRESH_START = "choose another out_dir, delete the checkpoint, or pass resume=False to start afresh"


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
    if state["schedule_config"] != schedule.config:
        raise ValueError(f"{path} was trained with DDPMSchedule({state['schedule_config']}), not {schedule}: "
                         f"{FRESH_START}")
    changed = {k: (state["train_config"][k], getattr(cfg, k)) for k in RUN_SETTINGS
               if state["train_config"][k] != getattr(cfg, k)}
    if changed:
        was = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in changed.items())
        raise ValueError(f"{path} continues a run with {was}: pass the same settings to resume it, or {FRESH_START}")
    return state


def _restore(state: dict, path: Path, model, ema, optimizer, generator, scaler,
             num_clips: int) -> tuple[int, History]:
    if state.get("num_clips", num_clips) != num_clips:
        raise ValueError(f"{path} was trained on {state['num_clips']} clips, this data has {num_clips}: resume on "
                         f"the same data (same songs and clip settings), or {FRESH_START}")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"])
    if scaler.is_enabled() and state.get("scaler"):  # a run that was not fp16 starts the loss scale afresh
        scaler.load_state_dict(state["scaler"])
    return state["step"], History(**state["history"])


class _Processes:
    """Rank and world size; starts torch.distributed under torchrun."""

    def __init__(self, device_name: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started_here = self.world > 1 and not dist.is_initialized()
        if self.started_here:
            gpu = torch.cuda.is_available() and device_name in ("auto", "cuda")
            if gpu:
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl" if gpu else "gloo")

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(value)
            value = value / self.world
        return value

    def any(self, flag: bool, device) -> bool:
        """True when ``flag`` holds on any process (so that all stop together)."""
        if self.world == 1:
            return flag
        value = torch.tensor(int(flag), device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value)

    def same_everywhere(self, value: int, device) -> bool:
        if self.world == 1:
            return True
        extremes = torch.tensor([value, -value], device=device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        return int(extremes[0]) == -int(extremes[1])

    def close(self, finished: bool):
        if self.world > 1 and finished:  # after an error the other ranks may never get here
            dist.barrier()
        if self.started_here:
            dist.destroy_process_group()


def batch_indices(num_clips: int, cfg: TrainConfig, start_step: int = 0, *, rank: int = 0, world: int = 1,
                  device=None):
    """The clip indices of each step's batch, as ``train`` takes them: a
    shuffle per epoch (a pure function of ``cfg.seed`` and the epoch), from
    ``start_step`` on; under torchrun, the rows of process ``rank`` of
    ``world``. On ``device`` (where the data lives: one copy per epoch, none
    per step)."""
    local = cfg.batch_size // world
    sampler = DistributedSampler(range(num_clips), num_replicas=world, rank=rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    per_epoch = num_clips // cfg.batch_size
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=device)
        for b in range(offset, per_epoch):
            yield order[b * local:(b + 1) * local]
        epoch, offset = epoch + 1, 0


def step_draws(generator: torch.Generator, cfg: TrainConfig, shape, num_timesteps: int, device=None):
    """The random draws of one training step for the (global) batch, in
    ``train``'s order from its one generator: noise eps ~ N(0, I) of
    ``shape`` per clip, timesteps t uniform in 0 .. T-1, and the mask of the
    clips whose condition is dropped."""
    B = cfg.batch_size
    noise = torch.randn((B, *shape), generator=generator, device=device)
    t = torch.randint(0, num_timesteps, (B,), generator=generator, device=device)
    drop = torch.rand(B, generator=generator, device=device) < cfg.cond_dropout
    return noise, t, drop


def _training_data(data, cfg: TrainConfig, conditional: bool):
    """(clips, condition vectors or None): the clips as one tensor in memory,
    or the dataset itself when they are streamed from disk (the condition
    vectors, a few numbers per clip, stay in memory either way)."""
    if streams(data, cfg.stream):
        return data, condition_vectors(data) if conditional else None
    return training_tensors(data, conditional)


def _check_data(clips, cond, model: DiT, cfg: TrainConfig, procs: _Processes):
    in_memory = isinstance(clips, torch.Tensor)
    shape = tuple(clips.shape) if in_memory else (len(clips), *clips.features["spectrogram"].shape)
    expected = (model.config.in_channels, *model.config.input_size)
    if len(shape) != 4 or shape[1:] != expected:
        raise ValueError(f"the data's clips have shape {shape[1:]} but the model expects {expected}: "
                         f"build it with DiTConfig(..., in_channels={shape[1]}, input_size={shape[2:]})")
    if cfg.batch_size % procs.world:
        raise ValueError(f"batch_size={cfg.batch_size} does not divide over {procs.world} processes")
    if len(clips) < cfg.batch_size:
        raise ValueError(f"the data has {len(clips)} clips, fewer than batch_size={cfg.batch_size}: "
                         "lower batch_size or load more clips")
    if in_memory and not torch.isfinite(clips).all():  # streamed clips are checked batch by batch
        raise ValueError("the data contains NaN or inf values: check the audio files it was made from")
    if model.config.cond_dim and cond is not None and cond.shape != (len(clips), model.config.cond_dim):
        raise ValueError(f"condition vectors of shape {tuple(cond.shape)} do not fit the model's "
                         f"cond_dim={model.config.cond_dim}")


def diffusion_loss(output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   schedule: DDPMSchedule, prediction_type: str, cfg: TrainConfig) -> torch.Tensor:
    """MSE between the network's output and its target, each sample weighted
    by ``cfg.loss_weighting``."""
    target = schedule.training_target(x0, noise, t, prediction_type)
    if cfg.loss_weighting == "none":
        return F.mse_loss(output, target)
    weight = schedule.min_snr_weight(t, x0, prediction_type, cfg.min_snr_gamma)
    return (weight * (output - target).pow(2)).mean()


def _finite(model: DiT) -> bool:
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def _diverged(what: str, last_logged: int, step: int, path: Path | None) -> FloatingPointError:
    when = f"at step {step}" if step - last_logged == 1 else f"between steps {last_logged + 1} and {step}"
    kept = f"the last good checkpoint, {path}, is kept" if path and path.exists() else "no checkpoint was written"
    return FloatingPointError(f"training diverged: {what} {when}; {kept}. "
                              "Lower lr, keep grad_clip on, or check the data for NaN/inf")


def _place(x0: torch.Tensor, cond: torch.Tensor | None, device: torch.device, needed: MemoryEstimate):
    """Refuses a run whose estimated peak (``needed``, memory.py) exceeds the
    GPU's free memory. The clips go onto the GPU when they take at most half
    of the free memory left after that peak (no loader, no per-step host
    copies); else they stay in host memory."""
    fits = device.type != "cuda" or x0.nbytes <= 0.5 * check_fits(needed, device)
    home = device if fits else torch.device("cpu")
    return x0.to(home), (cond.to(home) if cond is not None else None)


def _gather(data: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of ``data`` on ``device``; rows from host memory are
    gathered into pinned memory, so their copy does not stop the host."""
    rows = data[idx]
    return rows if rows.device == device else rows.pin_memory().to(device, non_blocking=True)


def _clip_batches(clips, cfg: TrainConfig, procs: _Processes, start_step: int, device: torch.device):
    """(indices, clips on ``device``) of each step from ``start_step`` on:
    gathered from the tensor in memory, or read from the dataset on disk."""
    on = clips.device if isinstance(clips, torch.Tensor) else torch.device("cpu")
    indices = batch_indices(len(clips), cfg, start_step, rank=procs.rank, world=procs.world, device=on)
    if isinstance(clips, torch.Tensor):
        for idx in indices:
            yield idx, _gather(clips, idx, device)
    else:
        yield from read_batches(clips, indices, device)


def _scaled_step(optimizer, scaler: torch.amp.GradScaler) -> torch.Tensor:
    """The fp16 optimizer step through the loss scaler; True (on the device,
    read at the next loss check) when it was skipped for inf/NaN gradients."""
    scale = scaler._scale.clone()  # the tensor: get_scale() would wait for the GPU at every step
    scaler.step(optimizer)
    scaler.update()
    return scaler._scale < scale  # update() lowers the scale exactly when step() skipped


def train(model: DiT, schedule: DDPMSchedule, data, cfg: TrainConfig = TrainConfig(), *,
          metadata: dict | None = None, callback: Callable | None = None) -> History:
    """Train ``model`` on ``data`` and return the loss history.

    ``data``: a tensor of clips [N, C, F, T], a pair (clips, condition
    vectors [N, cond_dim]), or a dataset from ``load_music_dataset``.
    ``metadata`` (plain values, e.g. the spectrogram config and label names)
    is stored in every checkpoint. ``callback(step, history, model)`` runs on
    the main process after each logged step.
    """
    procs = _Processes(cfg.device)
    finished = False
    try:
        state = check_resume(cfg, model.config, schedule)
        if cfg.out_dir:
            check_writable_folder(cfg.out_dir)
        clips, cond = _training_data(data, cfg, conditional=bool(model.config.cond_dim))
        _check_data(clips, cond, model, cfg, procs)
        device = pick_device(cfg.device, procs.local_rank)
        history = _train(model, schedule, clips, cond, cfg, procs, device, state, metadata, callback)
        finished = True
        return history
    finally:
        procs.close(finished)


def _train(model, schedule, clips, cond, cfg, procs, device, state, metadata, callback) -> History:
    dtype = autocast_dtype(device, cfg.precision)
    needed = estimate_training_memory(model, cfg.batch_size // procs.world, dtype)
    if isinstance(clips, torch.Tensor):
        clips, cond = _place(clips, cond, device, needed)
    elif device.type == "cuda":
        check_fits(needed, device)
    num_clips = len(clips)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device).train()
    schedule.to(device)
    ema = ema_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # bf16 has fp32's range: no scaling
    per_epoch = num_clips // cfg.batch_size
    total = math.ceil(cfg.epochs * per_epoch) if cfg.epochs is not None else cfg.steps

    step, history = 0, History(device=str(device))
    path = cfg.checkpoint_path
    if state is not None:
        step, history = _restore(state, path, model, ema, optimizer, generator, scaler, num_clips)
        history.device = str(device)
        if cfg.time_limit is not None and history.seconds >= cfg.time_limit:
            total = step  # its time budget is spent: nothing more to train
    if not procs.same_everywhere(step, device):
        raise RuntimeError(f"the processes start from different steps (rank {procs.rank}: step {step}): "
                           f"put out_dir ({cfg.out_dir}) on storage that every node reads, e.g. a shared filesystem")

    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if procs.world > 1 else model
    net = torch.compile(net) if cfg.compile else net

    batches = _clip_batches(clips, cfg, procs, step, device)
    running = torch.zeros((), device=device)
    skipped = torch.zeros((), dtype=torch.long, device=device)
    bar = tqdm(total=total, initial=step, disable=not (cfg.progress and is_main_process()), desc="train", unit="step")
    started = time.perf_counter()
    while step < total:
        idx, clean = next(batches)
        c = _gather(cond, idx, device) if cond is not None else None
        rows = slice(procs.rank, None, procs.world)  # this process's rows of the global batch's draws
        noise, t, drop = (v[rows] for v in step_draws(generator, cfg, clean.shape[1:], schedule.num_timesteps, device))
        with autocast(device, dtype):
            out = net(schedule.add_noise(clean, noise, t), t, c, drop if c is not None else None)
        loss = diffusion_loss(out.float(), clean, noise, t, schedule, model.config.prediction_type, cfg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients (without fp16, nothing to unscale)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler.is_enabled():
            skipped += _scaled_step(optimizer, scaler)
        else:
            optimizer.step()
        update_ema(ema, model, cfg.ema_decay, step)
        running += loss.detach()
        step += 1

        if step % cfg.log_every == 0 or step == total:
            last_logged = history.step[-1] if history.step else 0
            value = float(procs.mean(running) / (step - last_logged))  # the one host sync every log_every steps
            running.zero_()
            if not math.isfinite(value):
                raise _diverged(f"the loss became {value}", last_logged, step, path)
            history.skipped_steps += int(skipped)
            skipped.zero_()
            if scaler.is_enabled() and scaler.get_scale() < 1:  # skipping is normal; at every scale it is not
                raise _diverged("the gradients were inf or NaN at every fp16 loss scale down to "
                                f"{scaler.get_scale():g}", last_logged, step, path)
            history.step.append(step)
            history.loss.append(value)
            history.seconds += time.perf_counter() - started
            started = time.perf_counter()
            if cfg.time_limit is not None and procs.any(history.seconds >= cfg.time_limit, device):
                total = step  # the budget is spent: this step is the last, and is saved
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{value:.4f}", **({"skipped": history.skipped_steps} if scaler.is_enabled() else {}))
            if is_main_process() and callback is not None:
                callback(step, history, model)
            if path is not None and (step % cfg.checkpoint_every == 0 or step == total):
                if not _finite(model):  # a finite loss can still leave NaN weights behind (an inf gradient)
                    raise _diverged("the weights became NaN or inf", last_logged, step, path)
                if is_main_process():
                    save_training_state(path, model, ema, optimizer, schedule, cfg, step, generator, history,
                                        metadata, num_clips, scaler)
    batches.close()  # ends the loader's worker processes, if any
    bar.close()
    model.eval()
    history.ema = ema.module.eval()
    return history
