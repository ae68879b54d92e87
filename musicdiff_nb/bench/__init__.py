"""Benchmarks: our code against a named peer, measured in one run on one
machine, printed as ratios (``python -m musicdiff_nb bench --help``).

- ``train-step``: training step throughput of our DiT vs diffusers' DiT;
- ``preprocess``: audio -> model spectrograms vs librosa.stft;
- ``sampling``: DDIM and DPM-Solver++ at few steps vs DDIM-50 and DDPM at
  1000: time and quality (normalised FD against held-out songs);
- ``seed-workload``: the seed's 5 epochs over 710 songs, time and memory;
- ``fast-path``: each fast-path choice vs the alternative it replaced;
- ``quality``: sample quality after the same minutes of training, per
  variant (representation, target, loss weighting, schedule, model, ...) vs
  the seed's choices;
- ``profile``: where a training step's time goes, by kind of operator,
  eager vs compiled;
- ``streaming``: training from disk vs from memory: peak resident memory at
  1x, 4x, 16x the demo set, and steps/s;
- ``time-to-quality``: minutes of training to a quality threshold, our CPU
  defaults vs a diffusers training pipeline.
"""

from __future__ import annotations

import argparse
import json

import torch

from ..files import atomic_write
from ..model import DiTConfig
from ..processes import pick_device
from ..sample import SAMPLERS
from ..spectrogram import SpectrogramConfig
from . import (
    fast_path,
    measure,
    preprocess,
    profile,
    quality,
    sampling,
    seed_workload,
    streaming,
    time_to_quality,
    train_step,
)

BENCHMARKS = {"train-step": train_step, "preprocess": preprocess, "sampling": sampling,
              "seed-workload": seed_workload, "fast-path": fast_path, "quality": quality, "streaming": streaming,
              "time-to-quality": time_to_quality, "profile": profile}


def add_arguments(parser: argparse.ArgumentParser):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto")
    common.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's)")
    common.add_argument("--json", default=None, help="also write the figures to this JSON file")
    sub = parser.add_subparsers(dest="benchmark", required=True)

    p = sub.add_parser("train-step", parents=[common], help="training step throughput: our DiT vs diffusers' DiT")
    p.add_argument("--preset", default="seed", help="DiT preset (its spectrogram must be square for diffusers)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on a GPU, 8 on a CPU")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA")
    p.add_argument("--compile", action="store_true", help="also time both models under torch.compile")
    p.add_argument("--repeats", type=int, default=5)

    p = sub.add_parser("preprocess", parents=[common], help="audio -> model spectrograms vs librosa.stft")
    p.add_argument("--spectrogram", default="seed", choices=["seed", "small"])
    p.add_argument("--data", default="demo", help="'demo' or a folder of audio files")
    p.add_argument("--songs", type=int, default=10)
    p.add_argument("--max-clips-per-song", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)

    p = sub.add_parser("sampling", parents=[common], help="samplers at few steps vs DDIM-50 and DDPM-1000: "
                                                          "time and quality")
    p.add_argument("--preset", default=None, help="DiT preset trained on the demo set's training songs (default: "
                                                  "seed on a GPU, tiny on a CPU)")
    p.add_argument("--checkpoint", default=None, help="sample from this checkpoint instead")
    p.add_argument("--train-steps", type=int, default=400)
    p.add_argument("--timesteps", type=int, default=1000, help="the DDPM schedule's length")
    p.add_argument("--clips", type=int, default=64, help="clips per contender and seed")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 25, 50])
    p.add_argument("--samplers", nargs="+", default=["ddim", "dpm++"], choices=SAMPLERS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="one timed round each: its starting noise and its halves of the held-out clips")

    p = sub.add_parser("seed-workload", parents=[common], help="5 epochs over 710 songs, seed preset")
    p.add_argument("--steps", type=int, default=None, help="time this many steps and project the rest "
                                                           "(default: all on a GPU, 10 on a CPU)")
    p.add_argument("--batch-size", type=int, default=seed_workload.SEED_BATCH)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--preset", default="seed", help="DiT preset (seed: the seed's workload)")
    p.add_argument("--data", default="scores", choices=["scores", "demo"], help="where the songs come from")
    p.add_argument("--sample-songs", type=int, default=16,
                   help="songs loaded to count clips per song, repeated to 710 songs' worth (710: all of them)")

    p = sub.add_parser("fast-path", parents=[common], help="each fast-path choice vs the alternative it replaced")
    p.add_argument("--preset", default="seed", help="DiT preset")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on a GPU, 8 on a CPU")
    p.add_argument("--repeats", type=int, default=7)

    p = sub.add_parser("quality", parents=[common], help="sample quality after the same minutes of training, "
                                                         "per variant, vs the seed's choices")
    p.add_argument("--variants", nargs="+", default=list(quality.VARIANTS),
                   help="some of: " + ", ".join(quality.VARIANTS))
    p.add_argument("--minutes", type=float, default=10.0, help="training budget of every variant (wall clock)")
    p.add_argument("-n", type=int, default=64, help="clips generated and scored per variant")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--out", default="runs/quality", help="checkpoints, one folder per variant (run again with "
                                                         "more --minutes to continue them)")

    p = sub.add_parser("streaming", parents=[common], help="training from disk vs from memory: peak resident "
                                                           "memory at 1x, 4x, 16x the demo set, and steps/s")
    p.add_argument("--preset", default=None, help="DiT preset (default: the notebooks' CPU run's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the notebooks' CPU run's")
    p.add_argument("--steps", type=int, default=60, help="training steps per run")
    p.add_argument("--sizes", type=int, nargs="+", default=list(streaming.SIZES),
                   help="data set sizes in multiples of the demo set (the first also trains in memory)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each path at the first size, alternating")
    p.add_argument("--songs", type=int, default=None, help="demo songs (default: all 10)")
    p.add_argument("--max-clips-per-song", type=int, default=None, help="default: every clip")


    p = sub.add_parser("profile", parents=[common], help="where a training step's time goes (torch.profiler)")
    p.add_argument("--preset", default="seed", help="DiT preset")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on a GPU, 8 on a CPU")
    p.add_argument("--compile", action="store_true", help="also profile the step under torch.compile")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="autocast dtype (auto: bf16 on CUDA, fp32 on a CPU); the peak is timed in it")
    p.add_argument("--repeats", type=int, default=5)
    p = sub.add_parser("time-to-quality", parents=[common], help="minutes of training to a quality threshold, "
                                                                 "our CPU defaults vs a diffusers pipeline")
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 20], help="marks of training time")
    p.add_argument("--threshold", type=float, default=0.3, help="normalised FD (features) to reach")
    p.add_argument("--threads-each", type=int, default=1, help="PyTorch threads of each contender's process")
    p.add_argument("-n", type=int, default=64, help="clips generated and scored per mark")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--out", default="runs/time-to-quality", help="the contenders' weights at each mark (a rerun "
                                                                   "scores what is there without training)")


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    machine = measure.machine(device)
    if args.benchmark == "train-step":
        config, _ = model_and_spectrogram(args.preset)
        result = train_step.run(config, device, args.batch_size or (64 if gpu else 8), args.precision,
                                args.compile, args.repeats)
    elif args.benchmark == "preprocess":
        result = preprocess.run(SpectrogramConfig.preset(args.spectrogram), args.data, args.songs,
                                args.max_clips_per_song, args.repeats)
    elif args.benchmark == "sampling":
        config, spec = model_and_spectrogram(args.preset or ("seed" if gpu else "tiny"))
        result = sampling.run(device, config, spec, args.checkpoint, args.clips, tuple(args.steps),
                              tuple(args.samplers), args.train_steps, args.timesteps, tuple(args.seeds))
    elif args.benchmark == "quality":
        result = quality.run(args.variants, args.minutes, args.out, args.n, args.sample_steps, args.json)
    elif args.benchmark == "profile":
        config, _ = model_and_spectrogram(args.preset)
        result = profile.run(config, device, args.batch_size or (64 if gpu else 8), args.compile, args.repeats,
                             args.precision)
    elif args.benchmark == "time-to-quality":
        result = time_to_quality.run(tuple(args.minutes), args.threshold, args.n, args.sample_steps,
                                     args.threads_each, args.out)
    elif args.benchmark == "streaming":
        result = streaming.run(None, args.preset, args.batch_size, args.steps, tuple(args.sizes), args.repeats,
                               args.threads, args.songs, args.max_clips_per_song)
    elif args.benchmark == "fast-path":
        config, spec = model_and_spectrogram(args.preset)
        result = fast_path.run(device, config, spec, args.batch_size or (64 if gpu else 8), args.repeats)
    else:
        config, spec = model_and_spectrogram(args.preset)
        result = seed_workload.run(device, config, spec, args.steps or (None if gpu else 10), args.batch_size,
                                   source=args.data, sample_songs=args.sample_songs, compile=args.compile)
    result["machine"] = {**machine, "load_average_after": measure.machine(device)["load_average"]}
    print(_header(result["machine"]))
    print(BENCHMARKS[args.benchmark].report(result))
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m musicdiff_nb bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def model_and_spectrogram(preset: str) -> tuple[DiTConfig, SpectrogramConfig]:
    """A DiT preset and the spectrogram preset of its input size."""
    config = DiTConfig.preset(preset)
    spec = SpectrogramConfig.preset("small" if config.input_size == (128, 128) else "seed")
    return config.replace(in_channels=spec.channels, input_size=spec.shape[1:]), spec


def _header(machine: dict) -> str:
    return (f"{machine['date']}, device {machine['device']}; CPU {machine['cpu']}, {machine['cores']} cores, "
            f"{machine['threads']} PyTorch threads; torch {machine['torch']}; load average "
            f"{machine['load_average']} -> {machine['load_average_after']}")


__all__ = ["BENCHMARKS", "add_arguments", "main", "run", "measure"]
