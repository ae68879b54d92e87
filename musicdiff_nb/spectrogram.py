"""Waveform <-> model tensor.

Two representations of the STFT X (Hann window, Nyquist bin dropped so the
frequency axis is a power of two and divides by the model's patch size):

- ``"complex"`` (the seed's choice, the default): two channels, the real and
  imaginary part of the amplitude-compressed STFT  |X|^a * exp(i * angle X),
  divided by ``scale``. Compression evens out the huge dynamic range of
  music; it is undone exactly, so the inverse is lossless (up to the dropped
  Nyquist bin).
- ``"magnitude"``: one channel of log magnitude. The phase is thrown away and
  recovered by Griffin-Lim, which is lossy.
- ``"mel"``: one channel of log magnitude on ``n_mels`` mel bands (as
  audio-diffusion does); each band is the mean magnitude of the STFT bins
  under its triangle. Inverse: least squares back to the STFT bins
  (torchaudio's ``InverseMelScale``), then Griffin-Lim.

Shapes: ``to_spectrogram`` maps ``[..., samples]`` to ``[..., C, F, T]`` with
``C = cfg.channels``, ``F = cfg.freq_bins`` (``n_fft // 2``, or ``n_mels``) and ``T = 1 + samples // hop_length``.
A clip of ``cfg.clip_samples`` samples gives exactly ``cfg.frames`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torchaudio.functional as AF

REPRESENTATIONS = ("complex", "magnitude", "mel")

# Log-magnitude normalisation: log(|X| + eps) is shifted and scaled to about
# zero mean and unit variance on music (measured on the demo set).
_LOG_EPS = 1e-5
_LOG_SHIFT = -6.3
_LOG_SCALE = 2.5
_LOG_MAX = 20.0  # e^20: far above any music's magnitude, far below float32's overflow (e^88)


@dataclass(frozen=True)
class SpectrogramConfig:
    """How audio becomes the tensor the model sees.

    ``scale`` divides the compressed STFT so that music comes out with roughly
    unit standard deviation, the scale DDPM's unit-variance noise assumes.
    """

    sample_rate: int = 22050
    n_fft: int = 512
    hop_length: int = 256
    frames: int = 256
    representation: str = "complex"
    compression: float = 0.5
    scale: float = 0.12
    griffin_lim_iters: int = 64
    n_mels: int = 128

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation={self.representation!r}: use one of {REPRESENTATIONS}")
        if self.n_fft < 4 or self.n_fft % 2:
            raise ValueError(f"n_fft={self.n_fft}: use an even number >= 4, e.g. 512")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"hop_length={self.hop_length}: use 0 < hop_length <= n_fft={self.n_fft}")
        if self.frames < 2:
            raise ValueError(f"frames={self.frames}: a clip needs at least 2 frames")
        if not 0 < self.compression <= 1:
            raise ValueError(f"compression={self.compression}: use an exponent in (0, 1], e.g. 0.5")
        if self.sample_rate <= 0 or self.scale <= 0:
            raise ValueError("sample_rate and scale must be positive")
        if self.representation == "mel" and not 2 <= self.n_mels <= self.n_fft // 4:
            raise ValueError(f"n_mels={self.n_mels} with n_fft={self.n_fft}: a mel band needs a few STFT bins "
                             f"under it; use n_fft >= 4 * n_mels (e.g. n_fft={8 * self.n_mels})")

    @classmethod
    def preset(cls, name: str, **overrides) -> "SpectrogramConfig":
        """``"seed"``: 22.05 kHz, 256 bins x 256 frames (2.96 s clips), for a GPU.
        ``"small"``: 16 kHz, 128 bins x 128 frames (1.02 s clips), for a CPU.
        With ``representation="mel"`` a preset keeps its tensor's shape: as
        many mel bands as it has bins, from an STFT four times longer."""
        presets = {
            "seed": {},
            "small": dict(sample_rate=16000, n_fft=256, hop_length=128, frames=128),
        }
        if name not in presets:
            raise ValueError(f"unknown spectrogram preset {name!r}: use one of {sorted(presets)}")
        representation = overrides.pop("representation", "complex")
        return replace(cls(**presets[name]).with_representation(representation), **overrides)

    def with_representation(self, representation: str) -> "SpectrogramConfig":
        """The same clips in another representation, at the same tensor size:
        ``"mel"`` takes as many mel bands as there are STFT bins, from an STFT
        four times longer (so each band has bins under it)."""
        if representation == "mel" and self.representation != "mel":
            return replace(self, representation="mel", n_mels=self.freq_bins, n_fft=4 * self.n_fft)
        if representation != "mel" and self.representation == "mel":
            return replace(self, representation=representation, n_fft=self.n_fft // 4)
        return replace(self, representation=representation)

    @property
    def channels(self) -> int:
        return 2 if self.representation == "complex" else 1

    @property
    def freq_bins(self) -> int:
        return self.n_mels if self.representation == "mel" else self.n_fft // 2

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, F, T) of one clip."""
        return (self.channels, self.freq_bins, self.frames)

    @property
    def clip_samples(self) -> int:
        return self.hop_length * (self.frames - 1)

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    def frequencies(self) -> torch.Tensor:
        """Centre frequency of each bin (or mel band) in Hz."""
        if self.representation == "mel":
            return mel_filters(self).argmax(dim=0) * self.sample_rate / self.n_fft
        return torch.arange(self.freq_bins) * self.sample_rate / self.n_fft

    def times(self, frames: int | None = None) -> torch.Tensor:
        """Centre time of each frame in seconds."""
        return torch.arange(frames or self.frames) * self.hop_length / self.sample_rate


def _window(cfg: SpectrogramConfig, like: torch.Tensor) -> torch.Tensor:
    dtype = like.real.dtype if like.is_complex() else like.dtype
    return torch.hann_window(cfg.n_fft, device=like.device, dtype=dtype)


def mel_filters(cfg: SpectrogramConfig) -> torch.Tensor:
    """[n_fft//2, n_mels] weights: each mel band averages the STFT bins under its triangle."""
    fb = AF.melscale_fbanks(cfg.n_fft // 2, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate,
                            mel_scale="slaney")
    return fb / fb.sum(dim=0, keepdim=True)


def _log_magnitude(magnitude: torch.Tensor) -> torch.Tensor:
    """[..., F, T] magnitudes -> the normalised one-channel tensor [..., 1, F, T]."""
    return ((torch.log(magnitude + _LOG_EPS) - _LOG_SHIFT) / _LOG_SCALE).unsqueeze(-3)


def _exp_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_log_magnitude``. The log is capped at ``_LOG_MAX``
    (a magnitude far above any music's) so that a wild model output stays
    finite through exp and Griffin-Lim instead of becoming inf."""
    return (torch.exp((spec[..., 0, :, :] * _LOG_SCALE + _LOG_SHIFT).clamp(max=_LOG_MAX)) - _LOG_EPS).clamp_min(0)


def _magnitude(spec: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """|X| without the Nyquist bin, [..., n_fft//2, T], from a model tensor of any representation."""
    if cfg.representation == "complex":
        return (spec.pow(2).sum(dim=-3).sqrt() * cfg.scale).pow(1 / cfg.compression)
    magnitude = _exp_magnitude(spec)
    if cfg.representation == "mel":
        # the least-squares inverse of the filters (what torchaudio's InverseMelScale solves), kept >= 0
        magnitude = (torch.linalg.pinv(mel_filters(cfg).T).to(spec.device) @ magnitude).clamp_min(0)
    return magnitude


def stft(waveform: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    """Complex STFT ``[..., samples] -> [..., n_fft//2 + 1, T]``, normalised by
    the window's energy so levels do not depend on n_fft."""
    return AF.spectrogram(
        waveform, pad=0, window=_window(cfg, waveform), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.n_fft, power=None, normalized=True,
    )


def istft(spec: torch.Tensor, cfg: SpectrogramConfig, length: int | None = None) -> torch.Tensor:
    """Exact inverse of ``stft``."""
    return AF.inverse_spectrogram(
        spec, length=length, pad=0, window=_window(cfg, spec), n_fft=cfg.n_fft,
        hop_length=cfg.hop_length, win_length=cfg.n_fft, normalized=True,
    )


def compress(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """|x|^a * exp(i angle x) for complex x."""
    return x * x.abs().clamp_min(1e-12).pow(exponent - 1)


def decompress(x: torch.Tensor, exponent: float) -> torch.Tensor:
    return x * x.abs().pow(1 / exponent - 1)


def to_spectrogram(waveform: torch.Tensor, cfg: SpectrogramConfig = SpectrogramConfig()) -> torch.Tensor:
    """``[..., samples] -> [..., C, F, T]`` (see the module docstring)."""
    if waveform.is_complex() or not waveform.is_floating_point():
        raise TypeError(f"waveform must be a real floating-point tensor, got {waveform.dtype}")
    x = stft(waveform, cfg)[..., :-1, :]  # drop the Nyquist bin
    if cfg.representation == "complex":
        # compress(x) / scale, applied as one real gain per bin: fewer passes over complex data
        gain = x.abs().clamp_min_(1e-12).pow_(cfg.compression - 1).div_(cfg.scale)
        return torch.stack([x.real * gain, x.imag * gain], dim=-3)
    if cfg.representation == "mel":
        return _log_magnitude((x.abs().transpose(-1, -2) @ mel_filters(cfg).to(x.device)).transpose(-1, -2))
    return _log_magnitude(x.abs())


def to_waveform(spec: torch.Tensor, cfg: SpectrogramConfig = SpectrogramConfig(),
                length: int | None = None) -> torch.Tensor:
    """``[..., C, F, T] -> [..., samples]``; ``length`` trims or pads to that many samples."""
    if spec.ndim < 3 or spec.shape[-3:-1] != (cfg.channels, cfg.freq_bins):
        raise ValueError(
            f"spectrogram of shape {tuple(spec.shape)} does not fit {cfg.representation!r} with "
            f"n_fft={cfg.n_fft}: expected [..., {cfg.channels}, {cfg.freq_bins}, frames]"
        )
    spec = spec.float()
    if cfg.representation == "complex":
        spec = torch.cat([spec, torch.zeros_like(spec[..., :1, :])], dim=-2)  # the Nyquist bin
        x = torch.complex(spec[..., 0, :, :], spec[..., 1, :, :]) * cfg.scale
        return istft(decompress(x, cfg.compression), cfg, length)
    magnitude = _magnitude(spec, cfg)
    magnitude = torch.cat([magnitude, torch.zeros_like(magnitude[..., :1, :])], dim=-2)
    magnitude = magnitude * _window(cfg, spec).norm()  # griffinlim's STFT is not normalised
    return AF.griffinlim(
        magnitude, window=_window(cfg, spec), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.n_fft, power=1.0, n_iter=cfg.griffin_lim_iters, momentum=0.99,
        length=length, rand_init=False,
    )


def magnitude_db(spec: torch.Tensor, cfg: SpectrogramConfig, floor_db: float = -100.0) -> torch.Tensor:
    """The STFT magnitude in dB, [..., F, T], behind a model tensor [..., C, F, T]
    of any representation (for ``"mel"``: the mel bands' magnitude; what a
    spectrogram plot shows)."""
    spec = spec.float()
    # for mel, the bands themselves: what a mel spectrogram plot shows
    magnitude = _exp_magnitude(spec) if cfg.representation == "mel" else _magnitude(spec, cfg)
    return db(magnitude, floor_db)


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Signal-to-noise ratio of ``estimate`` against ``reference`` in dB."""
    noise = (reference - estimate).pow(2).sum()
    return float(10 * torch.log10(reference.pow(2).sum() / noise.clamp_min(1e-30)))


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor, cfg: SpectrogramConfig) -> float:
    """|| |X| - |X^| ||_F / || |X| ||_F: 0 is perfect; it ignores phase, so it
    is the fair measure for Griffin-Lim."""
    ref, est = stft(reference, cfg).abs(), stft(estimate, cfg).abs()
    return float((ref - est).norm() / ref.norm())


def round_trip_quality(waveform: torch.Tensor, cfg: SpectrogramConfig) -> dict[str, float]:
    """SNR (dB) and spectral convergence of ``to_waveform(to_spectrogram(w))``."""
    restored = to_waveform(to_spectrogram(waveform, cfg), cfg, length=waveform.shape[-1])
    return {"snr_db": snr_db(waveform, restored), "spectral_convergence": spectral_convergence(waveform, restored, cfg)}


def db(x: torch.Tensor, floor_db: float = -100.0) -> torch.Tensor:
    """Magnitude in dB (20 log10 |x|), floored."""
    return 20 * torch.log10(x.abs().clamp_min(10 ** (floor_db / 20)))


__all__ = [
    "SpectrogramConfig", "to_spectrogram", "to_waveform", "stft", "istft", "compress", "decompress", "mel_filters",
    "magnitude_db", "snr_db", "spectral_convergence", "round_trip_quality", "db",
]
