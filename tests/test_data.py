"""Datasets from every kind of source, built from slices of real music."""

import io
import os
import shutil
import warnings
from pathlib import Path

import datasets
import pytest
import soundfile as sf
import torch

from musicdiff_nb import label_names, load_music_dataset, multi_hot, spectrograms
from musicdiff_nb.data import AudioError, decode_audio, training_tensors

from conftest import TEST_SPEC


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICDIFF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_song(path, demo_music, seconds, rate=22050, channels=1, song=0):
    """A slice of real music resampled to ``rate`` with ``channels`` channels."""
    import torchaudio.functional as AF
    wave = AF.resample(demo_music[song, : int(seconds * 22050)], 22050, rate)
    sf.write(path, wave[:, None].repeat(1, channels).numpy() * torch.linspace(0.5, 1, channels).numpy(), rate)
    return path


def test_local_folder_with_multi_label_metadata(tmp_path, cache, demo_music):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "a.wav", demo_music, 2.0, rate=44100, channels=2, song=0)   # stereo, 44.1 kHz
    write_song(folder / "b.flac", demo_music, 1.5, rate=16000, song=1)              # mono FLAC at the target rate
    write_song(folder / "c.ogg", demo_music, 3.0, rate=22050, channels=6, song=2)   # 5.1 OGG Vorbis
    (folder / "metadata.csv").write_text("file_name,labels\na.wav,rock;live\nb.flac,rock\nc.ogg,ambient;live\n")
    ds = load_music_dataset(str(folder), TEST_SPEC)
    assert label_names(ds) == ["ambient", "live", "rock"]
    per_song = {name: sum(1 for s in ds["song"] if s == name) for name in ("a.wav", "b.flac", "c.ogg")}
    clip = TEST_SPEC.clip_samples / TEST_SPEC.sample_rate
    assert per_song == {name: int(seconds // clip) for name, seconds in (("a.wav", 2.0), ("b.flac", 1.5), ("c.ogg", 3.0))}
    hot = multi_hot(ds)
    first_a, first_c = list(ds["song"]).index("a.wav"), list(ds["song"]).index("c.ogg")
    assert hot[first_a].tolist() == [0, 1, 1] and hot[first_c].tolist() == [1, 1, 0]
    assert all(len(a) == TEST_SPEC.clip_samples for a in ds["audio"])
    assert spectrograms(ds).shape == (len(ds), *TEST_SPEC.shape)
    x0, cond = training_tensors(ds, conditional=True)
    assert torch.equal(cond, hot) and x0.shape[0] == len(ds)


def test_clips_are_the_songs_audio_resampled_to_mono(tmp_path, cache, demo_music):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "x.wav", demo_music, 1.2, rate=48000, channels=2)
    ds = load_music_dataset(str(folder), TEST_SPEC)
    expected = decode_audio(str(folder / "x.wav"), TEST_SPEC.sample_rate)
    assert torch.allclose(torch.tensor(ds[1]["audio"]), expected[TEST_SPEC.clip_samples: 2 * TEST_SPEC.clip_samples])
    assert ds[1]["start_seconds"] == pytest.approx(TEST_SPEC.clip_seconds)


def test_sub_folders_become_labels_and_the_cache_is_reused(tmp_path, cache, demo_music):
    for genre in ("jazz", "folk"):
        (tmp_path / "lib" / genre).mkdir(parents=True)
        write_song(tmp_path / "lib" / genre / "song.wav", demo_music, 1.0)
    first = load_music_dataset(str(tmp_path / "lib"), TEST_SPEC, keep_audio=False)
    again = load_music_dataset(str(tmp_path / "lib"), TEST_SPEC, keep_audio=False)
    assert label_names(first) == ["folk", "jazz"]
    assert first._fingerprint == again._fingerprint
    assert first.cache_files[0]["filename"] == again.cache_files[0]["filename"]
    assert str(cache) in first.cache_files[0]["filename"]


def test_parquet_dataset_laid_out_like_the_hub(tmp_path, cache, demo_music):
    songs = []
    for i, (labels, seconds) in enumerate([(["pop", "vocals"], 1.1), (["classical"], 2.1)]):
        buffer = io.BytesIO()
        sf.write(buffer, demo_music[i, : int(seconds * 22050)].numpy(), 22050, format="FLAC")
        songs.append({"audio": {"bytes": buffer.getvalue(), "path": f"song{i}.flac"}, "tags": labels,
                      "title": f"song {i}"})
    hub = datasets.Dataset.from_list(songs).cast_column("audio", datasets.Audio(decode=False))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    hub.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    ds = load_music_dataset(str(tmp_path / "hub"), TEST_SPEC)
    assert label_names(ds) == ["classical", "pop", "vocals"]
    assert sorted(set(ds["song"])) == ["song 0", "song 1"]
    assert len(ds) == 2 + 4
    assert spectrograms(ds).shape[1:] == TEST_SPEC.shape


def test_demo_set_is_real_music_labelled_by_theme():
    ds = load_music_dataset("demo", TEST_SPEC, max_clips_per_song=1, keep_audio=False)
    assert len(ds) == 10
    assert label_names(ds) == ["aztec", "castle", "dungeon", "electro", "greek", "japanese", "mechanic",
                               "option", "space", "toxcity"]
    assert multi_hot(ds).sum(0).tolist() == [1.0] * 10


def test_undecodable_audio_is_named(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF but not really a wave file")
    with pytest.raises(AudioError, match="bad.wav: cannot be decoded"):
        decode_audio(str(tmp_path / "bad.wav"), 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no usable clip"):
            load_music_dataset(str(tmp_path), TEST_SPEC)



def test_demo_folder_survives_a_parallel_download(tmp_path, monkeypatch, demo_files):
    """Two processes fetching the demo set at once (pytest -n 2 on a clean
    machine): the one that renames its copy second uses the first one's."""
    from musicdiff_nb import data

    themes = demo_files[0].parent
    if themes == Path("/") / data.DEMO_THEMES:
        pytest.skip("pushover-data is installed system-wide: nothing is fetched")
    rival_copy = themes.parents[3]
    real_replace = os.replace

    def replace_after_a_rival(src, dst):
        shutil.copytree(rival_copy, dst)  # the other process renames its copy first
        return real_replace(src, dst)

    monkeypatch.setenv("MUSICDIFF_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "replace", replace_after_a_rival)
    assert data.demo_folder() == tmp_path / data.DEMO_PACKAGE / data.DEMO_THEMES
    assert sorted(p.name for p in data.demo_folder().glob("*.ogg")) == [p.name for p in demo_files]
