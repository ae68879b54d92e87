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
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from .checkpoint import History, TrainState, check_resume, recorded_run, restore, save_checkpoint
from .config import RunConfig, TrainConfig
from .data import condition_vectors, training_tensors
from .files import check_writable_folder
from .memory import MemoryEstimate, check_fits, estimate_training_memory
from .model import DiT
from .precision import autocast, autocast_dtype
from .processes import Processes, is_main_process, pick_device
from .schedule import DDPMSchedule
from .streaming import read_batches, streams


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


def _check_data(clips, cond, model: DiT, cfg: TrainConfig, procs: Processes):
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


def _clip_batches(clips, cfg: TrainConfig, procs: Processes, start_step: int, device: torch.device):
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


def train(model: DiT, schedule: DDPMSchedule, data, config: TrainConfig | RunConfig = TrainConfig(), *,
          callback: Callable | None = None) -> TrainState:
    """Train ``model`` on ``data``; return the final ``TrainState`` (its
    ``history`` is the loss log, its ``ema`` the model to sample from).

    ``data``: a tensor of clips [N, C, F, T], a pair (clips, condition
    vectors [N, cond_dim]), or a dataset from ``load_music_dataset``.
    ``config``: the ``RunConfig`` that ``model`` and ``schedule`` were built
    from (``DiT(run.model, conditioning)``, ``DDPMSchedule(run.schedule)``):
    it trains with its ``train`` settings, and every checkpoint records it
    whole, so that sampling and scoring find its spectrogram and data there;
    or just a ``TrainConfig`` (for bare tensors; see ``recorded_run``).
    ``callback(step, history, model)`` runs on the main process after each logged step.
    """
    cfg = config.train if isinstance(config, RunConfig) else config
    run = recorded_run(config, model, schedule)
    procs = Processes(cfg.device)
    finished = False
    try:
        state = _train(model, schedule, data, cfg, run, procs, callback)
        finished = True
        return state
    finally:
        procs.close(finished)


def _train(model, schedule, data, cfg: TrainConfig, run: dict, procs: Processes, callback) -> TrainState:
    # --- checks first: a wrong checkpoint or folder is refused before any work ---
    saved = check_resume(run, cfg)
    if cfg.out_dir:
        check_writable_folder(cfg.out_dir)
    clips, cond = _training_data(data, cfg, conditional=bool(model.config.cond_dim))
    _check_data(clips, cond, model, cfg, procs)

    # --- device, data placement, model, optimizer ---
    device = pick_device(cfg.device, procs.local_rank)
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
    state = TrainState(
        model=model, averaged=AveragedModel(model),
        optimizer=torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),  # bf16 has fp32's range
        generator=torch.Generator(device).manual_seed(cfg.seed), history=History(device=str(device)))
    per_epoch = num_clips // cfg.batch_size
    total = math.ceil(cfg.epochs * per_epoch) if cfg.epochs is not None else cfg.steps

    # --- resume: weights, optimizer, random state and log from the checkpoint ---
    path = cfg.checkpoint_path
    if saved is not None:
        restore(saved, path, state, num_clips)
        state.history.device = str(device)
        if cfg.time_limit is not None and state.history.seconds >= cfg.time_limit:
            total = state.step  # its time budget is spent: nothing more to train
    if not procs.same_everywhere(state.step, device):
        raise RuntimeError(f"the processes start from different steps (rank {procs.rank}: step {state.step}): "
                           f"put out_dir ({cfg.out_dir}) on storage that every node reads, e.g. a shared filesystem")
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if procs.world > 1 else model
    net = torch.compile(net) if cfg.compile else net

    # --- the loop: one batch, its noise and timesteps, the loss, one optimizer step, the EMA ---
    history, optimizer, scaler = state.history, state.optimizer, state.scaler
    batches = _clip_batches(clips, cfg, procs, state.step, device)
    running = torch.zeros((), device=device)
    skipped = torch.zeros((), dtype=torch.long, device=device)
    bar = tqdm(total=total, initial=state.step, disable=not (cfg.progress and is_main_process()), desc="train",
               unit="step")
    started = time.perf_counter()
    while state.step < total:
        idx, clean = next(batches)
        c = _gather(cond, idx, device) if cond is not None else None
        rows = slice(procs.rank, None, procs.world)  # this process's rows of the global batch's draws
        noise, t, drop = (v[rows] for v in step_draws(state.generator, cfg, clean.shape[1:],
                                                      schedule.num_timesteps, device))
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
        update_ema(state.averaged, model, cfg.ema_decay, state.step)
        running += loss.detach()
        state.step += 1
        step = state.step
        if step % cfg.log_every and step != total:
            continue

        # --- every log_every steps: the mean loss (the one host sync), checks, the bar, the checkpoint ---
        last_logged = history.step[-1] if history.step else 0
        value = float(procs.mean(running) / (step - last_logged))
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
                save_checkpoint(path, state, run, num_clips)
    batches.close()  # ends the loader's worker processes, if any
    bar.close()
    model.eval()
    state.averaged.module.eval()
    return state
