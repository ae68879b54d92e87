"""The ``"scores"`` source: real compositions from the music21 corpus, played
by a General MIDI soundfont, with several labels per song.

Each work becomes a song of at most ``SONG_SECONDS`` seconds: music21 parses
the score and writes MIDI, ``midirenderer`` plays it with the TimGM6mb
soundfont that ``pretty_midi`` bundles (all three are plain PyPI wheels), and
the audio is stored as FLAC beside a ``metadata.csv`` that ``sources.py`` reads
like any local folder. A song's labels are its composer, its genre, its mode
(music21's key analysis: major or minor), its meter (from the time signature)
and the instrument that plays it: the string quartets are played by violins,
viola and cello; a score whose collection is sung or played on several
instruments is played by one of them, picked by a hash of its file name.

Songs are picked round-robin over the collections, so a small size already
spans every composer; ``scores_folder(710)`` gives the seed's 710 songs. A
work that music21 cannot read or turn into MIDI (some quartet movements have
repeats it cannot expand) is skipped with a warning. The folder is rendered
once into the cache and appears atomically.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm.auto import tqdm

from .files import atomic_write, cache_root

# music21, pretty_midi and midirenderer are optional (pip install musicdiff_nb[conditioning]): imported where used

SAMPLE_RATE = 22050
SONG_SECONDS = 30.0
DEFAULT_SONGS = 120
PEAK = 0.9
FOLDER_VERSION = 1

# General MIDI programs (0-based)
PROGRAMS = {"piano": 0, "accordion": 21, "organ": 19, "violin": 40, "viola": 41, "cello": 42, "flute": 73,
            "choir": 52}
QUARTET = ("violin", "violin", "viola", "cello")


@dataclass(frozen=True)
class Collection:
    """Works of one composer and genre in the music21 corpus; ``instruments``
    is what may play them (``"strings"``: a string quartet)."""

    composer: str
    genre: str
    pattern: str
    instruments: tuple[str, ...]

    def paths(self) -> list[Path]:
        from music21 import corpus
        return sorted(p for p in corpus.getCorePaths() if p.match(self.pattern))


COLLECTIONS = (
    Collection("bach", "chorale", "bach/bwv*.mxl", ("choir", "organ")),
    Collection("traditional", "folk tune", "ryansMammoth/*.abc", ("violin", "flute", "accordion", "piano")),
    Collection("palestrina", "mass", "palestrina/*.krn", ("choir", "organ")),
    Collection("monteverdi", "madrigal", "monteverdi/madrigal.*.mxl", ("choir",)),
    Collection("mozart", "string quartet", "mozart/*/movement*.mxl", ("strings",)),
    Collection("haydn", "string quartet", "haydn/*/movement*.mxl", ("strings",)),
    Collection("beethoven", "string quartet", "beethoven/*/movement*.mxl", ("strings",)),
    Collection("schumann", "string quartet", "schumann_robert/opus41no1/movement*.mxl", ("strings",)),
)


def works() -> list[tuple[Collection, Path]]:
    """Every work of every collection, round-robin over the collections."""
    queues = [[(c, p) for p in c.paths()] for c in COLLECTIONS]
    picked = []
    for i in range(max(len(q) for q in queues)):
        picked += [q[i] for q in queues if i < len(q)]
    return picked


def soundfont() -> bytes:
    """The General MIDI soundfont bundled with pretty_midi (TimGM6mb, GPL-2)."""
    import pretty_midi
    return (Path(pretty_midi.__file__).parent / "TimGM6mb.sf2").read_bytes()


def pick_instrument(collection: Collection, path: Path) -> str:
    return collection.instruments[zlib.crc32(path.name.encode()) % len(collection.instruments)]


def excerpt(score, seconds: float):
    """The measures of ``score`` that start within its first ``seconds``."""
    bpm = score.metronomeMarkBoundaries()[0][2].getQuarterBPM() or 120.0
    measures = list(score.parts[0].getElementsByClass("Measure"))
    kept = [m.number for m in measures if m.offset < seconds * bpm / 60]
    return score.measures(kept[0], kept[-1]) if kept else score


def orchestrate(score, instrument: str):
    """Replace every part's instrument: one GM program for all parts, or a
    string quartet's violin, violin, viola, cello."""
    from music21 import instrument as m21instrument
    for index, part in enumerate(score.parts):
        for old in list(part.recurse().getElementsByClass(m21instrument.Instrument)):
            old.activeSite.remove(old)
        name = QUARTET[min(index, 3)] if instrument == "strings" else instrument
        player = m21instrument.Instrument()
        player.midiProgram = PROGRAMS[name]
        part.insert(0, player)
    return score


def score_labels(score, collection: Collection, instrument: str) -> list[str]:
    """Composer, genre, mode, meter and instrument of an (excerpted) score."""
    from music21 import meter
    labels = [collection.composer, collection.genre]
    mode = score.analyze("key").mode
    if mode in ("major", "minor"):
        labels.append(mode)
    signature = score.recurse().getElementsByClass(meter.TimeSignature).first()
    if signature is not None and signature.beatCount in (2, 3, 4):
        labels.append(f"{signature.beatCountName.lower()} meter")
    return labels + [instrument]


def render(score, font: bytes, seconds: float = SONG_SECONDS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MIDI of ``score`` played by ``font``: mono float32 at ``sample_rate``,
    at most ``seconds`` long, peak-normalised."""
    import midirenderer
    from music21 import midi
    data = midi.translate.streamToMidiFile(score).writestr()
    samples, rate = sf.read(io.BytesIO(midirenderer.render_wave_from(font, data)), dtype="float32", always_2d=True)
    wave = AF.resample(torch.from_numpy(samples.mean(axis=1)), rate, sample_rate)[: int(seconds * sample_rate)]
    peak = wave.abs().max()
    if peak == 0:
        raise ValueError("renders to silence")
    return (wave * (PEAK / peak)).numpy()


def render_work(collection: Collection, path: Path, font: bytes) -> tuple[np.ndarray, list[str]]:
    from music21 import corpus
    score = corpus.parse(path)
    score = excerpt(score, SONG_SECONDS)
    instrument = pick_instrument(collection, path)
    labels = score_labels(score, collection, instrument)
    return render(orchestrate(score, instrument), font), labels


def song_name(collection: Collection, path: Path) -> str:
    return f"{collection.composer}-{path.parent.name}-{path.stem}.flac".replace(" ", "_")


def scores_folder(size: int | None = None) -> Path:
    """A folder of ``size`` rendered songs (default ``DEFAULT_SONGS``) with a
    ``metadata.csv`` (``file_name,labels``), rendered once into the cache."""
    size = DEFAULT_SONGS if size is None else size
    if size < 1:
        raise ValueError(f"size={size}: ask for at least one song")
    folder = cache_root() / "scores" / f"v{FOLDER_VERSION}-{size}-songs"
    if (folder / "metadata.csv").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        _render_folder(Path(tmp) / "x", size)
        try:
            os.rename(Path(tmp) / "x", folder)  # atomic: a half-rendered folder is never seen
        except OSError:
            if not (folder / "metadata.csv").is_file():  # not just another process finishing first
                raise
    return folder


def _render_folder(out: Path, size: int):
    _check_renderer()
    out.mkdir()
    font, rows, skipped = soundfont(), [], []
    queue = iter(works())
    with tqdm(total=size, desc="rendering scores", unit="song") as bar:
        while len(rows) < size:
            collection, path = next(queue, (None, None))
            if path is None:
                break
            try:
                wave, labels = render_work(collection, path, font)
            except Exception as e:  # music21 raises many kinds of errors on scores it cannot read or export
                skipped.append(path.name)
                warnings.warn(f"skipped {collection.composer}/{path.name}: {type(e).__name__}: {e}", stacklevel=2)
                continue
            name = song_name(collection, path)
            sf.write(out / name, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            rows.append({"file_name": name, "labels": ";".join(labels), "work": path.name})
            bar.update(1)
    if len(rows) < size:
        warnings.warn(f"the corpus gave {len(rows)} songs, fewer than the {size} asked for", stacklevel=2)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} work(s) that could not be rendered", stacklevel=2)
    with atomic_write(out / "metadata.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=["file_name", "labels", "work"])
        writer.writeheader()
        writer.writerows(rows)


def _check_renderer():
    missing = [name for name in ("music21", "midirenderer", "pretty_midi") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the 'scores' source needs {', '.join(missing)}: pip install {' '.join(missing)}")
