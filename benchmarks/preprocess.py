"""Preprocessing throughput, in seconds of audio per second of wall time.

- transform: clips -> model tensors, ours (``to_spectrogram``: torchaudio,
  batched) against ``librosa.stft`` with the same parameters (Hann window,
  n_fft, hop, centred with reflection padding) followed by the same
  compression in NumPy; both outputs are checked to agree.
- pipeline: audio files -> cached spectrogram dataset (``load_music_dataset``
  into an empty cache: decode, resample, cut, STFT, write), our whole path.

Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import librosa
import numpy as np
import torch

from musicdiff_nb.data import clip_starts, decode_audio, load_music_dataset
from musicdiff_nb.sources import demo_folder, folder_songs
from musicdiff_nb.spectrogram import SpectrogramConfig, to_spectrogram

import measure

BATCH = 64  # clips per call, as load_music_dataset's map


def audio_files(source: str, songs: int) -> list[Path]:
    """The first ``songs`` audio files of the folder, as ``load_music_dataset`` finds them."""
    folder = demo_folder() if source == "demo" else Path(source)
    return [Path(song["audio"]["path"]) for song in folder_songs(folder)[:songs]]


def clips(files: list[Path], cfg: SpectrogramConfig, max_clips: int | None) -> torch.Tensor:
    """Every whole clip of the songs, [N, clip_samples]."""
    cut = []
    for path in files:
        wave = decode_audio(str(path), cfg.sample_rate)
        cut += [wave[s:s + cfg.clip_samples] for s in clip_starts(len(wave), cfg.clip_samples, cfg.clip_samples)]
    return torch.stack(cut[:max_clips])


def librosa_spectrogram(waves: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """``to_spectrogram`` (complex representation) done with librosa.stft."""
    window = librosa.filters.get_window("hann", cfg.n_fft, fftbins=True)
    x = librosa.stft(waves, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.n_fft, window="hann",
                     center=True, pad_mode="reflect")[..., :-1, :] / np.linalg.norm(window)
    x = x * np.maximum(np.abs(x), 1e-12) ** (cfg.compression - 1) / cfg.scale
    return np.stack([x.real, x.imag], axis=-3)


def in_batches(fn, data):
    return [fn(data[i:i + BATCH]) for i in range(0, len(data), BATCH)]


def build_cache(source: str, cfg: SpectrogramConfig, songs: int, max_clips_per_song: int | None) -> int:
    """``load_music_dataset`` into a fresh, empty cache; the number of clips."""
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, MUSICDIFF_CACHE=cache):
        folder = str(demo_folder() if source == "demo" else source)
        ds = load_music_dataset(folder, cfg, max_songs=songs, max_clips_per_song=max_clips_per_song, keep_audio=False)
        return len(ds)


def run(cfg: SpectrogramConfig, source: str = "demo", songs: int = 10, max_clips_per_song: int | None = None,
        repeats: int = 5) -> dict:
    files = audio_files(source, songs)
    waves = clips(files, cfg, max_clips_per_song and max_clips_per_song * len(files))
    waves_np = waves.numpy()
    ours = torch.cat(in_batches(lambda w: to_spectrogram(w, cfg), waves))
    peer = np.concatenate(in_batches(lambda w: librosa_spectrogram(w, cfg), waves_np))
    disagreement = float((ours - torch.from_numpy(peer)).abs().max() / ours.abs().max())

    transform = measure.interleaved({
        "ours (torchaudio)": lambda: in_batches(lambda w: to_spectrogram(w, cfg), waves),
        "librosa.stft": lambda: in_batches(lambda w: librosa_spectrogram(w, cfg), waves_np),
    }, torch.device("cpu"), repeats=repeats)
    audio_seconds = len(waves) * cfg.clip_seconds
    cached = []
    pipeline = measure.interleaved({"ours (load_music_dataset)": lambda: cached.append(
        build_cache(source, cfg, songs, max_clips_per_song))}, torch.device("cpu"), repeats=max(1, repeats // 2))
    pipeline_seconds = cached[-1] * cfg.clip_seconds
    figures = {name: {"seconds": s, "audio_seconds": audio_seconds, "audio_s_per_s": audio_seconds / measure.median(s)}
               for name, s in transform.items()}
    figures.update({name: {"seconds": s, "audio_seconds": pipeline_seconds,
                           "audio_s_per_s": pipeline_seconds / measure.median(s)} for name, s in pipeline.items()})
    return {"benchmark": "preprocess", "spectrogram": cfg.__dict__, "songs": len(files), "clips": len(waves),
            "max_relative_disagreement": disagreement, "contenders": figures,
            "ratios": {"transform": figures["ours (torchaudio)"]["audio_s_per_s"]
                       / figures["librosa.stft"]["audio_s_per_s"]}}


def report(result: dict) -> str:
    spec = result["spectrogram"]
    lines = [f"preprocessing, {result['clips']} clips from {result['songs']} songs, {spec['sample_rate']} Hz, "
             f"n_fft {spec['n_fft']}, hop {spec['hop_length']}, {spec['frames']} frames; ours and librosa agree "
             f"to {result['max_relative_disagreement']:.1e} of the peak"]
    for name, f in result["contenders"].items():
        lines.append(f"  {name:28s} {f['audio_s_per_s']:10.0f} s of audio per s  "
                     f"({f['audio_seconds']:.0f} s of audio in {measure.spread(f['seconds'])})")
    lines.append(f"  ours / librosa.stft (transform): {result['ratios']['transform']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser, representations=("complex",))  # the representation librosa.stft computes
    parser.add_argument("--data", default="demo", help="'demo' or a folder of audio files")
    parser.add_argument("--songs", type=int, default=10)
    parser.add_argument("--max-clips-per-song", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        measure.chosen_run(args, device).spectrogram, args.data, args.songs, args.max_clips_per_song, args.repeats),
        report)


if __name__ == "__main__":
    main()
