"""One run, declared once: what it trains on, the model, the noise schedule,
how it trains and how it samples.

``RunConfig`` gathers the package's configs. Its defaults are the main job
(``python -m musicdiff_nb train``: the tiny DiT on log-mel clips of the demo
set, the settings docs/quality.md picked for a CPU). ``train`` saves it in
every checkpoint and ``load_checkpoint`` rebuilds it, so a checkpoint knows
its spectrogram, data and split; the command line's options are its fields;
``save``/``load`` write and read it as YAML or JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from .conditioning import KINDS, Conditioning, label_conditioning, text_conditioning
from .data import SPLIT, load_music_dataset
from .files import atomic_write
from .model import DiT, DiTConfig
from .precision import PRECISIONS
from .processes import pick_device
from .sample import SAMPLERS
from .schedule import DDPMSchedule, ScheduleConfig
from .spectrogram import SpectrogramConfig

CONDITIONINGS = ("none", *KINDS)
LOSS_WEIGHTINGS = ("none", "min_snr")


@dataclass
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
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

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
    held_out: float = SPLIT["held_out"]
    split_seed: int = SPLIT["split_seed"]

    def __post_init__(self):
        if not 0 <= self.held_out < 1:
            raise ValueError(f"held_out={self.held_out}: give the share of songs to hold out, in [0, 1)")
        for name in ("max_songs", "max_clips_per_song"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: use None (all) or a count >= 1")


@dataclass(frozen=True)
class SampleConfig:
    """How the run's model is sampled and scored: ``steps`` of ``sampler``;
    ``ddpm_steps`` respaces DDPM (None walks all T); ``quality_clips`` are
    generated to score it (quality.py) at each of ``curve_steps`` in 06."""

    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 3.0
    ddpm_steps: int | None = None
    quality_clips: int = 64
    curve_steps: tuple[int, ...] = (5, 10, 25, 50)

    def __post_init__(self):
        object.__setattr__(self, "curve_steps", tuple(int(s) for s in self.curve_steps))
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r}: use one of {SAMPLERS}")
        if self.steps < 1 or self.quality_clips < 2:
            raise ValueError(f"steps={self.steps}, quality_clips={self.quality_clips}: use steps >= 1, "
                             "quality_clips >= 2")


def _cpu_spectrogram() -> SpectrogramConfig:
    return SpectrogramConfig.preset("small", representation="mel")


def _tiny_dit() -> DiTConfig:
    return DiTConfig.preset("tiny")


@dataclass(frozen=True)
class RunConfig:
    """A run, whole. The model is sized by the spectrogram (``in_channels``,
    ``input_size`` follow it) and by the conditioning (``cond_dim``, set when
    the model is built from the data's labels)."""

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

    # --- what a run builds -------------------------------------------------------------------------------
    @property
    def stft(self) -> SpectrogramConfig:
        """The run's clips as the complex STFT (what 02-04 explain, whatever the model sees)."""
        return self.spectrogram.with_representation("complex")

    def load_data(self, songs: str = "train", spectrogram: SpectrogramConfig | None = None, **options):
        """The run's clips (``load_music_dataset``): ``songs="train"`` the songs it
        trains on, ``"held_out"`` the songs kept to score it, ``"all"`` every song;
        in ``spectrogram`` (the run's by default); ``options`` override the run's
        (``max_clips_per_song=None``) or add to them (``keep_audio=False``)."""
        d = self.data
        chosen = dict(held_out=d.held_out, split_seed=d.split_seed, max_songs=d.max_songs,
                      max_clips_per_song=d.max_clips_per_song)
        return load_music_dataset(d.source, spectrogram or self.spectrogram, songs=songs, **{**chosen, **options})

    def build_conditioning(self, labels: list[str]) -> Conditioning | None:
        """The condition a model of this run takes: None, or ``labels`` (the
        data's, ``label_names(ds)``) as multi-hot vectors or as text embeddings."""
        if self.conditioning == "none":
            return None
        if not labels:
            raise ValueError(f"conditioning={self.conditioning!r} needs labels, and the data "
                             f"{self.data.source!r} has none: train with conditioning='none'")
        return label_conditioning(labels) if self.conditioning == "labels" else text_conditioning(labels)

    def build_model(self, conditioning: Conditioning | None = None) -> DiT:
        return DiT(replace(self.model, cond_dim=conditioning.dim if conditioning else 0), conditioning)

    def build_schedule(self) -> DDPMSchedule:
        return DDPMSchedule(self.schedule)

    def describe(self) -> str:
        spec, m, t, d = self.spectrogram, self.model, self.train, self.data
        clips = f"{d.max_clips_per_song} clips per song" if d.max_clips_per_song else "every clip"
        return (f"{spec.clip_seconds:.2f} s clips at {spec.sample_rate} Hz -> {spec.representation} tensor "
                f"{spec.shape}; DiT {m.depth} blocks x {m.num_heads} heads at width {m.hidden_size}, "
                f"{m.patch_size} x {m.patch_size} patches; {d.source!r}, {clips}; {t.steps} steps of batch "
                f"{t.batch_size} on {pick_device(t.device)} -> {t.out_dir or '(no checkpoint)'}")

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
        sections = {}
        for name, kind in SECTIONS.items():
            given = d.get(name) or {}
            names = {f.name for f in fields(kind)}
            wrong = set(given) - names
            if wrong:
                raise ValueError(f"{source}: {name} has no setting(s) {sorted(wrong)}; its settings are "
                                 f"{', '.join(sorted(names))}")
            sections[name] = replace(getattr(run, name), **given)
        return replace(run, **sections, conditioning=d.get("conditioning", run.conditioning))

    def save(self, path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (any other suffix)."""
        path = Path(path)
        with atomic_write(path, "w") as f:
            f.write(self.dumps(yaml_format=path.suffix in (".yaml", ".yml")))
        return path

    def dumps(self, yaml_format: bool = True) -> str:
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


SECTIONS = {"spectrogram": SpectrogramConfig, "model": DiTConfig, "schedule": ScheduleConfig, "train": TrainConfig,
            "data": DataConfig, "sample": SampleConfig}
