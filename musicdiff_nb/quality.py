"""Does it sound like music? Generated clips scored against real music that
training never saw (songs held out by ``load_music_dataset(songs=...)``).

**Fréchet distance** (FD; Heusel et al. 2017, "GANs Trained by a Two
Time-Scale Update Rule...", as FID; Kilgour et al. 2019, "Fréchet Audio
Distance"): fit a Gaussian to the embeddings of each set of clips,

    FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),

computed on two embeddings of the waveform (resampled to 16 kHz), each
dimension standardised by the held-out clips so that no feature dominates
by its units:

- ``"features"``: fixed audio features that no training can game, per clip
  the mean and spread over frames of 20 MFCCs (the DCT of the log-mel
  spectrum), the mean of spectral contrast (Jiang et al. 2002) and chroma,
  and the mean and spread of spectral flatness and onset strength (librosa);
- ``"judge"``: the penultimate layer of a classifier trained on real clips to
  tell the training songs apart (judge.py), as fastai's course computes FID
  with a classifier of its own.

**Calibrated**: an FD depends on the embedding and on the number of clips, so
every score comes with its *floor* (two disjoint halves of the held-out clips
against each other: real against real), its *ceiling* (white noise at the
loudness of real clips against real) and the *normalised* score
``(FD - floor) / (ceiling - floor)``: 0 is indistinguishable from held-out
music, 1 is noise. *Training clips* (from the training songs) score what a
model that reproduced its data perfectly would.

Beside it, per clip (means over the clips): ``silence`` (share of 32 ms
frames below -50 dB), ``flatness`` (spectral flatness: 0 for a pure tone,
about 0.5 for white noise), ``block_energy`` (share of the dB spectrogram's
change between neighbouring bins and frames that falls on patch borders:
about 1/p for music, more where under-trained DiT samples show squares) and
``nearest_db`` (distance to the nearest training clip, neighbours.py: how
close to copying).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import librosa
import numpy as np
import torch
import torchaudio.functional as AF

from .checkpoint import load_checkpoint
from .config import RunConfig
from .data import SPLIT, load_data, spectrograms
from .judge import LabelJudge, train_judge
from .model import DiT
from .neighbours import nearest_clips
from .sample import sample
from .schedule import DDPMSchedule
from .spectrogram import SpectrogramConfig, magnitude_db, to_spectrogram, to_waveform

FEATURE_RATE = 16000
EMBEDDINGS = ("features", "judge")
_FEATURE_STFT = dict(n_fft=1024, hop_length=256)
_JUDGE_SPECTROGRAM = SpectrogramConfig(sample_rate=FEATURE_RATE, n_fft=512, hop_length=256, representation="magnitude")


# -- embeddings ---------------------------------------------------------------

def at_feature_rate(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    waves = waves.detach().float().cpu()
    return AF.resample(waves, sample_rate, FEATURE_RATE) if sample_rate != FEATURE_RATE else waves


def feature_stft(waves: torch.Tensor, sample_rate: int) -> np.ndarray:
    """|STFT| [N, 513, frames] at 16 kHz, the spectrum every fixed feature is computed from."""
    x = at_feature_rate(waves, sample_rate).numpy()
    return np.abs(librosa.stft(x, n_fft=_FEATURE_STFT["n_fft"], hop_length=_FEATURE_STFT["hop_length"]))


def audio_features(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Waveforms [N, samples] -> fixed features [N, 63] (see the module docstring)."""
    magnitude = feature_stft(waves, sample_rate)
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


def judge_spectrograms(waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
    return to_spectrogram(at_feature_rate(waves, sample_rate), _JUDGE_SPECTROGRAM)


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


def block_energy(specs: torch.Tensor, cfg: SpectrogramConfig, patch_size: int) -> torch.Tensor:
    """[N]: share of the dB spectrogram's frame-to-frame and bin-to-bin
    change (squared) that happens across patch borders, mean of the two axes.
    Music has about 1 / patch_size of it there (borders are that share of all
    neighbour pairs); patch squares, decoded each on its own, put it there."""
    db = magnitude_db(specs.detach().float().cpu(), cfg, floor_db=-80.0)
    shares = []
    for axis in (-2, -1):
        change = db.diff(dim=axis).pow(2)
        border = (torch.arange(change.shape[axis]) + 1) % patch_size == 0
        on_border = change.index_select(axis, border.nonzero().flatten())
        shares.append(on_border.sum(dim=(-2, -1)) / change.sum(dim=(-2, -1)).clamp_min(1e-12))
    return (shares[0] + shares[1]) / 2


# -- the reference: held-out music ----------------------------------------------

@dataclass
class Reference:
    """Held-out real clips (``real``, waveforms [M, samples]) and clips of the
    training songs (``train``, waveforms, and ``train_specs``, model tensors),
    both at ``spectrogram``'s clip size, and the judge trained on ``train``."""

    spectrogram: SpectrogramConfig
    real: torch.Tensor
    train: torch.Tensor
    train_specs: torch.Tensor
    judge: LabelJudge
    _calibrations: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def real_embedding(self) -> dict[str, torch.Tensor]:
        return self.embed(self.real)

    def calibration(self, n: int, seed: int, patch_size: int) -> dict:
        """The real side of scoring ``n`` clips, computed once per (n, seed,
        patch_size): two disjoint halves of the held-out clips (``a`` and
        ``b``), noise at the loudness of ``b``, ``n`` clips of the training
        songs, their embeddings, and the per-clip measures of ``a``."""
        key = n, seed, patch_size
        if key not in self._calibrations:
            generator = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(self.real), generator=generator)
            half_a, half_b = self.real[order[:n]], self.real[order[n:2 * n]]
            noise = torch.randn(half_b.shape, generator=generator) * half_b.pow(2).mean(-1, keepdim=True).sqrt()
            train = self.train[torch.randperm(len(self.train), generator=generator)[:n]]
            waves = dict(a=half_a, b=half_b, noise=noise, train=train)
            self._calibrations[key] = {
                "embedded": {k: self.embed(w) for k, w in waves.items()},
                "measures": clip_measures(half_a, to_spectrogram(half_a, self.spectrogram), self, patch_size)}
        return self._calibrations[key]

    def embed(self, waves: torch.Tensor) -> dict[str, torch.Tensor]:
        rate = self.spectrogram.sample_rate
        return {"features": audio_features(waves, rate),
                "judge": self.judge.embedding(judge_spectrograms(waves, rate))}


def build_reference(run: RunConfig, *, max_train_clips_per_song: int | None = 30,
                    judge_steps: int = 300) -> Reference:
    """Load the songs ``run`` held out (every clip) and its training songs
    (``max_train_clips_per_song`` each), in its spectrogram, and train the judge."""
    spectrogram = run.spectrogram
    real = load_data(run, "held_out", max_clips_per_song=None).with_format("torch", columns=["audio"])
    train = load_data(run, "train", max_clips_per_song=max_train_clips_per_song)
    train_waves = train.with_format("torch", columns=["audio"])[:]["audio"]
    songs = sorted(set(train["song"]))
    targets = torch.nn.functional.one_hot(torch.tensor([songs.index(s) for s in train["song"]]), len(songs))
    judge = train_judge(judge_spectrograms(train_waves, spectrogram.sample_rate), targets, songs,
                        _JUDGE_SPECTROGRAM, steps=judge_steps)
    return Reference(spectrogram, real[:]["audio"], train_waves, spectrograms(train), judge)


# -- scores -------------------------------------------------------------------------

@dataclass
class QualityReport:
    """``fd[embedding]``: ``fd`` of the generated clips, its ``floor``,
    ``ceiling``, the ``train`` clips' FD and the ``normalised`` score;
    ``clips[measure]``: the mean of each per-clip measure over the generated
    clips and, for comparison, over the held-out real ones (``real_...``)."""

    n: int
    fd: dict[str, dict[str, float]]
    clips: dict[str, float]

    def to_dict(self) -> dict:
        return {"n": self.n, "fd": self.fd, "clips": self.clips}

    def summary(self) -> str:
        lines = [f"{self.n} generated clips against held-out real music (0 = real, 1 = noise):"]
        for name, s in self.fd.items():
            lines.append(f"  {name:8s} normalised FD {s['normalised']:6.3f}   (FD {s['fd']:.2f}; "
                         f"floor {s['floor']:.2f}, ceiling {s['ceiling']:.2f}; "
                         f"training clips {s['train']:.2f} = {s['train_normalised']:.3f})")
        c = self.clips
        lines.append(f"  per clip (generated / real): silence {c['silence']:.2f} / {c['real_silence']:.2f}, "
                     f"flatness {c['flatness']:.3f} / {c['real_flatness']:.3f}, block energy "
                     f"{c['block_energy']:.3f} / {c['real_block_energy']:.3f}, nearest training clip "
                     f"{c['nearest_db']:.1f} / {c['real_nearest_db']:.1f} dB")
        return "\n".join(lines)


def clip_measures(waves: torch.Tensor, specs: torch.Tensor, reference: Reference, patch_size: int) -> dict:
    """The per-clip measures, each averaged over the clips."""
    cfg = reference.spectrogram
    return {"silence": float(silence_ratio(waves, cfg.sample_rate).mean()),
            "flatness": float(spectral_flatness(waves, cfg.sample_rate).mean()),
            "block_energy": float(block_energy(specs, cfg, patch_size).mean()),
            "nearest_db": float(nearest_clips(specs, reference.train_specs, cfg).distance.mean())}


def score(reference: Reference, specs: torch.Tensor, patch_size: int, seed: int = 0) -> QualityReport:
    """Score generated model tensors ``specs`` [n, C, F, T]. Needs at least 2n
    held-out clips (the floor compares two halves of n); with fewer, n shrinks."""
    cfg = reference.spectrogram
    n = min(len(specs), len(reference.real) // 2)
    if n < 2:
        raise ValueError(f"{len(reference.real)} held-out clips are too few to score against: hold out more songs "
                         "(held_out=) or use longer songs")
    calibration = reference.calibration(n, seed, patch_size)
    waves = to_waveform(specs[:n].float().cpu(), cfg, length=cfg.clip_samples)

    scale = reference.real_embedding
    embedded = {"generated": reference.embed(waves), **calibration["embedded"]}
    fd = {}
    for name in EMBEDDINGS:
        mean, std = scale[name].mean(0), scale[name].std(0)
        std = std.clamp_min(1e-2 * std.median())  # a dimension constant on real music must not divide by ~0
        z = {k: (e[name] - mean) / std for k, e in embedded.items()}
        floor, ceiling = frechet_distance(z["b"], z["a"]), frechet_distance(z["noise"], z["a"])
        value, train_fd = frechet_distance(z["generated"], z["a"]), frechet_distance(z["train"], z["a"])
        fd[name] = {"fd": value, "floor": floor, "ceiling": ceiling, "train": train_fd,
                    "normalised": (value - floor) / (ceiling - floor),
                    "train_normalised": (train_fd - floor) / (ceiling - floor)}

    generated = clip_measures(waves, specs[:n], reference, patch_size)
    clips = {**generated, **{"real_" + k: v for k, v in calibration["measures"].items()}}
    return QualityReport(n, fd, clips)


def evaluate(model: DiT, schedule: DDPMSchedule, reference: Reference, n: int = 64, steps: int | None = 50,
             sampler: str = "ddim", seed: int = 0, batch_size: int = 64) -> QualityReport:
    """Generate ``n`` clips (``sampler``, ``steps``) and ``score`` them."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    specs = torch.cat([sample(model, schedule, min(batch_size, n - i), steps=steps, sampler=sampler,
                              generator=generator).cpu() for i in range(0, n, batch_size)])
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

