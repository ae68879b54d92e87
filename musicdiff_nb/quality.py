"""Does it sound like music? Generated clips scored against real music, two ways:

- against **held-out music**, songs training never saw (``load_music_dataset(songs=...)``):
  does the model make music of this kind, beyond the themes it learned?
- against **the training songs' music**, what the model was fit to: has it
  learned its data? This comparison keeps its reach once samples are as close
  to the held-out songs as the training songs themselves are.

**Fréchet distance** (FD; Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule...", as FID; Kilgour et al. 2019, "Fréchet Audio
Distance"): fit a Gaussian to the embeddings of each set of clips,

    FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),

computed on embeddings of the waveform (resampled to 16 kHz), each dimension
standardised by the real clips it is compared with (both halves, below), so
that no feature dominates by its units:

- ``"features"``: fixed audio features that no training can game, per clip
  the mean and spread over frames of 20 MFCCs (the DCT of the log-mel
  spectrum), the mean of spectral contrast (Jiang et al. 2002) and chroma,
  and the mean and spread of spectral flatness and onset strength (librosa);
- ``"structure"``: what changes over the clip (structure.py: onset rate,
  pulse, chroma change, repetition, second-to-second spectral change,
  dynamics), on clips of 4 s or more only; shorter clips are reported
  without it, with why and what to do.

The label judge's embedding (judge.py) is not part of the score: it ranked
a model trained for 150 steps (0.010) closer to held-out music than real
clips of the training songs (0.039) and the shipped model (0.019), which the
features rank 0.848, 0.142, 0.149 (docs/quality.md).

**Calibrated**: an FD depends on the embedding and on the number of clips, so
every score comes with its *floor* (two disjoint halves of the real clips of
the comparison, n each: real against real), its *ceiling* (white noise at the
loudness of real clips) and the *normalised* score
``(FD - floor) / (ceiling - floor)``: 0 is indistinguishable from that music,
1 is noise. Beside it, *round trip*: the second half of the real clips sent
through the representation (``to_spectrogram`` then ``to_waveform``), what a
perfect model would score once heard through it; and, against held-out music,
*training clips*: what a model that reproduced its data perfectly would score.

Per clip (means over the clips): ``silence`` (share of 32 ms frames below
-50 dB), ``flatness`` (0 for a pure tone, about 0.5 for white noise),
``block_energy`` (``block_energy``: patch squares) and ``nearest_db``
(distance to the nearest training clip, neighbours.py: how close to copying).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import librosa
import numpy as np
import torch
import torchaudio.functional as AF

from .checkpoint import load_checkpoint
from .config import RunConfig
from .data import SPLIT, load_data, spectrograms
from .model import DiT
from .neighbours import nearest_clips
from .sample import sample
from .schedule import DDPMSchedule
from .spectrogram import SpectrogramConfig, magnitude_db, to_spectrogram, to_waveform
from .structure import join_clips, structure_features, too_short

FEATURE_RATE = 16000
EMBEDDINGS = ("features", "structure")
COMPARISONS = {"held_out": "held-out music (songs training never saw)", "train": "the training songs' music"}
_FEATURE_STFT = dict(n_fft=1024, hop_length=256)


# -- embeddings ---------------------------------------------------------------

def at_feature_rate(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    waves = waves.detach().float().cpu()
    return AF.resample(waves, sample_rate, FEATURE_RATE) if sample_rate != FEATURE_RATE else waves


def feature_stft(waves: torch.Tensor, sample_rate: int) -> np.ndarray:
    """|STFT| [N, 513, frames] at 16 kHz, the spectrum every fixed feature is computed from."""
    x = at_feature_rate(waves, sample_rate).numpy()
    return np.abs(librosa.stft(x, n_fft=_FEATURE_STFT["n_fft"], hop_length=_FEATURE_STFT["hop_length"]))


def audio_features(magnitude: np.ndarray) -> torch.Tensor:
    """|STFT| [N, 513, frames] (``feature_stft``) -> fixed features [N, 63] (see the module docstring)."""
    power = magnitude**2
    log_mel = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=FEATURE_RATE, n_mels=64),
                                  ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=20)
    contrast = librosa.feature.spectral_contrast(S=magnitude, sr=FEATURE_RATE)
    flatness = librosa.power_to_db(librosa.feature.spectral_flatness(S=magnitude), amin=1e-10)  # dB: music's is tiny
    onset = librosa.onset.onset_strength(S=log_mel, sr=FEATURE_RATE)[..., None, :]
    chroma = librosa.feature.chroma_stft(S=power, sr=FEATURE_RATE)
    parts = [mfcc.mean(-1), mfcc.std(-1), contrast.mean(-1), flatness.mean(-1), flatness.std(-1),
             onset.mean(-1), onset.std(-1), chroma.mean(-1)]
    return torch.from_numpy(np.concatenate(parts, axis=-1)).float()


def embed(waves: torch.Tensor, sample_rate: int, embeddings=EMBEDDINGS) -> dict[str, torch.Tensor]:
    """Waveforms [N, samples] -> {embedding: [N, D]}."""
    magnitude = feature_stft(waves, sample_rate)
    out = {"features": audio_features(magnitude)}
    if "structure" in embeddings:
        out["structure"] = structure_features(magnitude, FEATURE_RATE, _FEATURE_STFT["hop_length"])
    return out


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between Gaussians fitted to embeddings a [N, D] and b [M, D].
    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2), a symmetric matrix: no non-symmetric sqrtm."""
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    mean = (a.mean(0) - b.mean(0)).pow(2).sum()
    return float(mean + cov_a.trace() + cov_b.trace() - 2 * cross)


# -- per-clip measures ----------------------------------------------------------

def silence_ratio(waves: torch.Tensor, sample_rate: int, threshold_db: float = -50.0) -> torch.Tensor:
    """[N]: share of 32 ms frames whose RMS is below ``threshold_db``."""
    frame = int(0.032 * sample_rate)
    frames = waves.float().unfold(-1, frame, frame)
    level = 10 * torch.log10(frames.pow(2).mean(-1).clamp_min(1e-20))
    return (level < threshold_db).float().mean(-1)


def spectral_flatness(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[N]: mean spectral flatness (geometric / arithmetic mean of the power spectrum)."""
    flatness = librosa.feature.spectral_flatness(S=feature_stft(waves, sample_rate))
    return torch.from_numpy(flatness.mean(axis=(-2, -1))).float()


def block_energy(specs: torch.Tensor, cfg: SpectrogramConfig, patch_size: int | tuple[int, int]) -> torch.Tensor:
    """[N]: share of the dB spectrogram's frame-to-frame and bin-to-bin
    change (squared) that happens across patch borders, mean of the two axes;
    ``patch_size`` is one side or (frequency, time). Music has about 1 / side
    of it there (borders are that share of all neighbour pairs); patches,
    decoded each on its own, put more there."""
    sides = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    db = magnitude_db(specs.detach().float().cpu(), cfg, floor_db=-80.0)
    shares = []
    for axis, side in zip((-2, -1), sides):
        change = db.diff(dim=axis).pow(2)
        border = (torch.arange(change.shape[axis]) + 1) % side == 0
        on_border = change.index_select(axis, border.nonzero().flatten())
        shares.append(on_border.sum(dim=(-2, -1)) / change.sum(dim=(-2, -1)).clamp_min(1e-12))
    return (shares[0] + shares[1]) / 2


# -- the reference: real music ----------------------------------------------------

@dataclass
class Reference:
    """Real clips at ``spectrogram``'s clip size: ``real`` (waveforms [M,
    samples]) of the held-out songs, ``train`` of the training songs, and
    ``train_specs``, the latter as model tensors (for the nearest clip)."""

    spectrogram: SpectrogramConfig
    real: torch.Tensor
    train: torch.Tensor
    train_specs: torch.Tensor
    _calibrations: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def embeddings(self) -> tuple[str, ...]:
        """The structure in time is measured on clips of 4 s or more only."""
        return EMBEDDINGS if too_short(self.spectrogram.clip_seconds) is None else ("features",)

    def pool(self, comparison: str) -> torch.Tensor:
        return {"held_out": self.real, "train": self.train}[comparison]

    def calibration(self, n: int, seed: int, patch_size) -> dict:
        """The real side of scoring ``n`` clips, computed once per (n, seed,
        patch_size). Per comparison: two disjoint halves ``a`` and ``b`` of at
        most ``n`` of its clips (which also standardise the embedding), noise at
        the loudness of ``b``, ``b`` through the representation (``round_trip``)
        and, against held-out music, ``train`` clips; and the per-clip
        measures of ``n`` held-out clips."""
        key = n, seed, patch_size if isinstance(patch_size, int) else tuple(patch_size)
        if key not in self._calibrations:
            generator = torch.Generator().manual_seed(seed)
            rate, cfg = self.spectrogram.sample_rate, self.spectrogram
            sets = {}
            for comparison in COMPARISONS:
                pool = self.pool(comparison)
                m = min(n, len(pool) // 2)
                order = torch.randperm(len(pool), generator=generator)
                a, b = pool[order[:m]], pool[order[m:2 * m]]
                noise = torch.randn(b.shape, generator=generator) * b.pow(2).mean(-1, keepdim=True).sqrt()
                waves = dict(a=a, b=b, noise=noise, round_trip=to_waveform(to_spectrogram(b, cfg), cfg, b.shape[-1]))
                if comparison == "held_out":
                    waves["train"] = self.train[torch.randperm(len(self.train), generator=generator)[:m]]
                embedded = {k: embed(w, rate, self.embeddings) for k, w in waves.items()}
                sets[comparison] = {"n": m, **{e: {k: v[e] for k, v in embedded.items()} for e in self.embeddings}}
            real = self.real[torch.randperm(len(self.real), generator=generator)[:n]]
            self._calibrations[key] = {"sets": sets, "measures": clip_measures(
                real, to_spectrogram(real, cfg), self, patch_size)}
        return self._calibrations[key]


def build_reference(run: RunConfig, *, max_train_clips_per_song: int | None = 30) -> Reference:
    """Load the songs ``run`` held out (every clip) and its training songs
    (``max_train_clips_per_song`` each: 30, as many as the CPU runs train
    on), in its spectrogram."""
    real = load_data(run, "held_out", max_clips_per_song=None).with_format("torch", columns=["audio"])
    train = load_data(run, "train", max_clips_per_song=max_train_clips_per_song)
    train_waves = train.with_format("torch", columns=["audio"])[:]["audio"]
    return Reference(run.spectrogram, real[:]["audio"], train_waves, spectrograms(train))


# -- scores -------------------------------------------------------------------------

def calibrated(embedded: dict[str, torch.Tensor], generated: torch.Tensor) -> dict[str, float]:
    """One embedding's FDs against the real half ``a``, standardised by both
    real halves, with floor, ceiling and the normalised scores."""
    scale = torch.cat([embedded["a"], embedded["b"]])
    mean, std = scale.mean(0), scale.std(0)
    std = std.clamp_min(1e-2 * std.median())  # a dimension constant on real music must not divide by ~0
    a = (embedded["a"] - mean) / std
    fd = {k: frechet_distance((e - mean) / std, a) for k, e in [*embedded.items(), ("fd", generated)]
          if k != "a"}
    fd["floor"], fd["ceiling"] = fd.pop("b"), fd.pop("noise")
    span = fd["ceiling"] - fd["floor"]
    for k in ("fd", "round_trip", "train"):
        if k in fd:
            fd["normalised" if k == "fd" else k + "_normalised"] = (fd[k] - fd["floor"]) / span
    return fd


@dataclass
class QualityReport:
    """``fd[embedding]`` against held-out music and ``fd_train[embedding]``
    against the training songs' music: ``fd`` of the generated clips, its
    ``floor``, ``ceiling``, the ``normalised`` score, the real clips' round
    trip through the representation (and, in ``fd``, the training clips');
    ``clips[measure]``: the mean of each per-clip measure over the generated
    clips and, for comparison, over held-out real ones (``real_...``);
    ``seconds``: the length of the scored clips; ``notes``: what was not
    measured, and why."""

    n: int
    fd: dict[str, dict[str, float]]
    fd_train: dict[str, dict[str, float]]
    clips: dict[str, float]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"n": self.n, "seconds": self.seconds, "fd": self.fd, "fd_train": self.fd_train,
                "clips": self.clips, "notes": self.notes}

    def summary(self) -> str:
        lines = [f"{self.n} generated clips of {self.seconds:.2f} s, normalised FD (0 = real music, 1 = noise):"]
        for comparison, scores in [("held_out", self.fd), ("train", self.fd_train)]:
            lines.append(f"  against {COMPARISONS[comparison]}:")
            for name, s in scores.items():
                extra = f"training songs' clips {s['train_normalised']:.3f}; " if "train" in s else ""
                lines.append(f"    {name:9s} {s['normalised']:6.3f}   ({s['n']} clips: FD {s['fd']:.2f}; floor "
                             f"{s['floor']:.2f}, ceiling {s['ceiling']:.2f}; {extra}real clips through the "
                             f"representation {s['round_trip_normalised']:.3f})")
        c = self.clips
        lines.append(f"  per clip (generated / real): silence {c['silence']:.2f} / {c['real_silence']:.2f}, "
                     f"flatness {c['flatness']:.3f} / {c['real_flatness']:.3f}, block energy "
                     f"{c['block_energy']:.3f} / {c['real_block_energy']:.3f}, nearest training clip "
                     f"{c['nearest_db']:.1f} / {c['real_nearest_db']:.1f} dB")
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def clip_measures(waves: torch.Tensor, specs: torch.Tensor, reference: Reference, patch_size) -> dict:
    """The per-clip measures, each averaged over the clips."""
    cfg = reference.spectrogram
    return {"silence": float(silence_ratio(waves, cfg.sample_rate).mean()),
            "flatness": float(spectral_flatness(waves, cfg.sample_rate).mean()),
            "block_energy": float(block_energy(specs, cfg, patch_size).mean()),
            "nearest_db": float(nearest_clips(specs, reference.train_specs, cfg).distance.mean())}


def score(reference: Reference, specs: torch.Tensor, patch_size, seed: int = 0) -> QualityReport:
    """Score generated model tensors ``specs`` [n, C, F, T] against both
    comparisons; each needs 2n real clips (its floor compares two halves of
    n), and with fewer compares the first clips it has halves for."""
    cfg = reference.spectrogram
    n = len(specs)
    if min(len(reference.real), len(reference.train)) < 4:
        raise ValueError(f"{len(reference.real)} held-out and {len(reference.train)} training clips are too few "
                         "to score against: hold out more songs (held_out=) or use longer songs")
    calibration = reference.calibration(n, seed, patch_size)
    waves = to_waveform(specs.float().cpu(), cfg, length=cfg.clip_samples)
    generated = embed(waves, cfg.sample_rate, reference.embeddings)
    fd = {comparison: {name: {**calibrated(sets[name], generated[name][:sets["n"]]), "n": sets["n"]}
                       for name in reference.embeddings} for comparison, sets in calibration["sets"].items()}
    clips = {**clip_measures(waves, specs, reference, patch_size),
             **{"real_" + k: v for k, v in calibration["measures"].items()}}
    notes = [] if "structure" in reference.embeddings else [too_short(cfg.clip_seconds)]
    return QualityReport(n, fd["held_out"], fd["train"], clips, cfg.clip_seconds, notes)


def evaluate(model: DiT, schedule: DDPMSchedule, reference: Reference, n: int = 64, steps: int | None = 50,
             sampler: str = "ddim", seed: int = 0, batch_size: int = 64, join: int = 1) -> QualityReport:
    """Generate ``n`` clips (``sampler``, ``steps``) and ``score`` them. With
    ``join`` > 1, ``n * join`` clips are made and each ``join`` consecutive
    ones laid end to end, and the ``n`` pieces scored against a reference of
    pieces' length (a structure-in-time measure for models of short clips:
    it hears unrelated clips in a row, not structure the model made)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    total = n * join
    specs = torch.cat([sample(model, schedule, min(batch_size, total - i), steps=steps, sampler=sampler,
                              generator=generator).cpu() for i in range(0, total, batch_size)])
    if join > 1:
        specs = join_clips(specs, join)
    if specs.shape[-1] != reference.spectrogram.frames:
        raise ValueError(f"{join} clip(s) of {specs.shape[-1] // join} frames make pieces of {specs.shape[-1]} "
                         f"frames, the reference's clips have {reference.spectrogram.frames}: build the reference "
                         f"with frames={specs.shape[-1]}")
    return score(reference, specs, model.config.patch_size, seed)


def quality_by_steps(model: DiT, schedule: DDPMSchedule, reference: Reference, steps=(5, 10, 25, 50),
                     samplers=("ddim", "dpm++"), n: int = 64, seed: int = 0) -> dict[str, dict[int, float]]:
    """Normalised FD (features) of ``n`` clips drawn by each sampler at each
    number of steps, from the same noise (``seed``): quality against cost."""
    return {s: {k: evaluate(model, schedule, reference, n, steps=k, sampler=s, seed=seed).fd["features"]["normalised"]
                for k in steps} for s in samplers}


def load_for_scoring(path, device="cpu"):
    """A checkpoint and the run to score it as: its own, or, when its training
    held no songs out, the same run with the package's ``SPLIT`` (and a
    warning: it is then scored against songs it saw)."""
    ckpt = load_checkpoint(path, device)
    if ckpt.run is None:
        raise ValueError(f"{path} records no run (no spectrogram settings), so its samples cannot become audio to "
                         "score: train it with a RunConfig")
    run = ckpt.run
    if not run.data.held_out:
        warnings.warn(f"{path} was trained on every song (no held-out split): it is scored against songs it saw",
                      stacklevel=2)
        run = run.replace(data=SPLIT)
    return ckpt, run

