"""Command line: ``python -m musicdiff_nb {prepare,train,sample,bench} --help``.

The defaults train the tiny preset on the demo set in a few minutes on a
laptop CPU:

    python -m musicdiff_nb train --out runs/demo
    python -m musicdiff_nb sample --checkpoint runs/demo/last.pt --out runs/demo/samples
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from . import bench
from .conditioning import label_conditioning, text_conditioning, with_condition
from .data import SPLIT, label_names, load_music_dataset
from .files import atomic_write, check_writable_folder
from .model import DiT, DiTConfig
from .precision import PRECISIONS
from .quality import evaluate_checkpoint
from .sample import sample as sample_clips
from .sample import save_audio
from .schedule import DDPMSchedule
from .settings import notebook_settings
from .spectrogram import SpectrogramConfig
from .train import TrainConfig, check_resume, is_main_process, load_checkpoint, pick_device
from .train import train as train_model

CPU = notebook_settings("cpu")  # the defaults of the main job: the notebooks' CPU settings (docs/quality.md)
PRECISION_HELP = "autocast dtype; auto: bf16 on GPUs of compute capability >= 8.0, fp16 below, fp32 on a CPU"
# --precision's defaults are the library's own
PRECISION_DEFAULTS = {"train": TrainConfig.precision,
                      "sample": inspect.signature(sample_clips).parameters["precision"].default}

# a user's mistake (a setting, a path, a file; data.AudioError is a ValueError), an unreachable hub or a
# diverged run: one line, no traceback (--debug shows it); any other exception is a bug and shows its traceback
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ConnectionError,
               FloatingPointError)


def _data_args(p: argparse.ArgumentParser):
    p.add_argument("--data", default="demo",
                   help="'demo', 'scores', a folder of audio files, or a Hugging Face dataset id")
    p.add_argument("--spectrogram", default="small", choices=["small", "seed"],
                   help="spectrogram preset (small: CPU, seed: GPU)")
    p.add_argument("--representation", default=CPU.representation, choices=["complex", "magnitude", "mel"],
                   help="what the model sees (the seed's: complex; see docs/quality.md)")
    p.add_argument("--compression", type=float, default=None, help="complex: the amplitude exponent (preset: 0.5)")
    p.add_argument("--n-fft", type=int, default=None, help="STFT size (preset's by default; mel needs >= 4 x 128)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (sets the clip length)")
    p.add_argument("--max-songs", type=int, default=None)
    p.add_argument("--max-clips-per-song", type=int, default=CPU.max_clips_per_song, help="0: every clip")
    p.add_argument("--held-out", type=float, default=SPLIT["held_out"],
                   help="share of the songs kept out of training, to score the model against (0: train on all)")


def _spectrogram(args):
    chosen = {k: v for k, v in dict(compression=args.compression, n_fft=args.n_fft, frames=args.frames).items()
              if v is not None}
    return SpectrogramConfig.preset(args.spectrogram, representation=args.representation, **chosen)


def _split(args) -> dict:
    return {"held_out": args.held_out, "split_seed": SPLIT["split_seed"]}


def _load(args, spec):
    return load_music_dataset(args.data, spec, subset="train", **_split(args), max_songs=args.max_songs,
                              max_clips_per_song=args.max_clips_per_song or None, keep_audio=False)


def prepare(args):
    spec = _spectrogram(args)
    ds = _load(args, spec)
    print(f"{len(ds)} clips of {spec.clip_seconds:.2f} s from {len(set(ds['song']))} songs; "
          f"tensor {spec.shape}; labels: {', '.join(label_names(ds)) or '(none)'}; "
          f"cached in {ds.cache_files[0]['filename']}")


def train(args):
    from .viz.figures import plot_loss, save_figure  # matplotlib takes a second: only plotting commands wait
    # bad settings, or a checkpoint of another run in --out, are refused before any song is decoded
    spec = _spectrogram(args)
    patch = {"patch_size": args.patch_size} if args.patch_size else {}
    config = DiTConfig.preset(args.preset, in_channels=spec.channels, input_size=spec.shape[1:],
                              prediction_type=args.prediction_type, **patch)
    schedule = DDPMSchedule(beta_schedule=args.beta_schedule)
    cfg = TrainConfig(steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      ema_decay=args.ema_decay, seed=args.seed, device=args.device, out_dir=args.out,
                      checkpoint_every=args.checkpoint_every, log_every=args.log_every, compile=args.compile,
                      loss_weighting=args.loss_weighting, precision=args.precision,
                      time_limit=60 * args.minutes if args.minutes else None, stream=args.stream)
    pick_device(args.device)
    check_writable_folder(args.out)
    conditioned = args.conditional or args.text
    if not conditioned:  # a conditioned model's size needs the labels: train() checks it after loading
        check_resume(cfg, config, schedule)
    ds = _load(args, spec)  # under torchrun every process loads it; datasets' file lock lets one fill the cache
    labels = label_names(ds) if conditioned else []
    conditioning = (text_conditioning(labels) if args.text else label_conditioning(labels)) if labels else None
    if conditioning is not None:
        ds = with_condition(ds, conditioning)
    torch.manual_seed(args.seed)
    model = DiT(config.replace(cond_dim=conditioning.dim if conditioning else 0), conditioning)
    if is_main_process():
        print(f"training {args.preset} ({model.num_parameters():,} parameters) on {len(ds)} clips -> "
              f"{cfg.checkpoint_path}")
    history = train_model(model, schedule, ds, cfg, metadata={"spectrogram": asdict(spec), "label_names": labels,
                                                                "data": args.data, "split": _split(args)})
    if is_main_process():
        save_figure(plot_loss(history, f"{args.preset} on {args.data}"), Path(args.out) / "loss.png")
        print(f"done: {history.step[-1] if history.step else 0} steps in {history.seconds:.0f} s on {history.device}; "
              f"loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f}; "
              f"wrote {cfg.checkpoint_path} and {Path(args.out) / 'loss.png'}")


def sample(args):
    from .viz.figures import plot_spectrograms, save_figure  # see train()
    if args.n < 1:
        raise ValueError(f"-n {args.n}: ask for at least one clip")
    out = check_writable_folder(args.out)
    ckpt = load_checkpoint(args.checkpoint, device=pick_device(args.device))
    spec = ckpt.spectrogram
    if spec is None:
        raise ValueError(f"{args.checkpoint} carries no spectrogram config, so its samples cannot become audio")
    request = {"prompt": args.prompt} if args.prompt else ({"labels": args.label} if args.label else {})
    if request and ckpt.ema.conditioning is None:
        raise ValueError(f"unknown label(s) or prompt {args.label or args.prompt!r}: this checkpoint knows none "
                         "(unconditional)")
    generator = torch.Generator().manual_seed(args.seed)
    specs = sample_clips(ckpt.ema, ckpt.schedule, args.n, steps=args.steps or None, sampler=args.sampler,
                         eta=args.eta, guidance_scale=args.guidance, generator=generator, progress=True,
                         precision=args.precision, **request)
    wavs = save_audio(specs, spec, out)
    for i, s in enumerate(specs):
        save_figure(plot_spectrograms([s], spec, [f"sample {i} ({args.sampler}, {args.steps or 'all'} steps)"]),
                    out / f"sample_{i:03d}.png")
    print(f"wrote {len(wavs)} WAV files and spectrogram PNGs to {out}")


def evaluate(args):
    steps = args.steps or None  # 0: all timesteps (DDPM)
    report = evaluate_checkpoint(args.checkpoint, args.data, n=args.n, steps=steps, sampler=args.sampler,
                                 seed=args.seed, device=pick_device(args.device))
    print(report.summary())
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "sampler": args.sampler, "steps": steps,
                       **report.to_dict()}, f, indent=1)


class _Parser(argparse.ArgumentParser):
    """A wrong invocation (an unknown option, a value outside its choices) is
    one line too, with where to look instead of the whole usage."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv=None):
    parser = _Parser(prog="python -m musicdiff_nb", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="decode, cut and cache a dataset's clips and spectrograms")
    _data_args(p)
    p.set_defaults(run=prepare)

    p = sub.add_parser("train", help="train a DiT; writes OUT/last.pt and OUT/loss.png (resumes from OUT/last.pt)")
    _data_args(p)
    p.add_argument("--preset", default=CPU.model_preset, help="DiT preset: tiny, small, seed, base, large")
    p.add_argument("--steps", type=int, default=CPU.train_steps)
    p.add_argument("--epochs", type=float, default=None, help="overrides --steps")
    p.add_argument("--batch-size", type=int, default=CPU.batch_size)
    p.add_argument("--lr", type=float, default=CPU.lr)
    p.add_argument("--ema-decay", type=float, default=CPU.ema_decay)
    p.add_argument("--prediction-type", default="sample", choices=["sample", "epsilon", "v_prediction"])
    p.add_argument("--beta-schedule", default="linear", choices=["linear", "cosine"])
    p.add_argument("--loss-weighting", default="none", choices=["none", "min_snr"])
    p.add_argument("--patch-size", type=int, default=None, help="DiT patch size (the preset's by default)")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much training time (a budget "
                                                               "instead of --steps; resumed runs count their time)")
    p.add_argument("--conditional", action="store_true", help="condition on the dataset's labels (multi-hot)")
    p.add_argument("--text", action="store_true",
                   help="condition on the text of the labels, embedded by a sentence encoder (enables --prompt)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--precision", default=PRECISION_DEFAULTS["train"], choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="read the clips from the cache on disk, batch by batch, instead of holding them in memory "
                        "(default: when they take more than half of the available RAM)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo")
    p.set_defaults(run=train)

    p = sub.add_parser("sample", help="generate spectrograms and WAV files from a checkpoint")
    p.add_argument("--checkpoint", default="runs/demo/last.pt")
    p.add_argument("-n", type=int, default=4, help="how many clips")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm", "dpm++"])
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (DDPM: 0 = all timesteps)")
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--label", action="append", help="condition on this label (repeatable)")
    p.add_argument("--prompt", help="generate from this text (a model trained with --text or --conditional)")
    p.add_argument("--guidance", type=float, default=3.0,
                   help="classifier-free guidance scale (with --label or --prompt)")
    p.add_argument("--precision", default=PRECISION_DEFAULTS["sample"], choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo/samples")
    p.set_defaults(run=sample)

    p = sub.add_parser("evaluate", help="score a checkpoint's samples against the real songs its training held out")
    p.add_argument("--checkpoint", default="runs/demo/last.pt")
    p.add_argument("--data", default=None, help="the checkpoint's data by default")
    p.add_argument("-n", type=int, default=64, help="how many clips to generate and score")
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm", "dpm++"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.set_defaults(run=evaluate)

    p = sub.add_parser("bench", help="benchmarks against named peers (diffusers, librosa, DDPM), printed as ratios")
    bench.add_arguments(p)
    p.set_defaults(run=bench.run)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
