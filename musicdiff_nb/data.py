"""What becomes of songs: decoded, cut into clips, cached with their
spectrograms, split by song into training and held-out songs, and turned
into tensors. Where the songs come from (the demo set, a folder, the hub,
"scores") is sources.py's.

Every song is decoded by soundfile, mixed to mono, resampled by torchaudio
and cut into clips of ``spectrogram.clip_samples`` samples. Clips and their
spectrograms are cached by ``datasets`` (``Dataset.from_generator`` +
``Dataset.map``), so a second call, and every epoch, does no audio work.
``load_data(run)`` loads a run's clips: its source, clips per song and split.

Bad input: a file that cannot be read or decoded, is empty, holds NaN/inf, is
silent or is shorter than one clip is skipped with a warning that names it,
and a summary counts the skips (kept beside the cache, so that every load
shows them). No usable song at all raises an error that says what to fix.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .config import DataConfig, RunConfig
from .files import atomic_write, cache_root
from .sources import find_songs, label_vocabulary, song_view
from .spectrogram import SpectrogramConfig, to_spectrogram

if TYPE_CHECKING:  # datasets takes seconds to import: the functions that load data import it
    import datasets

CACHE_VERSION = 2


class AudioError(ValueError):
    """A song that cannot be used; the message names it and says why."""

    def __init__(self, name: str, reason: str, detail: str = ""):
        super().__init__(f"{name}: {reason}{detail}")
        self.reason = reason


# -- decoding -----------------------------------------------------------------

def decode_audio(audio, sample_rate: int, name: str = "") -> torch.Tensor:
    """Mono float32 waveform at ``sample_rate`` from a path, bytes, or a
    ``{"path", "bytes"}`` dict (a datasets Audio cell with decode=False)."""
    if isinstance(audio, dict):
        audio = audio.get("bytes") or audio.get("path")
    name = name or (str(audio) if isinstance(audio, (str, Path)) else "<bytes>")
    if audio is None or (len(audio) if isinstance(audio, (bytes, bytearray)) else os.path.getsize(audio)) == 0:
        raise AudioError(name, "empty file")
    if isinstance(audio, (str, Path)) and not os.access(audio, os.R_OK):
        raise AudioError(name, "unreadable", f" (permission denied): fix its permissions, e.g. `chmod a+r {audio}`")
    try:
        samples, rate = sf.read(io.BytesIO(audio) if isinstance(audio, (bytes, bytearray)) else audio,
                                dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(name, "cannot be decoded", f" ({e}): it is corrupt, truncated or in a format soundfile "
                         "does not read; re-export it as WAV, FLAC, OGG, Opus, MP3 or AIFF "
                         "(e.g. `ffmpeg -i in.m4a out.flac`)") from None
    if samples.size == 0:
        raise AudioError(name, "no samples")
    if not np.isfinite(samples).all():
        raise AudioError(name, "NaN or inf samples")
    wave = torch.from_numpy(samples).mean(dim=1)
    return AF.resample(wave, rate, sample_rate) if rate != sample_rate else wave


def rms_db(wave: torch.Tensor) -> float:
    return float(10 * torch.log10(wave.pow(2).mean().clamp_min(1e-20)))


def clip_starts(num_samples: int, clip_samples: int, clip_hop: int) -> range:
    return range(0, num_samples - clip_samples + 1, clip_hop)


# -- clips --------------------------------------------------------------------

def _generate_clips(songs, columns, sample_rate, clip_samples, clip_hop, max_clips_per_song, silence_db,
                    cache_key):
    skipped = []
    for index, row in enumerate(songs):
        song = song_view(row, index, columns)
        try:
            wave = decode_audio(song["audio"], sample_rate, song["name"])
        except AudioError as e:
            skipped.append(e)
            continue
        kept = 0
        for start in clip_starts(len(wave), clip_samples, clip_hop):
            clip = wave[start:start + clip_samples]
            if rms_db(clip - clip.mean()) < silence_db:  # a DC offset is not sound
                continue
            yield {"song": song["name"], "clip": kept, "start_seconds": start / sample_rate,
                   "labels": song["labels"], "audio": clip.numpy()}
            kept += 1
            if max_clips_per_song and kept >= max_clips_per_song:
                break
        if kept == 0:
            if len(wave) < clip_samples:
                reason = "shorter than one clip"
                detail = f"{len(wave) / sample_rate:.2f} s < {clip_samples / sample_rate:.2f} s"
            else:
                reason, detail = "silent", f"no clip above {silence_db} dB RMS"
            skipped.append(AudioError(song["name"], reason, f" ({detail})"))
    # kept with the cache, so that every load shows it, not only the one that builds the cache
    with atomic_write(_skip_report_path(cache_key), "w") as f:
        json.dump(_skip_report(skipped), f)


def _skip_report(skipped: list[AudioError]) -> list[str]:
    """A line per skipped song, then a summary that counts them by reason."""
    if not skipped:
        return []
    reasons = ", ".join(f"{count} {reason}" for reason, count in Counter(e.reason for e in skipped).most_common())
    return [f"skipped {e}" for e in skipped] + [f"skipped {len(skipped)} song(s): {reasons}"]


def _skip_report_path(cache_key: str) -> Path:
    return cache_root() / "datasets" / "skipped" / f"{cache_key}.json"


def _add_spectrograms(batch, cfg: SpectrogramConfig):
    wave = torch.as_tensor(np.asarray(batch["audio"], dtype=np.float32))
    return {"spectrogram": to_spectrogram(wave, cfg).numpy()}


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cache_name(key: str) -> dict:
    """``Dataset.from_generator``'s name for the cache: ``key`` itself from
    datasets 4.3 on; older releases (Colab ships 4.0) take no ``fingerprint``
    and hash ``gen_kwargs`` instead, which hold ``key`` too."""
    import datasets
    named = "fingerprint" in inspect.signature(datasets.Dataset.from_generator).parameters
    return {"fingerprint": key} if named else {}


def _file_stamps(songs: list[dict]) -> list:
    stamps = []
    for s in songs:
        stat = os.stat(s["audio"]["path"])
        stamps.append((s["name"], s["labels"], s["audio"]["path"], stat.st_size, stat.st_mtime_ns))
    return stamps


SONG_SETS = ("all", "train", "held_out")
SPLIT = {"held_out": DataConfig.held_out, "split_seed": DataConfig.split_seed}  # the split of every run


def held_out_songs(num_songs: int, share: float = 0.2, seed: int = 0) -> list[int]:
    """Indices of the songs kept out of training: ``share`` of them (at least
    one when there are two or more and ``share`` > 0), drawn by ``seed``:
    the same songs on every machine and every run."""
    if not 0 <= share < 1:
        raise ValueError(f"held_out={share}: give the share of songs to hold out, between 0 and 1 (e.g. 0.2)")
    count = min(max(1, round(share * num_songs)), num_songs - 1) if num_songs > 1 and share > 0 else 0
    order = torch.randperm(num_songs, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:count].tolist())


def _song_set(songs, chosen: str, share: float, seed: int):
    """The songs of ``chosen`` (one of ``SONG_SETS``): all, or those training keeps or holds out."""
    if chosen not in SONG_SETS:
        raise ValueError(f"songs={chosen!r}: use one of {SONG_SETS}")
    if chosen == "all" or (chosen == "train" and share == 0):
        return songs
    held = set(held_out_songs(len(songs), share, seed))
    keep = [i for i in range(len(songs)) if (i in held) == (chosen == "held_out")]
    return [songs[i] for i in keep] if isinstance(songs, list) else songs.select(keep)


def load_music_dataset(source: str = "demo", spectrogram: SpectrogramConfig = SpectrogramConfig(), *,
                       songs: str = "all", held_out: float = SPLIT["held_out"], split_seed: int = SPLIT["split_seed"],
                       hub_split: str = "train", max_songs: int | None = None, max_clips_per_song: int | None = None,
                       clip_hop: int | None = None, silence_db: float = -50.0, keep_audio: bool = True,
                       audio_column: str | None = None, label_column: str | None = None) -> datasets.Dataset:
    """Clips of ``spectrogram.clip_samples`` samples with columns ``song``,
    ``clip``, ``start_seconds``, ``labels`` (a list of ClassLabel: the
    vocabulary is ``label_names(ds)``), ``audio`` (the clip's waveform, unless
    ``keep_audio=False``) and ``spectrogram`` [C, F, T].

    ``clip_hop`` (samples, default: one clip) sets the spacing of clips in a
    song; clips quieter than ``silence_db`` (RMS) are dropped.

    ``source``: where the songs come from (``sources.find_songs``: "demo",
    "scores", a folder, a hub dataset id, whose split ``hub_split`` is read),
    the first ``max_songs`` of them.

    ``songs`` picks songs, never clips: ``"train"`` the songs training keeps,
    all but the ``held_out`` share of them (0: none) (drawn by ``split_seed``,
    see ``held_out_songs``), ``"held_out"`` only those held out (the real music
    a model is scored against, quality.py), ``"all"`` every song.
    """
    import datasets
    clip_hop = clip_hop or spectrogram.clip_samples
    found, columns = find_songs(source, max_songs=max_songs, hub_split=hub_split, audio_column=audio_column,
                                label_column=label_column)
    found = _song_set(found, songs, held_out, split_seed)
    if len(found) == 0:
        raise ValueError(f"{source!r} has a single song: none can be held out of training to score the model "
                         "against; train on it all with held_out=0 (command line: --held-out 0)")
    identity = _file_stamps(found) if columns is None else [source, hub_split, found._fingerprint]
    vocabulary = label_vocabulary(found, columns)

    features = datasets.Features({
        "song": datasets.Value("string"), "clip": datasets.Value("int32"),
        "start_seconds": datasets.Value("float32"),
        "labels": datasets.List(datasets.ClassLabel(names=vocabulary)),
        "audio": datasets.List(datasets.Value("float32")),
    })
    clip_args = dict(sample_rate=spectrogram.sample_rate, clip_samples=spectrogram.clip_samples,
                     clip_hop=clip_hop, max_clips_per_song=max_clips_per_song, silence_db=silence_db)
    key = _fingerprint(CACHE_VERSION, identity, clip_args)
    try:
        clips = datasets.Dataset.from_generator(
            _generate_clips, features=features, cache_dir=str(cache_root() / "datasets"), **_cache_name(key),
            # a tuple, not a list: datasets would shard a list into one generator call per song,
            # and the summary of skipped songs would count each song on its own
            gen_kwargs=dict(songs=tuple(found) if isinstance(found, list) else found, columns=columns,
                            cache_key=key, **clip_args))
    except ValueError as e:  # datasets refuses to build a split of zero rows
        if "corresponds to no data" not in str(e):
            raise
        clips = []
    report = _skip_report_path(key)
    for line in json.loads(report.read_text()) if report.exists() else []:
        warnings.warn(line, stacklevel=2)  # at the line that called load_music_dataset
    if len(clips) == 0:
        raise ValueError(f"{source!r}: no usable clip in any song (see the warnings above for why each was skipped)")
    features["spectrogram"] = datasets.Array3D(shape=spectrogram.shape, dtype="float32")
    clips = clips.with_format("numpy").map(
        _add_spectrograms, batched=True, batch_size=64, fn_kwargs={"cfg": spectrogram}, features=features,
        desc="spectrograms")
    if not keep_audio:
        clips = clips.remove_columns("audio")
    return clips.with_format(None)


def load_data(run: RunConfig, songs: str = "train", spectrogram: SpectrogramConfig | None = None, **options):
    """The run's clips (``load_music_dataset``): ``songs="train"`` the songs it
    trains on, ``"held_out"`` the songs kept to score it, ``"all"`` every song;
    in ``spectrogram`` (the run's by default); ``options`` override the run's
    (``max_clips_per_song=None``) or add to them (``keep_audio=False``)."""
    d = run.data
    chosen = dict(held_out=d.held_out, split_seed=d.split_seed, max_songs=d.max_songs,
                  max_clips_per_song=d.max_clips_per_song)
    return load_music_dataset(d.source, spectrogram or run.spectrogram, songs=songs, **{**chosen, **options})


# -- from a dataset to tensors ------------------------------------------------

def label_names(ds: datasets.Dataset) -> list[str]:
    """The label vocabulary of a dataset from ``load_music_dataset``."""
    return list(ds.features["labels"].feature.names)


def multi_hot(ds: datasets.Dataset) -> torch.Tensor:
    """[N, num_labels] float tensor with a 1 for each label of each clip."""
    vectors = torch.zeros(len(ds), len(label_names(ds)))
    for row, ids in enumerate(ds["labels"]):
        vectors[row, ids] = 1.0
    return vectors


def spectrograms(ds: datasets.Dataset) -> torch.Tensor:
    """All clips' spectrograms as one [N, C, F, T] tensor."""
    return ds.with_format("torch", columns=["spectrogram"])[:]["spectrogram"]


def condition_vectors(ds: datasets.Dataset) -> torch.Tensor:
    """[N, D]: the dataset's ``cond`` column, else its multi-hot labels."""
    if "cond" in ds.features:
        return ds.with_format("torch", columns=["cond"])[:]["cond"].float()
    return multi_hot(ds)


def training_tensors(data, conditional: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(clips [N, C, F, T], condition vectors [N, D] or None) from a tensor, a
    (clips, cond) pair, or a dataset (whose ``cond`` column, else multi-hot
    labels, conditions the model)."""
    if isinstance(data, torch.Tensor):
        return data.float(), None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0].float(), (data[1].float() if conditional else None)
    import datasets
    if isinstance(data, datasets.Dataset):
        return spectrograms(data).float(), condition_vectors(data) if conditional else None
    raise TypeError(f"cannot train on {type(data).__name__}: pass a tensor [N, C, F, T], a (clips, cond) pair, "
                    "or a dataset from load_music_dataset")
