"""Where songs come from: ``find_songs(source)`` takes

- ``"demo"``: the 10 recorded themes of Debian's ``pushover-data`` (GPL-3+,
  music by Roberto Lorenz), fetched once with ``apt-get download``;
  label = theme;
- ``"scores"``: real compositions from the music21 corpus played by a General
  MIDI soundfont, labelled by composer, genre, mode, meter and instrument
  (scores.py renders them into a folder); ``max_songs`` sets how many are
  rendered (710: the seed's size);
- a folder of audio files (wav, flac, ogg, opus, mp3, aiff), with an optional
  ``metadata.csv`` whose ``file_name`` column names each file and whose
  ``labels`` column holds several labels separated by ``;`` (without the
  file, a song in a sub-folder gets the sub-folder's name as its label);
- a Hugging Face dataset id, or a local folder laid out like one (parquet),
  of which ``hub_split`` is read; audio stays the stored bytes (data.py
  decodes them with soundfile, never with datasets' own decoder, which needs
  torchcodec + FFmpeg).

A song is ``{"name", "audio": {"path", "bytes"}, "labels": [...]}``; a hub
dataset's rows become songs one at a time (``song_view``). What becomes of
the songs (clips, cache, split, tensors) is data.py's.

Bad input: files of other types and broken links in a folder are left out,
with one warning that counts them, and a file listed twice in metadata.csv is
used once. A metadata.csv naming missing files or lacking its label column,
a folder with no audio, or one that does not exist, raise an error that says
what to fix.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from .files import cache_root
from .scores import scores_folder

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
LABEL_COLUMNS = ("labels", "label", "tags", "genres", "genre")
NAME_COLUMNS = ("name", "title", "song", "file_name")
DEMO_PACKAGE = "pushover-data"
DEMO_THEMES = "usr/share/pushover/themes"
HUB_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")  # "name" or "owner/name"


def find_songs(source: str, *, max_songs: int | None = None, hub_split: str = "train",
               audio_column: str | None = None, label_column: str | None = None):
    """(songs, columns): the first ``max_songs`` songs of ``source`` (see the
    module docstring). ``songs`` is a list of songs, or for a hub dataset the
    dataset itself, whose ``columns`` (``hub_songs``) ``song_view`` reads;
    ``columns`` is None for a list."""
    columns = None
    if source == "scores":
        songs = folder_songs(scores_folder(max_songs), label_column or "labels")
    elif source == "demo":
        songs = demo_songs()
    elif Path(source).is_dir() and not looks_like_hub_folder(Path(source)):
        songs = folder_songs(Path(source), label_column or "labels")
    else:
        songs, columns = hub_songs(source, hub_split, audio_column, label_column)
    if max_songs is not None:
        songs = songs[:max_songs] if isinstance(songs, list) else songs.select(range(min(max_songs, len(songs))))
    if len(songs) == 0:
        raise ValueError(f"{source!r} holds no songs")
    return songs, columns


# -- the demo set -------------------------------------------------------------

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


# -- a folder of audio files --------------------------------------------------

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
                      f"{', '.join(broken[:5])}{', ...' if len(broken) > 5 else ''}; fix or remove them", stacklevel=4)
    found = [p for p in found if p.is_file()]
    files = sorted(p for p in found if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"{folder} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}) and no metadata.csv")
    ignored = Counter(p.suffix.lower() or p.name for p in found if p.suffix.lower() not in AUDIO_EXTENSIONS)
    if ignored:
        warnings.warn(f"{folder}: ignored {sum(ignored.values())} file(s) of other types {dict(ignored)}; "
                      f"audio is read from {', '.join(AUDIO_EXTENSIONS)} (convert others, e.g. with ffmpeg)",
                      stacklevel=4)
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
                      "used once, with its first row's labels; remove the extra rows", stacklevel=6)
    return list(first.values())


# -- a Hugging Face dataset ---------------------------------------------------

def looks_like_hub_folder(folder: Path) -> bool:
    """A local folder laid out like a hub dataset (parquet/arrow files, no audio files)."""
    data_files = any(folder.rglob("*.parquet")) or any(folder.rglob("*.arrow"))
    return data_files and not any(p.suffix.lower() in AUDIO_EXTENSIONS for p in folder.rglob("*"))


def hub_songs(source: str, hub_split: str, audio_column: str | None, label_column: str | None):
    """A Hugging Face dataset (hub id or local parquet folder), its split
    ``hub_split``, with columns audio (undecoded), labels, name; and which
    column is which."""
    if Path(source).is_file():
        raise NotADirectoryError(f"{source} is a file: pass the folder that holds your audio files")
    if not Path(source).exists() and not HUB_ID.fullmatch(source):
        raise FileNotFoundError(f"there is no folder {source}: pass a folder of audio files, 'demo', 'scores', "
                                "or a Hugging Face dataset id (name or owner/name)")
    import datasets
    ds = datasets.load_dataset(source, split=hub_split)
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


def song_view(row: dict, index: int, columns: dict | None) -> dict:
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


def label_vocabulary(songs, columns: dict | None) -> list[str]:
    """Every label of the songs, sorted (a hub dataset's class names in their order)."""
    if columns is None:
        return sorted({label for s in songs for label in s["labels"]})
    if columns["label_names"] is not None:
        return list(columns["label_names"])
    if not columns["labels"]:
        return []
    return sorted({label for value in songs[columns["labels"]] for label in split_labels(value)})
