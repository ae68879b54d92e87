"""Structure in time: what changes over a clip, which features averaged over
its frames cannot see. A clip of one held chord and a clip of a melody over
the same chord have nearly the same mean spectrum, MFCCs and chroma; they
differ in how often something starts, whether it starts on a beat, whether
the harmony moves and whether the clip comes back to where it was.

Per clip, from its magnitude spectrum (quality.py's ``feature_stft``):

- ``onset_rate``: onsets per second (librosa's onset detection on the mean
  rise of the log-mel bands, peaks 1 dB above their surroundings);
- ``pulse``: the strength of the onset envelope's periodicity, the highest
  peak of its normalised autocorrelation at lags of a beat between 40 and
  240 beats per minute (1 for a metronome, about 0 for no pulse);
- ``chroma_change``: the mean and spread of the cosine distance between the
  chroma of consecutive half-second windows (about a beat): the harmony moving;
- ``repetition``: from the self-similarity of those windows' log-mel spectra
  less the clip's mean spectrum (how each window departs from the clip's
  average sound), the mean similarity of windows a second or more apart, and
  the best lag's excess over it (the clip returning to something it played);
- ``spectral_change``: the mean dB difference between the log-mel spectra of
  consecutive seconds;
- ``dynamics``: the spread of the half-second windows' loudness in dB.

A few seconds are the least these mean anything (a beat and its repeats, a
chord and the next): ``structure_features`` refuses clips under
``MIN_SECONDS``.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch

MIN_SECONDS = 4.0
NAMES = ("onset_rate", "pulse", "chroma_change", "chroma_change_spread", "similarity", "repetition",
         "spectral_change", "dynamics")
_WINDOW_SECONDS = 0.5
_RANGE_DB = 80.0
_ONSET_DB = 1.0  # an onset rises this far above the envelope's local mean (noise: 0.2 per second, music: 4)
_BEATS_PER_MINUTE = (40, 240)


def too_short(seconds: float) -> str | None:
    """Why clips of ``seconds`` cannot be measured for structure, or None."""
    if seconds >= MIN_SECONDS:
        return None
    return (f"clips of {seconds:.2f} s are too short for the structure-in-time measure, which needs "
            f"{MIN_SECONDS:g} s or more: train on longer clips (SpectrogramConfig frames), or score pieces of "
            f"consecutive generated clips joined end to end (quality.evaluate(..., join=k) against a "
            f"reference of k-clip length)")


def windows(x: np.ndarray, frames: int) -> np.ndarray:
    """[..., T] -> the means of consecutive windows of ``frames`` frames, [..., T // frames]."""
    count = x.shape[-1] // frames
    return x[..., :count * frames].reshape(*x.shape[:-1], count, frames).mean(-1)


def pulse_strength(envelope: np.ndarray, frame_rate: float) -> np.ndarray:
    """[N, T] onset envelopes -> [N]: the highest normalised autocorrelation at a beat's lag."""
    centred = envelope - envelope.mean(-1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * centred.shape[-1])
    autocorrelation = np.fft.irfft(spectrum * spectrum.conj())[..., :centred.shape[-1]]
    autocorrelation /= np.maximum(autocorrelation[..., :1], 1e-12)
    slow, fast = (round(60 / bpm * frame_rate) for bpm in _BEATS_PER_MINUTE)
    return autocorrelation[..., fast:slow + 1].max(-1)


def onset_rate(envelope: np.ndarray, sample_rate: int, hop_length: int) -> np.ndarray:
    seconds = envelope.shape[-1] * hop_length / sample_rate
    found = [librosa.onset.onset_detect(onset_envelope=e, sr=sample_rate, hop_length=hop_length, normalize=False,
                                        delta=_ONSET_DB) for e in envelope]
    return np.array([len(f) for f in found]) / seconds


def cosine_similarity(x: np.ndarray) -> np.ndarray:
    """[N, D, W] windows -> [N, W, W] cosine similarity between windows."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.einsum("ndi,ndj->nij", unit, unit)


def repetition(similarity: np.ndarray, min_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean similarity of windows ``min_lag`` or more apart, and the best lag's mean above it."""
    lags = range(min_lag, similarity.shape[-1])
    by_lag = np.stack([np.diagonal(similarity, lag, axis1=-2, axis2=-1).mean(-1) for lag in lags], -1)
    far = np.triu(np.ones(similarity.shape[-2:], dtype=bool), min_lag)
    mean = similarity[:, far].mean(-1)
    return mean, by_lag.max(-1) - mean


def structure_features(magnitude: np.ndarray, sample_rate: int, hop_length: int) -> torch.Tensor:
    """|STFT| [N, bins, frames] -> [N, 8] features of change over time (``NAMES``)."""
    frame_rate = sample_rate / hop_length
    reason = too_short(magnitude.shape[-1] / frame_rate)
    if reason:
        raise ValueError(reason)
    power = magnitude**2
    log_mel = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sample_rate, n_mels=64),
                                  ref=1.0, amin=1e-10, top_db=None)
    log_mel = np.maximum(log_mel, log_mel.max(axis=(-2, -1), keepdims=True) - _RANGE_DB)  # per clip, as heard
    envelope = librosa.onset.onset_strength(S=log_mel, sr=sample_rate)
    window, second = round(_WINDOW_SECONDS * frame_rate), round(frame_rate)

    chroma = windows(librosa.feature.chroma_stft(S=power, sr=sample_rate), window)
    chroma_steps = 1 - np.einsum("ndw,ndw->nw", *(c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
                                                 for c in (chroma[..., 1:], chroma[..., :-1])))
    spectra = windows(log_mel, window)
    moves = spectra - spectra.mean(-1, keepdims=True)  # a held sound, tone or noise, barely moves: ~0 similarity
    similarity, repeats = repetition(cosine_similarity(moves), min_lag=round(1 / _WINDOW_SECONDS))
    seconds = windows(log_mel, second)
    spectral_change = np.abs(np.diff(seconds, axis=-1)).mean(axis=(-2, -1))
    loudness = librosa.power_to_db(windows(power.mean(-2), window), amin=1e-10)

    parts = [onset_rate(envelope, sample_rate, hop_length), pulse_strength(envelope, frame_rate), chroma_steps.mean(-1),
             chroma_steps.std(-1), similarity, repeats, spectral_change, loudness.std(-1)]
    return torch.from_numpy(np.stack(parts, axis=-1)).float()


def join_clips(specs: torch.Tensor, k: int) -> torch.Tensor:
    """Model tensors [N, C, F, T] -> [N // k, C, F, k * T]: each k consecutive
    clips laid end to end in time, a longer piece made of unrelated clips."""
    if k < 1 or len(specs) < k:
        raise ValueError(f"cannot join {len(specs)} clips {k} at a time: use 1 <= k <= {len(specs)}")
    pieces = specs[:len(specs) // k * k].unflatten(0, (-1, k))
    return torch.cat(pieces.unbind(1), dim=-1)
