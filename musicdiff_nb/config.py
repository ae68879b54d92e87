"""One run, declared once: what it trains on, the model, the noise schedule,
how it trains and how it samples; and the named runs, declared in ``RUNS``.

``RunConfig`` gathers the package's configs. Its defaults are the main job
(``python -m musicdiff_nb train``: the tiny DiT on log-mel clips of the demo
set, the settings docs/quality.md picked for a CPU). ``train`` saves it in
every checkpoint and ``load_checkpoint`` rebuilds it, so a checkpoint knows
its spectrogram, data and split; the command line's options are its fields
and ``--run NAME`` starts from ``RUNS[NAME]``; ``dumps``/``load`` write and
read it as YAML or JSON.

This module only declares: what a run builds is made where it is owned
(``DiT(run.model, conditioning)``, ``DDPMSchedule(run.schedule)``,
``data.load_data(run)``, ``conditioning.build_conditioning(run, labels)``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from .model import DiTConfig
from .precision import PRECISIONS
from .schedule import SAMPLERS, ScheduleConfig
from .spectrogram import SpectrogramConfig

CONDITIONINGS = ("none", "labels", "text")  # conditioning.py says what "labels" and "text" mean
LOSS_WEIGHTINGS = ("none", "min_snr")


@dataclass(frozen=True)
class TrainConfig:
    """How a model trains; the defaults train the tiny DiT on a CPU (docs/quality.md).
    ``batch_size`` is the global batch, split over processes under torchrun.
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

    steps: int = 5000
    epochs: float | None = None
    time_limit: float | None = None
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
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
    def from_dict(cls, d: dict, source: str = "the config") -> "TrainConfig":
        return cls(**_known_fields(cls, d, source, "train"))

    @property
    def checkpoint_path(self) -> Path | None:
        return Path(self.out_dir) / "last.pt" if self.out_dir else None


@dataclass(frozen=True)
class DataConfig:
    """Which songs a run learns from (``source``: see ``load_music_dataset``),
    how many clips of each, and the share of songs held out to score it."""

    source: str = "demo"
    max_songs: int | None = None
    max_clips_per_song: int | None = 30
    held_out: float = 0.2  # the split of every run the package makes: 2 of the 10 demo themes
    split_seed: int = 0

    def __post_init__(self):
        if not 0 <= self.held_out < 1:
            raise ValueError(f"held_out={self.held_out}: give the share of songs to hold out, in [0, 1)")
        for name in ("max_songs", "max_clips_per_song"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: use None (all) or a count >= 1")


@dataclass(frozen=True)
class SampleConfig:
    """How the run's model is sampled: ``steps`` of ``sampler``;
    ``ddpm_steps`` respaces DDPM (None walks all T)."""

    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 3.0
    ddpm_steps: int | None = None

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r}: use one of {SAMPLERS}")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: sample with at least one step")


def _cpu_spectrogram() -> SpectrogramConfig:
    return SpectrogramConfig.preset("small", representation="mel")


def _tiny_dit() -> DiTConfig:
    return DiTConfig.preset("tiny")


@dataclass(frozen=True)
class RunConfig:
    """A run, whole. The model is sized by the spectrogram (``in_channels``,
    ``input_size`` follow it) and by the conditioning (``cond_dim``, which
    ``DiT(run.model, conditioning)`` takes from the data's labels)."""

    spectrogram: SpectrogramConfig = field(default_factory=_cpu_spectrogram)
    model: DiTConfig = field(default_factory=_tiny_dit)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    conditioning: str = "none"

    def __post_init__(self):
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning={self.conditioning!r}: use one of {CONDITIONINGS}")
        spec = self.spectrogram
        sized = replace(self.model, in_channels=spec.channels, input_size=spec.shape[1:])
        object.__setattr__(self, "model", sized)

    def replace(self, **sections) -> "RunConfig":
        """A copy with some fields changed, section by section:
        ``run.replace(train=dict(steps=100), data=dict(source="my_songs"))``
        (a whole config, e.g. ``spectrogram=SpectrogramConfig(...)``, replaces a section)."""
        changed = {}
        for name, value in sections.items():
            if name not in SECTIONS and name != "conditioning":
                raise ValueError(f"RunConfig has no section {name!r}: use {', '.join([*SECTIONS, 'conditioning'])}")
            changed[name] = replace(getattr(self, name), **value) if isinstance(value, dict) else value
        return replace(self, **changed)

    @property
    def stft(self) -> SpectrogramConfig:
        """The run's clips as the complex STFT (what 02-04 explain, whatever the model sees)."""
        return self.spectrogram.with_representation("complex")

    def describe(self) -> str:
        spec, m, t, d = self.spectrogram, self.model, self.train, self.data
        clips = f"{d.max_clips_per_song} clips per song" if d.max_clips_per_song else "every clip"
        return (f"{spec.clip_seconds:.2f} s clips at {spec.sample_rate} Hz -> {spec.representation} tensor "
                f"{spec.shape}; DiT {m.depth} blocks x {m.num_heads} heads at width {m.hidden_size}, "
                f"{m.patch[0]} x {m.patch[1]} patches; {d.source!r}, {clips}; {t.steps} steps of batch "
                f"{t.batch_size} on {'a GPU if there is one, else the CPU' if t.device == 'auto' else t.device} -> "
                f"{t.out_dir or '(no checkpoint)'}")

    # --- plain values, files -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain values (lists for tuples), as JSON and YAML write them."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict, source: str = "the config") -> "RunConfig":
        """The inverse of ``to_dict``; missing fields keep their defaults, and an
        unknown one is an error (a misspelt setting would else be ignored)."""
        unknown = set(d) - {*SECTIONS, "conditioning"}
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {sorted(unknown)}; "
                             f"use {', '.join([*SECTIONS, 'conditioning'])}")
        run = cls()
        sections = {name: replace(getattr(run, name), **_known_fields(kind, d.get(name) or {}, source, name))
                    for name, kind in SECTIONS.items()}
        return replace(run, **sections, conditioning=d.get("conditioning", run.conditioning))

    def dumps(self, yaml_format: bool = True) -> str:
        """The run as YAML (for ``load`` and ``--config``), or as JSON."""
        return (yaml.safe_dump(self.to_dict(), sort_keys=False) if yaml_format
                else json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no run config at {path}: write one with "
                                    f"`python -m musicdiff_nb train --print-config > {path.name}`")
        try:
            d = yaml.safe_load(path.read_text())  # YAML reads JSON too
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML or JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path} holds no settings: expected sections such as 'train:' and 'data:'")
        return cls.from_dict(d, source=str(path))


def _known_fields(kind, given: dict, source: str, section: str) -> dict:
    """``given``, refused when it names a field ``kind`` lacks (a misspelt setting would else be ignored)."""
    names = {f.name for f in fields(kind)}
    wrong = set(given) - names
    if wrong:
        raise ValueError(f"{source}: {section} has no setting(s) {sorted(wrong)}; its settings are "
                         f"{', '.join(sorted(names))}")
    return given


SECTIONS = {"spectrogram": SpectrogramConfig, "model": DiTConfig, "schedule": ScheduleConfig, "train": TrainConfig,
            "data": DataConfig, "sample": SampleConfig}


# -- the named runs ------------------------------------------------------------------------------------------
def _conditioned(run: RunConfig, spectrogram: SpectrogramConfig, songs: int, steps: int) -> RunConfig:
    """07's run beside ``run``: the first ``songs`` "scores" songs (their labels name composers, genres and
    instruments; 07 holds clips out for its judge, not songs) as log magnitude (a label is heard in the
    spectral envelope), conditioned on the text of their labels."""
    return run.replace(
        spectrogram=spectrogram, conditioning="text",
        data=dict(source="scores", max_songs=songs, max_clips_per_song=12, held_out=0),
        train=dict(steps=steps, batch_size=max(run.train.batch_size, 16), lr=2e-3, log_every=50,
                   checkpoint_every=steps, resume=False),
        sample=dict(steps=max(run.sample.steps, 20)))


RUNS: dict[str, RunConfig] = {}
"""Every named run: ``named_run(name)``, ``python -m musicdiff_nb train --run NAME``, the notebooks'
``notebook_settings``. A variant is ``RUNS[name].replace(...)``."""

# the main job: the tiny DiT on 1-s log-mel clips, in minutes on a CPU (docs/quality.md)
RUNS["cpu"] = RunConfig()
# seconds, for CI and headless notebooks (MUSICDIFF_QUICK=1): a quarter of the tokens, fewer clips and steps;
# DDPM respaced to 100 of its 1000 timesteps
RUNS["quick"] = RUNS["cpu"].replace(
    model=dict(patch_size=16), data=dict(max_clips_per_song=4),
    train=dict(steps=150, batch_size=8, lr=2e-3, ema_decay=0.99), sample=dict(steps=10, ddpm_steps=100))
# the seed's workload: 22.05 kHz, 2 x 256 x 256 complex spectrograms, its 5.26 M-parameter DiT
RUNS["seed"] = RunConfig(SpectrogramConfig.preset("seed"), DiTConfig.preset("seed"))
# the notebooks' GPU run: the cpu run's log-mel spectrogram 8x longer (8.2-s clips, 1 x 128 x 1024), the seed's DiT
# (16 x 16 patches: 512 tokens) with the overlapping head, every clip of the data; 20k steps of batch 32 are
# projected at 13 minutes on Colab's T4 (benchmarks/gpu_projection.py)
RUNS["gpu"] = RUNS["seed"].replace(
    spectrogram=SpectrogramConfig.preset("small", representation="mel", frames=1024), model=dict(head="overlap"),
    data=dict(max_clips_per_song=None), train=dict(steps=20000, batch_size=32, lr=3e-4, ema_decay=0.999))
# 07's runs (the quick one on 1-s clips at 8 kHz: half the frames)
RUNS["conditioned-quick"] = _conditioned(RUNS["quick"], SpectrogramConfig.preset(
    "small", representation="magnitude", frames=64, sample_rate=8000), songs=16, steps=600)
RUNS["conditioned-cpu"] = _conditioned(RUNS["cpu"], SpectrogramConfig.preset("small", representation="magnitude"),
                                       songs=120, steps=3000)
RUNS["conditioned-gpu"] = _conditioned(RUNS["gpu"], SpectrogramConfig.preset("seed", representation="magnitude"),
                                       songs=710, steps=20000)


def named_run(name: str) -> RunConfig:
    if name not in RUNS:
        raise ValueError(f"no run named {name!r}: use one of {', '.join(RUNS)}")
    return RUNS[name]
