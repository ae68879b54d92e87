"""Time to music that sounds good: our training at the CPU defaults
(``notebook_settings("cpu")``: log-mel clips, the tiny DiT, x0 prediction,
AdamW at 1e-3, EMA) against a reference pipeline assembled from diffusers as
its documentation teaches it (the ``train_unconditional`` example and
``DDIMPipeline``): ``DiTTransformer2DModel`` at the same width, depth, heads
and patch size, the data scaled to [-1, 1] as its image pipelines do,
``DDPMScheduler`` (linear, 1000 steps, its defaults), epsilon prediction,
AdamW (lr 1e-4, betas 0.95/0.999, weight decay 1e-6, 500 warm-up steps),
``EMAModel`` with warm-up; same clips, same batch.

Both train at once, each in its own process on ``threads`` threads, and
save their EMA weights at each mark of training time, counted as the
process's CPU time (data loading not counted): on one thread each that is
the wall-clock time of a quiet core, and other work on the machine does not
change it. Afterwards each saved model draws ``n`` clips with 50 DDIM
steps, each with its own pipeline's sampler (ours: ``sample``; the peer:
``DDIMScheduler`` from its ``DDPMScheduler``'s config, which clips its x0
estimate to [-1, 1]), scored against the held-out songs (quality.py:
normalised Fréchet distance, 0 = real music, 1 = noise). The report gives
the FD at each mark and the minutes each contender needs to reach
``threshold``. A contender whose weights at the last mark are already in
``out_dir`` is not trained again, only scored.

Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from musicdiff_nb.checkpoint import load_checkpoint
from musicdiff_nb.data import load_data, spectrograms
from musicdiff_nb.files import atomic_write
from musicdiff_nb.model import DiT, DiTConfig
from musicdiff_nb.quality import build_reference, evaluate, score
from musicdiff_nb.schedule import DDPMSchedule
from musicdiff_nb.settings import notebook_settings
from musicdiff_nb.train import train

import measure
from train_step import diffusers_dit

CONTENDERS = ("ours", "diffusers")
PEER_OPTIMIZER = dict(lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
PEER_WARMUP_STEPS = 500
CHUNK_STEPS = 50  # ours trains this many steps between looks at the clock


def mark_path(out_dir: Path, name: str, minutes: float) -> Path:
    return out_dir / name / f"{minutes:g}min.pt"


def train_ours(settings, clips, marks, out_dir: Path):
    """``train``, continued (resumed exactly) ``CHUNK_STEPS`` at a time until each mark."""
    torch.manual_seed(0)
    model = DiT(settings.model)
    steps, used = 0, 0.0
    for minutes in marks:
        while used < 60 * minutes:
            start = time.process_time()
            steps += CHUNK_STEPS
            run = settings.replace(train=dict(steps=steps, out_dir=str(out_dir / "ours"), log_every=50,
                                              checkpoint_every=10**6, progress=False, resume=steps > CHUNK_STEPS))
            train(model, DDPMSchedule(run.schedule), clips, run)
            used += time.process_time() - start
        weights = load_checkpoint(run.train.checkpoint_path).ema.state_dict()
        save(mark_path(out_dir, "ours", minutes), weights, steps, used)


def peer_forward(net, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """diffusers' DiT always embeds a class label: label 0 for every clip."""
    return net(x, t.expand(len(x)), torch.zeros(len(x), dtype=torch.long), return_dict=False)[0]


def peer_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


def train_peer(settings, clips, marks, out_dir: Path):
    """The diffusers training loop as its examples write it, for the same minutes."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    low, high = float(clips.min()), float(clips.max())
    clips = (clips - low) / (high - low) * 2 - 1  # [-1, 1], as its image pipelines normalise pixels
    torch.manual_seed(0)
    model = diffusers_dit(settings.model)
    scheduler = peer_scheduler()
    optimizer = torch.optim.AdamW(model.parameters(), **PEER_OPTIMIZER)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=PEER_WARMUP_STEPS)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    generator = torch.Generator().manual_seed(0)
    batches = shuffled_batches(len(clips), settings.train.batch_size, generator)
    step, seconds = 0, 0.0
    for minutes in marks:
        start = time.process_time()
        while seconds + time.process_time() - start < 60 * minutes:
            x0 = clips[next(batches)]
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, 1000, (len(x0),), generator=generator)
            loss = F.mse_loss(peer_forward(model, scheduler.add_noise(x0, noise, t), t), noise)
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(model.parameters())
            step += 1
        seconds += time.process_time() - start
        averaged = diffusers_dit(settings.model)
        averaged.load_state_dict(model.state_dict())
        ema.copy_to(averaged.parameters())
        save(mark_path(out_dir, "diffusers", minutes), averaged.state_dict(), step, seconds, (low, high))


@torch.no_grad()
def peer_samples(net, config: DiTConfig, value_range: tuple[float, float], n: int, steps: int,
                 seed: int = 0) -> torch.Tensor:
    """``n`` clips from the peer, by the loop of diffusers' DDIMPipeline, back in our units."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(peer_scheduler().config)
    scheduler.set_timesteps(steps)
    x = torch.randn(n, config.in_channels, *config.input_size, generator=torch.Generator().manual_seed(seed))
    for t in scheduler.timesteps:
        x = scheduler.step(peer_forward(net, x, t), t, x).prev_sample
    low, high = value_range
    return (x + 1) / 2 * (high - low) + low


def shuffled_batches(count: int, batch_size: int, generator: torch.Generator):
    """Index batches of a DataLoader with shuffle=True and drop_last=True, epoch after epoch."""
    while True:
        yield from torch.randperm(count, generator=generator)[:count - count % batch_size].split(batch_size)


def save(path: Path, weights: dict, step: int, seconds: float, value_range: tuple[float, float] | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save({"weights": weights, "step": step, "seconds": seconds, "range": value_range}, f)


def train_contender(name: str, mode: str, marks: tuple[float, ...], out_dir: str, threads: int | None):
    """One contender's whole training run (the body of its process)."""
    if threads:
        torch.set_num_threads(threads)
    settings = notebook_settings(mode)
    clips = spectrograms(load_data(settings, keep_audio=False))
    (train_ours if name == "ours" else train_peer)(settings, clips, marks, Path(out_dir))


def scored_mark(settings, name: str, path: Path, reference, n: int, steps: int) -> tuple:
    """The quality report of ``n`` clips from a contender's weights saved at
    a mark (ours through ``quality.evaluate``, the peer through its own
    sampler), and what the mark recorded."""
    saved = torch.load(path, weights_only=True)
    config = settings.model
    model = (DiT if name == "ours" else diffusers_dit)(config)
    model.load_state_dict(saved["weights"])
    model.eval()
    if name == "ours":
        return evaluate(model, DDPMSchedule(), reference, n, steps=steps), saved
    return score(reference, peer_samples(model, config, saved["range"], n, steps), config.patch_size), saved


def minutes_to(rows: list[dict], threshold: float) -> float | None:
    """The first mark at which the FD is at or below ``threshold``."""
    return next((r["minutes"] for r in rows if r["fd"] <= threshold), None)


def run(marks: tuple[float, ...] = (2, 5, 10, 20), threshold: float = 0.3, n: int = 64, steps: int = 50,
        threads: int | None = 1, out_dir: str = "runs/time-to-quality", mode: str = "cpu") -> dict:
    marks = tuple(sorted(marks))
    context = multiprocessing.get_context("spawn")
    untrained = [name for name in CONTENDERS if not mark_path(Path(out_dir), name, marks[-1]).is_file()]
    processes = [context.Process(target=train_contender, args=(name, mode, marks, out_dir, threads))
                 for name in untrained]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    failed = [name for name, p in zip(untrained, processes) if p.exitcode]
    if failed:
        raise RuntimeError(f"training of {failed} failed (see its traceback above)")
    settings = notebook_settings(mode)
    reference = build_reference(settings)
    result = {"benchmark": "time-to-quality", "mode": mode, "threads_each": threads, "marks": marks,
              "threshold": threshold, "n": n, "sample_steps": steps, "contenders": {}}
    for name in CONTENDERS:
        rows = []
        for minutes in marks:
            report, saved = scored_mark(settings, name, mark_path(Path(out_dir), name, minutes), reference, n, steps)
            rows.append({"minutes": minutes, "steps": saved["step"], "seconds": saved["seconds"],
                         "fd": report.fd["features"]["normalised"], "fd_judge": report.fd["judge"]["normalised"]})
        result["contenders"][name] = {"rows": rows, "minutes_to_threshold": minutes_to(rows, threshold)}
    return {**result, **speedup(result)}


def speedup(result: dict) -> dict:
    """How many times sooner ours reaches the threshold; where the peer never
    does within the marks, a lower bound (the last mark over ours)."""
    ours, peer = (result["contenders"][c]["minutes_to_threshold"] for c in CONTENDERS)
    if ours is None:
        return {"speedup": None, "speedup_is_lower_bound": False}
    return {"speedup": (peer or result["marks"][-1]) / ours, "speedup_is_lower_bound": peer is None}


def report(result: dict) -> str:
    lines = [f"time to quality: each contender trains on {result['threads_each']} thread(s), both at once, "
             "for the minutes of CPU time marked; "
             f"normalised FD (features) of {result['n']} DDIM-{result['sample_steps']} clips against held-out songs "
             f"(0 = real, 1 = noise) at each mark of training time",
             f"  {'contender':10s} " + " ".join(f"{m:g} min".rjust(13) for m in result["marks"])
             + f"   minutes to FD <= {result['threshold']:g}"]
    for name, c in result["contenders"].items():
        cells = " ".join(f"{r['fd']:.3f} ({r['steps']})".rjust(13) for r in c["rows"])
        reached = c["minutes_to_threshold"]
        lines.append(f"  {name:10s} {cells}   {'not within the marks' if reached is None else f'{reached:g}'}")
    lines.append("  (in brackets: training steps done by that mark)")
    if result["speedup"] is None:
        lines.append("  speed-up: not measurable (ours did not reach the threshold within the marks)")
    elif result["speedup_is_lower_bound"]:
        lines.append(f"  ours reaches the threshold at least {result['speedup']:.2g}x sooner (diffusers not within "
                     f"{result['marks'][-1]:g} min)")
    else:
        lines.append(f"  ours reaches the threshold {result['speedup']:.2g}x sooner")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 20], help="marks of training time")
    parser.add_argument("--threshold", type=float, default=0.3, help="normalised FD (features) to reach")
    parser.add_argument("--threads-each", type=int, default=1, help="PyTorch threads of each contender's process")
    parser.add_argument("-n", type=int, default=64, help="clips generated and scored per mark")
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--out", default="runs/time-to-quality", help="the contenders' weights at each mark (a "
                                                                      "rerun scores what is there without training)")
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        tuple(args.minutes), args.threshold, args.n, args.sample_steps, args.threads_each, args.out), report)


if __name__ == "__main__":
    main()
