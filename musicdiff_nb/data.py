"""Music datasets: songs in, fixed-length clips and their spectrograms out.

``load_music_dataset(source)`` takes

- ``"demo"``: the 10 recorded themes of Debian's ``pushover-data`` (GPL-3+,
  music by Roberto Lorenz), fetched once with ``apt-get download``;
  label = theme;
- ``"scores"``: real compositions from the music21 corpus played by a General
  MIDI soundfont, labelled by composer, genre, mode, meter and instrument
  (see scores.py); ``max_songs`` sets how many are rendered (710: the seed's size);
- a folder of audio files (wav, flac, ogg, opus, mp3, aiff), with an optional
  ``metadata.csv`` whose ``file_name`` column names each file and whose
  ``labels`` column holds several labels separated by ``;`` (without the
  file, a song in a sub-folder gets the sub-folder's name as its label);
- a Hugging Face dataset id, or a local folder laid out like one (parquet);
  audio is read from the stored bytes by soundfile, never by datasets' own
  decoder (it needs torchcodec + FFmpeg).

Every song is decoded by soundfile, mixed to mono, resampled by torchaudio
and cut into clips of ``spectrogram.clip_samples`` samples. Clips and their
spectrograms are cached by ``datasets`` (``Dataset.from_generator`` +
``Dataset.map``), so a second call, and every epoch, does no audio work.
``load_data(run)`` loads a run's clips: its source, clips per song and split.

Bad input: a file that cannot be read or decoded, is empty, holds NaN/inf, is
silent or is shorter than one clip is skipped with a warning that names it,
and a summary counts the skips (kept beside the cache, so that every load
shows them); files of other types and broken links in a folder are left out,
with one warning that counts them, and a file listed twice in metadata.csv is
used once. Problems with the dataset as a whole (a metadata.csv naming
missing files or lacking its label column, no usable song at all, a folder
that does not exist) raise an error that says what to fix.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
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
from .scores import scores_folder
from .spectrogram import SpectrogramConfig, to_spectrogram

if TYPE_CHECKING:  # datasets takes seconds to import: the functions that load data import it
    import datasets

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
LABEL_COLUMNS = ("labels", "label", "tags", "genres", "genre")
NAME_COLUMNS = ("name", "title", "song", "file_name")
DEMO_PACKAGE = "pushover-data"
DEMO_THEMES = "usr/share/pushover/themes"
CACHE_VERSION = 2
HUB_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")  # "name" or "owner/name"


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


# -- sources ------------------------------------------------------------------

def demo_folder() -> Path:
    """The pushover-data themes: the installed package, or a copy fetched
    once with ``apt-get download`` + ``dpkg-deb -x`` into the cache."""
    installed = Path("/") / DEMO_THEMES
    if installed.is_dir():
        return installed
    root = cache_root() / DEMO_PACKAGE
    if (root / DEMO_THEMES).is_dir():
        return root / DEMO_THEMES
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise RuntimeError(
            f"the demo set comes from Debian's {DEMO_PACKAGE} package, and apt-get/dpkg-deb are not available "
            "here (macOS, Windows?). Use a folder of your own audio files, a Hugging Face dataset id, "
            "or the 'scores' source instead")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        fetched = subprocess.run(["apt-get", "download", DEMO_PACKAGE], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{DEMO_PACKAGE}_*.deb"))
        if not debs:
            raise RuntimeError(f"`apt-get download {DEMO_PACKAGE}` failed: {fetched.stderr.strip()}\n"
                               "Run `sudo apt-get update` once and try again")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        try:
            os.replace(Path(tmp) / "x", root)  # atomic: a half-extracted copy is never seen
        except OSError:
            if not (root / DEMO_THEMES).is_dir():
                raise
            # another process (a test worker, a torchrun rank) fetched it first: use that copy
    return root / DEMO_THEMES


def demo_songs() -> list[dict]:
    """The demo themes, each labelled with its theme (the file's name)."""
    return [{**song, "labels": [Path(song["name"]).stem]} for song in folder_songs(demo_folder())]


def split_labels(value) -> list[str]:
    """'rock; live, 1970s' -> ['rock', 'live, 1970s'] (labels are separated by ';'); lists pass through."""
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in value.split(";") if s.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def folder_songs(folder: Path, label_column: str = "labels") -> list[dict]:
    """Songs of a local folder: ``metadata.csv`` when present, else every audio
    file below it (labelled by its sub-folder)."""
    metadata = folder / "metadata.csv"
    if metadata.exists():
        return _metadata_songs(metadata, label_column)
    found = [p for p in folder.rglob("*") if not p.name.startswith(".")]
    broken = sorted(str(p.relative_to(folder)) for p in found if p.is_symlink() and not p.exists())
    if broken:
        warnings.warn(f"{folder}: skipped {len(broken)} broken link(s), whose target does not exist: "
                      f"{', '.join(broken[:5])}{', ...' if len(broken) > 5 else ''}; fix or remove them", stacklevel=3)
    found = [p for p in found if p.is_file()]
    files = sorted(p for p in found if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"{folder} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}) and no metadata.csv")
    ignored = Counter(p.suffix.lower() or p.name for p in found if p.suffix.lower() not in AUDIO_EXTENSIONS)
    if ignored:
        warnings.warn(f"{folder}: ignored {sum(ignored.values())} file(s) of other types {dict(ignored)}; "
                      f"audio is read from {', '.join(AUDIO_EXTENSIONS)} (convert others, e.g. with ffmpeg)",
                      stacklevel=3)
    return [{"name": str(p.relative_to(folder)), "audio": {"path": str(p), "bytes": None},
             "labels": [p.parent.name] if p.parent != folder else []} for p in files]


def _metadata_songs(metadata: Path, label_column: str) -> list[dict]:
    with open(metadata, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often start CSVs with a BOM
        reader = csv.DictReader(f)
        rows, columns = list(reader), reader.fieldnames or []
    if "file_name" not in columns:
        raise ValueError(f"{metadata}: needs a 'file_name' column (found {columns})")
    if label_column not in columns:
        raise ValueError(f"{metadata}: has no {label_column!r} column (found {columns}); add one with labels "
                         "separated by ';', or pass label_column= naming the column that holds them")
    missing = [r["file_name"] for r in rows if not (metadata.parent / r["file_name"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{metadata} names {len(missing)} file(s) that do not exist, e.g. {missing[:3]}: "
                                "fix the file names or remove those rows")
    rows = _first_row_of_each_file(metadata, rows)
    return [{"name": r["file_name"], "audio": {"path": str(metadata.parent / r["file_name"]), "bytes": None},
             "labels": split_labels(r[label_column])} for r in rows]


def _first_row_of_each_file(metadata: Path, rows: list[dict]) -> list[dict]:
    """A file listed twice would give its clips twice: keep its first row."""
    first = {}
    for r in rows:
        first.setdefault(r["file_name"], r)
    if len(first) < len(rows):
        repeated = [name for name, n in Counter(r["file_name"] for r in rows).items() if n > 1]
        warnings.warn(f"{metadata}: {len(repeated)} file(s) listed more than once, e.g. {repeated[:3]}: each is "
                      "used once, with its first row's labels; remove the extra rows", stacklevel=5)
    return list(first.values())


def hub_songs(source: str, split: str, audio_column: str | None, label_column: str | None):
    """A Hugging Face dataset (hub id or local parquet folder) with columns
    audio (undecoded), labels, name."""
    if Path(source).is_file():
        raise NotADirectoryError(f"{source} is a file: pass the folder that holds your audio files")
    if not Path(source).exists() and not HUB_ID.fullmatch(source):
        raise FileNotFoundError(f"there is no folder {source}: pass a folder of audio files, 'demo', 'scores', "
                                "or a Hugging Face dataset id (name or owner/name)")
    import datasets
    ds = datasets.load_dataset(source, split=split)
    audio_column = audio_column or next((c for c, f in ds.features.items() if isinstance(f, datasets.Audio)),
                                        "audio" if "audio" in ds.features else None)
    if audio_column not in ds.features:
        raise ValueError(f"dataset {source!r} has no audio column (columns: {list(ds.features)}): pass audio_column=")
    if isinstance(ds.features[audio_column], datasets.Audio):
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    label_column = label_column or next((c for c in LABEL_COLUMNS if c in ds.features), None)
    name_column = next((c for c in NAME_COLUMNS if c in ds.features and c != label_column), None)
    keep = [c for c in (audio_column, label_column, name_column) if c]
    ds = ds.select_columns(keep)
    names = _class_names(ds.features[label_column]) if label_column else None
    return ds, dict(audio=audio_column, labels=label_column, name=name_column, label_names=names)


def _class_names(feature) -> list[str] | None:
    import datasets
    feature = getattr(feature, "feature", feature)  # Sequence/List of ClassLabel
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _song_view(row: dict, index: int, columns: dict | None) -> dict:
    """A hub row as {name, audio, labels}; folder songs already are."""
    if columns is None:
        return row
    labels = row[columns["labels"]] if columns["labels"] else None
    if columns["label_names"] is not None and labels is not None:
        labels = [columns["label_names"][i] for i in (labels if isinstance(labels, list) else [labels])]
    audio = row[columns["audio"]]
    audio = audio if isinstance(audio, dict) else {"bytes": audio, "path": None}
    name = row[columns["name"]] if columns["name"] else (audio.get("path") or f"song {index}")
    return {"name": str(name), "audio": audio, "labels": split_labels(labels)}


# -- clips --------------------------------------------------------------------

def _generate_clips(songs, columns, sample_rate, clip_samples, clip_hop, max_clips_per_song, silence_db,
                    cache_key):
    skipped = []
    for index, row in enumerate(songs):
        song = _song_view(row, index, columns)
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


SUBSETS = ("all", "train", "held_out")
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


def _subset(songs, subset: str, share: float, seed: int):
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r}: use one of {SUBSETS}")
    if subset == "all" or (subset == "train" and share == 0):
        return songs
    held = set(held_out_songs(len(songs), share, seed))
    keep = [i for i in range(len(songs)) if (i in held) == (subset == "held_out")]
    return [songs[i] for i in keep] if isinstance(songs, list) else songs.select(keep)


def load_music_dataset(source: str = "demo", spectrogram: SpectrogramConfig = SpectrogramConfig(), *,
                       subset: str = "all", held_out: float = SPLIT["held_out"], split_seed: int = SPLIT["split_seed"],
                       split: str = "train", max_songs: int | None = None, max_clips_per_song: int | None = None,
                       clip_hop: int | None = None, silence_db: float = -50.0, keep_audio: bool = True,
                       audio_column: str | None = None, label_column: str | None = None) -> datasets.Dataset:
    """Clips of ``spectrogram.clip_samples`` samples with columns ``song``,
    ``clip``, ``start_seconds``, ``labels`` (a list of ClassLabel: the
    vocabulary is ``label_names(ds)``), ``audio`` (the clip's waveform, unless
    ``keep_audio=False``) and ``spectrogram`` [C, F, T].

    ``clip_hop`` (samples, default: one clip) sets the spacing of clips in a
    song; clips quieter than ``silence_db`` (RMS) are dropped.

    ``subset`` splits by song, never by clip: ``"train"`` leaves out the
    ``held_out`` share of the songs (0: none) (drawn by ``split_seed``, see
    ``held_out_songs``), ``"held_out"`` is only those songs (the real music a
    model is scored against, quality.py), ``"all"`` is every song.
    """
    import datasets
    clip_hop = clip_hop or spectrogram.clip_samples
    columns = None
    if source == "scores":
        songs = folder_songs(scores_folder(max_songs), label_column or "labels")
    elif source == "demo":
        songs = demo_songs()
    elif Path(source).is_dir() and not _looks_like_hub_folder(Path(source)):
        songs = folder_songs(Path(source), label_column or "labels")
    else:
        songs, columns = hub_songs(source, split, audio_column, label_column)
    if max_songs is not None:
        songs = songs[:max_songs] if isinstance(songs, list) else songs.select(range(min(max_songs, len(songs))))
    if len(songs) == 0:
        raise ValueError(f"{source!r} holds no songs")
    songs = _subset(songs, subset, held_out, split_seed)
    if len(songs) == 0:
        raise ValueError(f"{source!r} has a single song: none can be held out of training to score the model "
                         "against; train on it all with held_out=0 (command line: --held-out 0)")
    identity = _file_stamps(songs) if columns is None else [source, split, songs._fingerprint]
    vocabulary = _vocabulary(songs, columns)

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
            gen_kwargs=dict(songs=tuple(songs) if isinstance(songs, list) else songs, columns=columns,
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


def load_data(run: RunConfig, subset: str = "train", spectrogram: SpectrogramConfig | None = None, **options):
    """The run's clips (``load_music_dataset``): ``subset="train"`` the songs it
    trains on, ``"held_out"`` the songs kept to score it, ``"all"`` every song;
    in ``spectrogram`` (the run's by default); ``options`` override the run's
    (``max_clips_per_song=None``) or add to them (``keep_audio=False``)."""
    d = run.data
    chosen = dict(held_out=d.held_out, split_seed=d.split_seed, max_songs=d.max_songs,
                  max_clips_per_song=d.max_clips_per_song)
    return load_music_dataset(d.source, spectrogram or run.spectrogram, subset=subset, **{**chosen, **options})


def _looks_like_hub_folder(folder: Path) -> bool:
    """A local folder laid out like a hub dataset (parquet/arrow files, no audio files)."""
    data_files = any(folder.rglob("*.parquet")) or any(folder.rglob("*.arrow"))
    return data_files and not any(p.suffix.lower() in AUDIO_EXTENSIONS for p in folder.rglob("*"))


def _vocabulary(songs, columns) -> list[str]:
    if columns is None:
        return sorted({label for s in songs for label in s["labels"]})
    if columns["label_names"] is not None:
        return list(columns["label_names"])
    if not columns["labels"]:
        return []
    return sorted({label for value in songs[columns["labels"]] for label in split_labels(value)})


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
