"""Sampling: fewer steps at equal quality. From one trained model, each
sampler (DDIM, DPM-Solver++) at a few step counts, DDIM at 50 steps as the
reference and DDPM over all T timesteps as the slow gold standard.

Per contender: **model calls** (one per step: sampled without a condition, so
no classifier-free guidance, which would make two), **seconds per clip**
(noise -> spectrogram, the contenders interleaved by measure.interleaved,
one round per seed) and the **normalised Fréchet distance** against songs
that training held out, on both embeddings (quality.py: 0 = real music,
1 = noise), for each seed and their mean.

Each seed draws its own starting noise (the same for every contender) and
its own halves of the held-out clips, so two seeds show how much the FD
moves when nothing but chance changes:

- the **spread** of a contender is max - min of its normalised FD (features)
  over the seeds;
- the **FD noise** is the larger spread of DDIM-50 and of DDPM-T (DDPM-T
  against DDPM-T from other noise);
- a sampler at k steps is **as good as DDIM-50** when its mean normalised FD
  (features) is at most DDIM-50's mean plus the FD noise (a lower FD is
  never a failure);
- a sampler's **fewest steps** is the smallest k tested from which on every
  tested step count is as good as DDIM-50 (none: not even its most steps
  are), reported with its model calls as a share of DDIM-50's.

DDIM-50 is DDIM at min(50, T) steps. The model is a checkpoint (scored
against the songs its training held out, as recorded in it) or a DiT trained
here on the demo set's training songs (the package's split): the named run
``--run`` (gpu on a GPU, cpu on a CPU) on the complex STFT by default.

Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from musicdiff_nb.config import RunConfig
from musicdiff_nb.data import load_data, spectrograms
from musicdiff_nb.model import DiT
from musicdiff_nb.quality import EMBEDDINGS, build_reference, load_for_scoring, score
from musicdiff_nb.sample import SAMPLERS, sample
from musicdiff_nb.schedule import DDPMSchedule
from musicdiff_nb.train import train

import measure

REFERENCE_STEPS = 50


def contender_name(sampler: str, steps: int) -> str:
    return f"{sampler.upper()}-{steps}"


def demo_model(settings: RunConfig, device: torch.device, steps: int, timesteps: int,
               max_clips_per_song: int | None):
    """The DiT of ``settings`` trained for ``steps`` on its training songs (EMA weights) and its schedule."""
    clips = spectrograms(load_data(settings, "train", max_clips_per_song=max_clips_per_song, keep_audio=False))
    settings = settings.replace(schedule=dict(num_timesteps=timesteps), train=dict(
        steps=steps, batch_size=min(16, len(clips)), lr=1e-3, ema_decay=0.995, log_every=steps,
        checkpoint_every=steps, device=str(device), out_dir=None, progress=False))
    torch.manual_seed(0)
    model, schedule = DiT(settings.model), DDPMSchedule(settings.schedule)
    return train(model, schedule, clips, settings).ema, schedule


def checkpoint_model(path: str, device: torch.device):
    """A checkpoint's EMA model, schedule, and the run to score it as."""
    ckpt, run = load_for_scoring(path, device)
    return ckpt.ema, ckpt.schedule, run


def contenders(samplers: tuple[str, ...], steps: tuple[int, ...], timesteps: int) -> dict[str, dict]:
    """name -> {sampler, steps, model_calls}: every sampler at every step
    count, DDIM-50 (the reference) and DDPM over all timesteps."""
    plan = [(s, k) for s in samplers for k in steps] + [("ddim", min(REFERENCE_STEPS, timesteps)), ("ddpm", timesteps)]
    return {contender_name(s, k): {"sampler": s, "steps": k, "model_calls": k} for s, k in plan}


def drawer(model: DiT, schedule: DDPMSchedule, n: int, sampler: str, steps: int, seeds: list[int],
           device: torch.device, drawn: list):
    """A function that draws ``n`` clips from the next seed's noise into ``drawn`` at each call."""
    def draw():
        generator = torch.Generator(device).manual_seed(seeds[len(drawn)])
        drawn.append(sample(model, schedule, n, steps=steps, sampler=sampler, generator=generator))
    return draw


def spread(row: dict) -> float:
    seeds = row["fd"]["features"]["seeds"]
    return max(seeds) - min(seeds)


def compare(rows: dict[str, dict], samplers: tuple[str, ...], reference: str, ddpm: str) -> dict:
    """The FD noise and each sampler's fewest steps as good as ``reference`` (see the module docstring)."""
    noise = max(spread(rows[reference]), spread(rows[ddpm]))
    limit = rows[reference]["fd"]["features"]["mean"] + noise
    fewest = {}
    for sampler in samplers:
        tested = sorted((row["steps"], row) for row in rows.values() if row["sampler"] == sampler)
        good = [row["fd"]["features"]["mean"] <= limit for _, row in tested]
        first = next((i for i in range(len(tested)) if all(good[i:])), None)
        if first is None:
            fewest[sampler] = None
        else:
            steps, row = tested[first]
            fewest[sampler] = {"steps": steps, "model_calls": row["model_calls"],
                               "calls_vs_reference": row["model_calls"] / rows[reference]["model_calls"]}
    return {"reference": reference, "ddpm": ddpm, "fd_noise": noise, "as_good_below": limit, "fewest_steps": fewest}


def quality_figures(reports: list) -> dict:
    """Normalised FD per embedding, its mean over the seeds and each seed's."""
    figures = {}
    for embedding in EMBEDDINGS:
        seeds = [r.fd[embedding]["normalised"] for r in reports]
        figures[embedding] = {"mean": sum(seeds) / len(seeds), "seeds": seeds}
    return figures


def draw_timed(model: DiT, schedule: DDPMSchedule, plan: dict[str, dict], clips: int, seeds: list[int],
               device: torch.device) -> tuple[dict[str, list], dict[str, list[float]]]:
    """Each contender's clips for each seed and the seconds each draw took:
    one round per seed, the contenders interleaved (measure.interleaved)."""
    # untimed: the first model call on a GPU pays for kernel selection and caches
    sample(model, schedule, clips, steps=2, sampler="ddim", generator=torch.Generator(device).manual_seed(0))
    drawn = {name: [] for name in plan}
    draws = {name: drawer(model, schedule, clips, c["sampler"], c["steps"], seeds, device, drawn[name])
             for name, c in plan.items()}
    times = measure.interleaved(draws, device, repeats=len(seeds), warmup=0)
    return drawn, times


def run(device: torch.device, settings: RunConfig, checkpoint: str | None = None,
        clips: int = 64, steps: tuple[int, ...] = (5, 10, 15, 25, 50), samplers: tuple[str, ...] = ("ddim", "dpm++"),
        train_steps: int = 400, timesteps: int = 1000, seeds: tuple[int, ...] = (0, 1),
        max_clips_per_song: int | None = 30) -> dict:
    if len(seeds) < 2:
        raise ValueError(f"seeds={list(seeds)}: give two or more, the FD noise is their spread")
    if checkpoint:
        model, schedule, scored_as = checkpoint_model(checkpoint, device)
        description = f"checkpoint {checkpoint}"
    else:
        model, schedule = demo_model(settings, device, train_steps, timesteps, max_clips_per_song)
        scored_as = settings
        description = (f"a DiT of {model.num_parameters() / 1e6:.2f} M parameters trained {train_steps} steps on the "
                       "demo set's training songs")
    model, seeds = model.to(device).eval(), list(seeds)
    plan = contenders(samplers, steps, schedule.num_timesteps)
    drawn, times = draw_timed(model, schedule, plan, clips, seeds, device)

    real_music = build_reference(scored_as)
    ddpm = contender_name("ddpm", schedule.num_timesteps)
    rows = {}
    for name, c in plan.items():
        reports = [score(real_music, specs.cpu(), model.config.patch_size, seed)
                   for specs, seed in zip(drawn[name], seeds)]
        rows[name] = {**c, "seconds": times[name], "seconds_per_clip": measure.median(times[name]) / clips,
                      "speedup_vs_ddpm": measure.median(times[ddpm]) / measure.median(times[name]),
                      "fd": quality_figures(reports), "quality": [r.to_dict() for r in reports]}
    reference = contender_name("ddim", min(REFERENCE_STEPS, schedule.num_timesteps))
    return {"benchmark": "sampling", "model": description, "data": scored_as.data.source,
            "split": {k: getattr(scored_as.data, k) for k in ("held_out", "split_seed")}, "clips": clips,
            "scored_clips": rows[ddpm]["quality"][0]["n"], "seeds": seeds, "samplers": list(samplers),
            "spectrogram": asdict(scored_as.spectrogram), "contenders": rows,
            **compare(rows, samplers, reference, ddpm)}


def figure_data(result: dict) -> tuple[dict, dict, float]:
    """``viz.plot_sampler_quality``'s arguments from a result: each
    sampler's FD by steps, DDIM-50 and DDPM as levels, and the FD noise."""
    rows = result["contenders"]
    curves = {s: {row["steps"]: row["fd"]["features"]["mean"] for row in rows.values() if row["sampler"] == s}
              for s in result["samplers"]}
    levels = {name: rows[name]["fd"]["features"]["mean"] for name in (result["reference"], result["ddpm"])}
    return curves, levels, result["fd_noise"]


def report(result: dict) -> str:
    rows, reference = result["contenders"], result["reference"]
    seeds = " ".join(str(s) for s in result["seeds"])
    lines = [f"sampling {result['clips']} clips of {result['spectrogram']['frames']} frames from {result['model']}; "
             f"normalised FD against {result['scored_clips']} held-out clips per seed (0 = real, 1 = noise), "
             f"mean [seeds {seeds}]",
             f"  {'contender':10s} {'calls':>5s} {'s per clip':>10s} {'vs DDPM':>8s}   {'FD features':22s} FD judge"]
    for name, row in rows.items():
        fd = "   ".join(f"{row['fd'][e]['mean']:6.3f} [{' '.join(f'{v:.3f}' for v in row['fd'][e]['seeds'])}]"
                       for e in EMBEDDINGS)
        lines.append(f"  {name:10s} {row['model_calls']:5d} {row['seconds_per_clip']:10.4f} "
                     f"{row['speedup_vs_ddpm']:7.1f}x   {fd}")
    lines.append(f"  FD noise (features): {result['fd_noise']:.3f}, the larger spread over the seeds of {reference} "
                 f"({spread(rows[reference]):.3f}) and {result['ddpm']} ({spread(rows[result['ddpm']]):.3f}); as good "
                 f"as {reference}: FD features <= {result['as_good_below']:.3f}")
    for sampler, fewest in result["fewest_steps"].items():
        if fewest is None:
            lines.append(f"  {sampler.upper():6s} not as good as {reference} at any step count tested")
        else:
            lines.append(f"  {sampler.upper():6s} fewest steps as good as {reference}: {fewest['steps']} "
                         f"({fewest['model_calls']} model calls = {fewest['calls_vs_reference']:.2f}x {reference}'s)")
    train_fd = {e: rows[reference]["quality"][0]["fd"][e]["train_normalised"] for e in EMBEDDINGS}
    lines.append(f"  real clips of the training songs: FD features {train_fd['features']:.3f}, judge "
                 f"{train_fd['judge']:.3f} (a perfect copy of the training data, seed {result['seeds'][0]})")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser, run=None)
    parser.add_argument("--checkpoint", default=None, help="sample from this checkpoint instead")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--timesteps", type=int, default=1000, help="the DDPM schedule's length")
    parser.add_argument("--clips", type=int, default=64, help="clips per contender and seed")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 25, 50])
    parser.add_argument("--samplers", nargs="+", default=["ddim", "dpm++"], choices=SAMPLERS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="one timed round each: its starting noise and its halves of the held-out clips")
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        device, measure.chosen_run(args, device), args.checkpoint, args.clips, tuple(args.steps),
        tuple(args.samplers), args.train_steps, args.timesteps, tuple(args.seeds)), report)


if __name__ == "__main__":
    main()
