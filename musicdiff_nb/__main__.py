"""Command line: ``python -m musicdiff_nb {prepare,train,sample,interpolate,evaluate} --help``
(the benchmarks are scripts beside the package: ``python benchmarks/NAME.py --help``).

The defaults train the tiny DiT on the demo set in a few minutes on a laptop
CPU (the run ``RunConfig()`` declares); ``--run NAME`` starts from another
named run (``config.RUNS``) and every field of the run is an option:

    python -m musicdiff_nb train --out runs/demo
    python -m musicdiff_nb sample --checkpoint runs/demo/last.pt --out runs/demo/samples
    python -m musicdiff_nb train --run seed --batch-size 64 --out runs/seed
    python -m musicdiff_nb sample --checkpoint runs/demo/last.pt --seconds 30   # longer: window after window
    python -m musicdiff_nb train --print-config > run.yaml   # edit, then
    python -m musicdiff_nb train --config run.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import typing
from pathlib import Path

import soundfile as sf
import torch

from . import editing
from .checkpoint import check_resume, load_checkpoint
from .conditioning import build_conditioning, with_condition
from .config import CONDITIONINGS, LOSS_WEIGHTINGS, RUNS, SAMPLERS, SECTIONS, RunConfig, SampleConfig
from .data import label_names, load_data
from .files import atomic_write, check_writable_folder
from .model import DiT
from .precision import PRECISIONS
from .processes import is_main_process, pick_device
from .quality import build_reference, load_for_scoring
from .quality import evaluate as score_model
from .sample import sample as sample_clips
from .sample import save_audio
from .schedule import BETA_SCHEDULES, PREDICTION_TYPES, DDPMSchedule
from .spectrogram import REPRESENTATIONS, SpectrogramConfig, to_spectrogram
from .train import train as train_model

DEFAULT_RUN = "cpu"  # the main job (docs/quality.md): every option's default is its field in this run
RUN = RUNS[DEFAULT_RUN]
DEFAULT_OUT = Path("runs/demo")
SCORED_CLIPS = 64  # evaluate's default -n: the clips docs/quality.md scores
PRECISION_DEFAULT = inspect.signature(sample_clips).parameters["precision"].default  # sample's: the library's
PRECISION_HELP = "autocast dtype; auto: bf16 on GPUs of compute capability >= 8.0, fp16 below, fp32 on a CPU"

# a user's mistake (a setting, a path, a file; data.AudioError is a ValueError), an unreachable hub or a
# diverged run: one line, no traceback (--debug shows it); any other exception is a bug and shows its traceback
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ConnectionError,
               FloatingPointError)

# -- options made from the run's fields ------------------------------------------------------------------------
# --data and --out are shorter than --source and --out-dir; the model's input size and channels follow the
# spectrogram, its cond_dim the conditioning, so they are no options
OPTION_NAMES = {"source": "--data", "out_dir": "--out"}
NOT_OPTIONS = {"input_size", "in_channels", "cond_dim"}
CHOICES = {"representation": REPRESENTATIONS, "prediction_type": PREDICTION_TYPES, "beta_schedule": BETA_SCHEDULES,
           "loss_weighting": LOSS_WEIGHTINGS, "precision": PRECISIONS, "sampler": SAMPLERS}
HELP = {
    "source": "'demo', 'scores', a folder of audio files, or a Hugging Face dataset id",
    "representation": "what the model sees (the seed's: complex; see docs/quality.md)",
    "compression": "complex: the amplitude exponent",
    "n_fft": "STFT size (mel needs n_fft >= 4 x n_mels)",
    "frames": "frames per clip (sets the clip length)",
    "held_out": "share of the songs kept out of training, to score the model against (0: train on all)",
    "epochs": "overrides --steps",
    "time_limit": "seconds of training, then stop (a budget instead of --steps; resumed runs count their time)",
    "precision": PRECISION_HELP,
    "compile": "torch.compile the model",
    "stream": "read the clips from the cache on disk, batch by batch, instead of holding them in memory "
              "(none: when they take more than half of the available RAM)",
    "out_dir": "writes OUT/last.pt (resumed from when it exists), OUT/run.yaml and OUT/loss.png",
}


def _parse(kind):
    """The argparse type of a field's annotation; "none" stands for None where the field allows it."""
    optional = type(None) in typing.get_args(kind)
    base = next((k for k in typing.get_args(kind) if k is not type(None)), kind)

    def parse(text: str):
        return None if optional and text.lower() == "none" else base(text)
    parse.__name__ = base.__name__  # what argparse names in "invalid int value"
    return parse


def add_section_options(parser: argparse.ArgumentParser, section: str, only=None):
    """One option per field of RunConfig's ``section`` (e.g. ``--batch-size`` for
    ``train.batch_size``), or per field named in ``only``; given ones land in
    ``args`` as ``"section.field"``."""
    kind = SECTIONS[section]
    hints = typing.get_type_hints(kind)
    group = parser.add_argument_group(f"{section} ({kind.__name__})")
    for f in dataclasses.fields(kind):
        if f.name in NOT_OPTIONS or (only is not None and f.name not in only):
            continue
        default = DEFAULT_OUT if f.name == "out_dir" else getattr(getattr(RUN, section), f.name)
        help_text = f"{HELP.get(f.name, '')} (default: {default})".strip()
        option = OPTION_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        common = dict(dest=f"{section}.{f.name}", default=argparse.SUPPRESS, help=help_text)
        if hints[f.name] in (bool, bool | None):
            group.add_argument(option, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(hints[f.name]) is tuple:
            group.add_argument(option, type=int, nargs="+", **common)
        else:
            group.add_argument(option, type=_parse(hints[f.name]), choices=CHOICES.get(f.name),
                               metavar=f.name.upper() if f.name not in CHOICES else None, **common)


def given(args, section: str) -> dict:
    """The fields of ``section`` set on the command line."""
    prefix = f"{section}."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _named_runs() -> str:
    """The named runs, one line each, for --help."""
    lines = []
    for name, run in RUNS.items():
        spec, m, t = run.spectrogram, run.model, run.train
        lines.append(f"  {name:18s} {spec.representation} {' x '.join(map(str, spec.shape))}; DiT of {m.depth} blocks "
                     f"x {m.num_heads} heads, width {m.hidden_size}, {m.patch_size} x {m.patch_size} patches; "
                     f"{t.steps} steps of batch {t.batch_size} on {run.data.source!r}"
                     + (f", conditioned on {run.conditioning}" if run.conditioning != "none" else ""))
    return "named runs (--run NAME, from config.RUNS):\n" + "\n".join(lines)


def _run_options(p: argparse.ArgumentParser, sections):
    start = p.add_mutually_exclusive_group()
    start.add_argument("--run", dest="run_name", choices=RUNS, default=DEFAULT_RUN, metavar="NAME",
                       help=f"start from this named run (listed below; default: {DEFAULT_RUN}, whose settings are "
                            "the defaults shown); the options given override it")
    start.add_argument("--config", help="start from this run (YAML or JSON, e.g. a run.yaml that train wrote)")
    p.epilog = _named_runs()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    for section in sections:
        add_section_options(p, section)


def run_config(args) -> RunConfig:
    """The run the command line declares: ``--config`` or ``--run``, then each option given."""
    run = RunConfig.load(args.config) if args.config else RUNS[args.run_name]
    spec = given(args, "spectrogram")
    representation = spec.pop("representation", run.spectrogram.representation)
    spectrogram = dataclasses.replace(run.spectrogram.with_representation(representation), **spec)
    out = given(args, "train")
    if not (out.get("out_dir") or run.train.out_dir):
        out["out_dir"] = str(DEFAULT_OUT)
    return run.replace(spectrogram=spectrogram, model=given(args, "model"), schedule=given(args, "schedule"),
                       train=out, data=given(args, "data"),
                       **({"conditioning": args.conditioning} if "conditioning" in args else {}))


def prepare(args):
    run = run_config(args)
    ds = load_data(run, keep_audio=False)
    spec = run.spectrogram
    print(f"{len(ds)} clips of {spec.clip_seconds:.2f} s from {len(set(ds['song']))} songs; "
          f"tensor {spec.shape}; labels: {', '.join(label_names(ds)) or '(none)'}; "
          f"cached in {ds.cache_files[0]['filename']}")


def train(args):
    from .viz.figures import plot_loss, save_figure  # matplotlib takes a second: only plotting commands wait
    # bad settings, or a checkpoint of another run in --out, are refused before any song is decoded
    run = run_config(args)
    if args.print_config:
        print(run.dumps(), end="")
        return
    cfg, out = run.train, Path(run.train.out_dir)
    pick_device(cfg.device)
    check_writable_folder(out)
    check_resume(run.to_dict(), cfg)
    ds = load_data(run, keep_audio=False)  # under torchrun every process loads it; a file lock lets one fill the cache
    conditioning = build_conditioning(run, label_names(ds))
    if conditioning is not None:
        ds = with_condition(ds, conditioning)
    torch.manual_seed(cfg.seed)
    model = DiT(run.model, conditioning)
    if is_main_process():
        with atomic_write(out / "run.yaml", "w") as f:
            f.write(run.dumps())
        print(f"training a DiT of {model.num_parameters():,} parameters on {len(ds)} clips -> {cfg.checkpoint_path}")
    history = train_model(model, DDPMSchedule(run.schedule), ds, run).history
    if is_main_process():
        save_figure(plot_loss(history, f"DiT on {run.data.source}"), out / "loss.png")
        print(f"done: {history.step[-1] if history.step else 0} steps in {history.seconds:.0f} s on {history.device}; "
              f"loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f}; "
              f"wrote {cfg.checkpoint_path}, {out / 'run.yaml'} and {out / 'loss.png'}")


def _sample_settings(args, ckpt) -> SampleConfig:
    """The checkpoint's run's sampling settings, with the options given."""
    chosen = ckpt.run.sample if ckpt.run else SampleConfig()
    return dataclasses.replace(chosen, **given(args, "sample"))


def read_audio(path, spec: SpectrogramConfig) -> torch.Tensor:
    """A mono audio file at the model's sample rate, at least one window long, as a waveform [samples]."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise ValueError(f"cannot read {path} as audio ({e}): give a WAV, FLAC or OGG file") from None
    if rate != spec.sample_rate:
        raise ValueError(f"{path} is at {rate} Hz, this model at {spec.sample_rate} Hz: resample it first, "
                         f"e.g. `sox {path} -r {spec.sample_rate} resampled.wav`")
    if len(wave) < spec.clip_samples:
        raise ValueError(f"{path} is {len(wave) / rate:.2f} s long: give at least {spec.clip_seconds:.2f} s "
                         "(one window of the model)")
    return torch.from_numpy(wave.mean(axis=1))


def _check_edit(args):
    """Refuse a wrong combination of the editing options before anything is loaded."""
    chosen = [name for name, value in (("--seconds", args.seconds), ("--init", args.init), ("--inpaint", args.inpaint))
              if value is not None]
    if len(chosen) > 1:
        raise ValueError(f"{' and '.join(chosen)}: choose one of them")
    if not 0 <= args.strength <= 1:
        raise ValueError(f"--strength {args.strength}: use a value in [0, 1] (0 returns the clip, 1 ignores it)")
    if args.seconds is not None and args.seconds <= 0:
        raise ValueError(f"--seconds {args.seconds}: ask for a positive length, e.g. --seconds 30")
    if args.loop and args.seconds is None:
        raise ValueError("--loop needs --seconds: the length of the loop, e.g. --seconds 8 --loop")
    if args.inpaint and (args.start is None or args.end is None):
        raise ValueError("--inpaint needs --start and --end: the span to generate anew, in seconds")


def _inpaint_window(args, wave: torch.Tensor, spec: SpectrogramConfig) -> tuple[int, int, int]:
    """The first frame of the model's window around the span, and the span's frames in it."""
    seconds, window = len(wave) / spec.sample_rate, spec.frames
    if not 0 <= args.start < args.end <= seconds:
        raise ValueError(f"--start {args.start} --end {args.end}: outside {args.inpaint} ({seconds:.2f} s long); "
                         f"choose 0 <= start < end <= {seconds:.2f}")
    first, last = (round(s * spec.sample_rate / spec.hop_length) for s in (args.start, args.end))
    if last - first > window // 2:
        raise ValueError(f"--start {args.start} --end {args.end}: a span of at most {spec.clip_seconds / 2:.2f} s "
                         "(half the model's window, so that the other half is context)")
    frames = 1 + len(wave) // spec.hop_length
    offset = min(max(0, (first + last - window) // 2), frames - window)
    return offset, first - offset, last - offset


def sample(args):
    from .viz.figures import plot_spectrograms, save_figure  # see train()
    if args.n < 1:
        raise ValueError(f"-n {args.n}: ask for at least one clip")
    _check_edit(args)
    out = check_writable_folder(args.out)
    ckpt = load_checkpoint(args.checkpoint, device=pick_device(args.device))
    spec = ckpt.spectrogram
    if spec is None:
        raise ValueError(f"{args.checkpoint} carries no spectrogram config, so its samples cannot become audio")
    request = {"prompt": args.prompt} if args.prompt else ({"labels": args.label} if args.label else {})
    if request and ckpt.ema.conditioning is None:
        raise ValueError(f"unknown label(s) or prompt {args.label or args.prompt!r}: this checkpoint knows none "
                         "(unconditional)")
    how = _sample_settings(args, ckpt)
    generator = torch.Generator().manual_seed(args.seed)
    steps = how.steps
    model, schedule = ckpt.ema, ckpt.schedule
    common = dict(steps=steps, sampler=how.sampler, eta=how.eta, guidance_scale=how.guidance_scale,
                  generator=generator, precision=args.precision, **request)
    if args.seconds is not None:
        frames = 1 + round(args.seconds * spec.sample_rate) // spec.hop_length
        make = editing.loop if args.loop else editing.continuation
        specs, what = make(model, schedule, frames, args.n, **common), "loop" if args.loop else "piece"
    elif args.init is not None:
        clip = to_spectrogram(read_audio(args.init, spec)[:spec.clip_samples], spec)
        specs = editing.variation(model, schedule, clip.expand(args.n, -1, -1, -1), args.strength, **common)
        what = "variation"
    elif args.inpaint is not None:
        wave = read_audio(args.inpaint, spec)
        offset, first, last = _inpaint_window(args, wave, spec)
        whole = to_spectrogram(wave, spec).expand(args.n, -1, -1, -1).clone()
        window = whole[..., offset:offset + spec.frames]
        whole[..., offset:offset + spec.frames] = editing.inpaint(model, schedule, window,
                                                                 editing.time_mask(window, first, last), **common)
        specs, what = whole, "inpainted"
    else:
        specs = sample_clips(model, schedule, args.n, steps=steps, sampler=how.sampler, eta=how.eta,
                             guidance_scale=how.guidance_scale, generator=generator, progress=True,
                             precision=args.precision, **request)
        what = "sample"
    wavs = save_audio(specs, spec, out, prefix=what)
    for i, s in enumerate(specs):
        save_figure(plot_spectrograms([s], spec, [f"{what} {i} ({how.sampler}, {steps} steps)"]),
                    out / f"{what}_{i:03d}.png")
    print(f"wrote {len(wavs)} WAV files and spectrogram PNGs to {out}")


def _noise_of(source: str, ckpt, steps: int) -> torch.Tensor:
    """The noise [C, F, T] behind ``source``: an integer is a seed, anything else an audio file, DDIM-inverted."""
    spec, model = ckpt.spectrogram, ckpt.ema
    if source.lstrip("-").isdigit():
        shape = (model.config.in_channels, *model.config.input_size)
        return torch.randn(shape, generator=torch.Generator().manual_seed(int(source)))
    clip = to_spectrogram(read_audio(source, spec)[:spec.clip_samples], spec)
    return editing.invert(model, ckpt.schedule, clip, steps)[0].cpu()


def interpolate(args):
    from .viz.figures import plot_spectrograms, save_figure  # see train()
    if args.frames < 2:
        raise ValueError(f"--frames {args.frames}: an interpolation needs at least 2 (its two ends)")
    out = check_writable_folder(args.out)
    ckpt = load_checkpoint(args.checkpoint, device=pick_device(args.device))
    spec = ckpt.spectrogram
    noises = [_noise_of(source, ckpt, args.steps) for source in (args.a, args.b)]
    specs = editing.interpolate(ckpt.ema, ckpt.schedule, *noises, frames=args.frames, steps=args.steps)
    wavs = save_audio(specs, spec, out, prefix="interpolation")
    titles = [f"{i / (args.frames - 1):.2f} of the way" for i in range(args.frames)]
    save_figure(plot_spectrograms(specs, spec, titles), out / "interpolation.png")
    print(f"wrote {len(wavs)} WAV files and interpolation.png to {out}")


def evaluate(args):
    """Score the checkpoint's EMA model against the songs its run held out and its training songs
    (``--data``: another source's); the summary prints both comparisons."""
    if args.n < 2:
        raise ValueError(f"-n {args.n}: scoring compares distributions, generate at least 2 clips")
    ckpt, run = load_for_scoring(args.checkpoint, pick_device(args.device))
    how = _sample_settings(args, ckpt)
    reference = build_reference(run.replace(data=dict(source=args.data)) if args.data else run)
    report = score_model(ckpt.ema, ckpt.schedule, reference, n=args.n, steps=how.steps, sampler=how.sampler,
                         seed=args.seed)
    print(report.summary())
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "sampler": how.sampler, "steps": how.steps, "n": args.n,
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
    _run_options(p, ["spectrogram", "data"])
    p.set_defaults(run=prepare)

    p = sub.add_parser("train", help="train a DiT; writes OUT/last.pt, OUT/run.yaml and OUT/loss.png "
                                     "(resumes from OUT/last.pt)")
    p.add_argument("--print-config", action="store_true",
                   help="print the run these options declare (YAML, for --config) and exit")
    p.add_argument("--conditioning", choices=CONDITIONINGS, default=argparse.SUPPRESS,
                   help="labels: the dataset's labels (multi-hot); text: the text of the labels, embedded by a "
                        f"sentence encoder (enables sample --prompt) (default: {RUN.conditioning})")
    _run_options(p, ["spectrogram", "model", "schedule", "train", "data"])
    p.set_defaults(run=train)

    p = sub.add_parser("sample", help="generate spectrograms and WAV files from a checkpoint")
    p.add_argument("--checkpoint", default=str(DEFAULT_OUT / "last.pt"))
    p.add_argument("-n", type=int, default=4, help="how many clips")
    add_section_options(p, "sample")
    p.add_argument("--label", action="append", help="condition on this label (repeatable)")
    p.add_argument("--prompt", help="generate from this text (a model trained with --conditioning text or labels)")
    p.add_argument("--precision", default=PRECISION_DEFAULT, choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DEFAULT_OUT / "samples"))
    edit = p.add_argument_group("editing (one of --seconds, --init, --inpaint)")
    edit.add_argument("--seconds", type=float, help="pieces of this length, window after window, each starting "
                                                    "with the end of the one before (about half a window)")
    edit.add_argument("--loop", action="store_true", help="with --seconds: a piece whose end leads into its start")
    edit.add_argument("--init", metavar="FILE", help="variations of the first window of this audio file")
    edit.add_argument("--strength", type=float, default=0.6,
                      help="with --init: how much of the clip to noise away, 0 (none) .. 1 (all) (default: 0.6)")
    edit.add_argument("--inpaint", metavar="FILE", help="this audio file with --start .. --end generated anew")
    edit.add_argument("--start", type=float, help="with --inpaint: where the span starts (s)")
    edit.add_argument("--end", type=float, help="with --inpaint: where the span ends (s)")
    p.set_defaults(run=sample)

    p = sub.add_parser("interpolate", help="spectrograms and WAV files on the way between two clips or two seeds")
    p.add_argument("a", help="an audio file (DDIM-inverted to its noise) or an integer seed")
    p.add_argument("b", help="the other end, the same way")
    p.add_argument("--frames", type=int, default=8, help="how many points, the two ends included (default: 8)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the inversion and the decoding (default: 50)")
    p.add_argument("--checkpoint", default=str(DEFAULT_OUT / "last.pt"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(DEFAULT_OUT / "interpolation"))
    p.set_defaults(run=interpolate)

    p = sub.add_parser("evaluate", help="score a checkpoint's samples against the songs its training held out "
                       "and against its training songs' music")
    p.add_argument("--checkpoint", default=str(DEFAULT_OUT / "last.pt"))
    p.add_argument("--data", default=None, help="the checkpoint's data by default")
    p.add_argument("-n", type=int, default=SCORED_CLIPS,
                   help=f"how many clips to generate and score (default: {SCORED_CLIPS})")
    add_section_options(p, "sample", only=("sampler", "steps"))  # what quality.evaluate samples with
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.set_defaults(run=evaluate)

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
