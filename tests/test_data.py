"""Datasets from every kind of source, built from slices of real music."""

import io
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from musicdiff_nb import label_names, load_music_dataset, multi_hot, spectrograms
from musicdiff_nb.data import AudioError, decode_audio, training_tensors
from musicdiff_nb.sources import DEMO_PACKAGE, DEMO_THEMES, demo_folder

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
    lengths = {"a.wav": 2.0, "b.flac": 1.5, "c.ogg": 3.0}
    assert per_song == {name: int(seconds // clip) for name, seconds in lengths.items()}
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


def test_the_cache_is_reused_and_renewed_under_datasets_before_4_3(tmp_path, cache, demo_music, monkeypatch):
    """Colab ships datasets 4.0, whose from_generator takes no fingerprint: the cache is still named by the songs."""
    newer = datasets.Dataset.from_generator

    def from_generator_4_0(generator, features=None, cache_dir=None, keep_in_memory=False, gen_kwargs=None,
                           num_proc=None, split=datasets.Split.TRAIN, **kwargs):
        if "fingerprint" in kwargs:  # 4.0 hands it to the builder's config, which refuses it
            raise TypeError("GeneratorConfig.__init__() got an unexpected keyword argument 'fingerprint'")
        return newer(generator, features=features, cache_dir=cache_dir, keep_in_memory=keep_in_memory,
                     gen_kwargs=gen_kwargs, num_proc=num_proc, split=split, **kwargs)
    monkeypatch.setattr(datasets.Dataset, "from_generator", from_generator_4_0)
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "a.wav", demo_music, 1.0)
    first = load_music_dataset(str(folder), TEST_SPEC, keep_audio=False)
    again = load_music_dataset(str(folder), TEST_SPEC, keep_audio=False)
    assert first.cache_files[0]["filename"] == again.cache_files[0]["filename"]
    write_song(folder / "a.wav", demo_music, 2.0)  # the song changed: a cache of its own
    longer = load_music_dataset(str(folder), TEST_SPEC, keep_audio=False)
    assert longer.cache_files[0]["filename"] != first.cache_files[0]["filename"] and len(longer) > len(first)


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


# -- bad input -----------------------------------------------------------------

def real_flac(demo_music, seconds) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, demo_music[0, : int(seconds * 22050)].numpy(), 22050, format="FLAC")
    return buffer.getvalue()


def test_bad_songs_are_skipped_named_and_counted(tmp_path, cache, demo_music):
    """Each unusable song is skipped with a warning that names it and says why,
    and a summary counts the skips; the good songs are all kept."""
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "good.wav", demo_music, 1.5)
    write_song(folder / "cut.wav", demo_music, 2.0)
    whole = (folder / "cut.wav").read_bytes()
    (folder / "cut.wav").write_bytes(whole[: len(whole) // 2])  # truncated WAV: the first second still decodes
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.ogg").write_bytes(bytes(range(256)) * 40)
    flac = real_flac(demo_music, 2.0)
    (folder / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    sf.write(folder / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(folder / "silent.flac", np.zeros(32000, dtype=np.float32), 16000)
    sf.write(folder / "dc.wav", np.full(32000, 0.5, dtype=np.float32), 16000)  # a DC offset, no sound
    write_song(folder / "short.wav", demo_music, 0.2)
    (folder / "tune.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_music_dataset(str(folder), TEST_SPEC)
    messages = "\n".join(str(w.message) for w in caught)
    for name, reason in [("empty.wav", "empty file"), ("garbage.ogg", "cannot be decoded"),
                         ("truncated.flac", "cannot be decoded"), ("nan.wav", "NaN or inf samples"),
                         ("silent.flac", "silent"), ("dc.wav", "silent"), ("short.wav", "shorter than one clip")]:
        assert f"skipped {name}: {reason}" in messages, (name, messages)
    summary = next(line for line in messages.splitlines() if line.startswith("skipped 7 song(s): "))
    for count in ("2 cannot be decoded", "1 empty file", "1 NaN or inf samples", "2 silent", "1 shorter than one clip"):
        assert count in summary, summary
    assert "ignored 1 file(s) of other types {'.mid': 1}" in messages
    assert {w.filename for w in caught} == {__file__}  # each warning points at the call above, not inside a library
    clip = TEST_SPEC.clip_seconds
    assert sorted(ds["song"]) == ["cut.wav"] * int(1.0 // clip) + ["good.wav"] * int(1.5 // clip)


def test_metadata_problems_are_named_with_the_fix(tmp_path, cache, demo_music):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "a.wav", demo_music, 1.0)
    metadata = folder / "metadata.csv"

    metadata.write_text("file_name,labels\na.wav,rock\nb.wav,jazz\nc.wav,jazz\n")
    with pytest.raises(FileNotFoundError, match=r"names 2 file\(s\) that do not exist, e.g. \['b.wav', 'c.wav'\]"):
        load_music_dataset(str(folder), TEST_SPEC)
    metadata.write_text("file_name,genre\na.wav,rock\n")
    with pytest.raises(ValueError, match="has no 'labels' column .* pass label_column="):
        load_music_dataset(str(folder), TEST_SPEC)
    metadata.write_text("name,labels\na.wav,rock\n")
    with pytest.raises(ValueError, match="needs a 'file_name' column"):
        load_music_dataset(str(folder), TEST_SPEC)
    metadata.write_text("file_name,labels\n")
    with pytest.raises(ValueError, match="holds no songs"):
        load_music_dataset(str(folder), TEST_SPEC)

    metadata.write_text("file_name,genre\na.wav,rock;live\n", encoding="utf-8-sig")  # as spreadsheets save it
    assert label_names(load_music_dataset(str(folder), TEST_SPEC, label_column="genre")) == ["live", "rock"]


def test_an_empty_dataset_is_refused(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no audio files"):
        load_music_dataset(str(tmp_path / "empty"), TEST_SPEC)


def test_a_missing_folder_or_a_file_is_not_taken_for_a_hub_dataset(tmp_path, cache):
    (tmp_path / "song.wav").write_bytes(b"")
    for missing in ("/nonexistent/songs", "./songs", "music/2024/songs"):
        with pytest.raises(FileNotFoundError, match=f"there is no folder {missing}: pass a folder of audio files"):
            load_music_dataset(missing, TEST_SPEC)
    with pytest.raises(NotADirectoryError, match="song.wav is a file: pass the folder that holds your audio files"):
        load_music_dataset(str(tmp_path / "song.wav"), TEST_SPEC)


def load_with_warnings(source, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_music_dataset(source, TEST_SPEC, **kwargs)
    assert {w.filename for w in caught} <= {__file__}, [(w.filename, w.lineno) for w in caught]
    return ds, [str(w.message) for w in caught]


def test_the_skips_are_reported_on_every_load_not_only_the_one_that_fills_the_cache(tmp_path, cache, demo_music):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "good.wav", demo_music, 1.0)
    (folder / "empty.wav").write_bytes(b"")
    first, built = load_with_warnings(str(folder))
    again, cached = load_with_warnings(str(folder))
    assert first.cache_files == again.cache_files
    assert built == cached == ["skipped empty.wav: empty file", "skipped 1 song(s): 1 empty file"]


def test_a_broken_link_is_named_and_counted(tmp_path, cache, demo_music):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "good.wav", demo_music, 1.0)
    (folder / "gone.wav").symlink_to(tmp_path / "moved_away.wav")
    ds, messages = load_with_warnings(str(folder))
    assert set(ds["song"]) == {"good.wav"}
    assert messages == [f"{folder}: skipped 1 broken link(s), whose target does not exist: gone.wav; "
                        "fix or remove them"]


def test_an_unreadable_file_says_to_fix_its_permissions(tmp_path, cache, demo_music, monkeypatch):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "good.wav", demo_music, 1.0)
    locked = write_song(folder / "locked.wav", demo_music, 1.0)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: simulate what everyone else gets
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    ds, messages = load_with_warnings(str(folder))
    assert set(ds["song"]) == {"good.wav"}
    assert messages[0] == ("skipped locked.wav: unreadable (permission denied): "
                           f"fix its permissions, e.g. `chmod a+r {locked}`")


def test_metadata_labels_are_separated_by_semicolons_and_a_repeated_row_is_used_once(tmp_path, cache, demo_music):
    folder = tmp_path / "songs"
    folder.mkdir()
    write_song(folder / "a.wav", demo_music, 1.0)
    write_song(folder / "b.wav", demo_music, 1.0, song=1)
    (folder / "metadata.csv").write_text('file_name,labels\na.wav,"rock, live;1970s"\nb.wav,jazz\n'
                                         'a.wav,"rock, live;1970s"\n')
    ds, messages = load_with_warnings(str(folder))
    assert label_names(ds) == ["1970s", "jazz", "rock, live"]
    clips = int(1.0 // TEST_SPEC.clip_seconds)
    assert sorted(ds["song"]) == ["a.wav"] * clips + ["b.wav"] * clips
    assert messages == [f"{folder / 'metadata.csv'}: 1 file(s) listed more than once, e.g. ['a.wav']: each is used "
                        "once, with its first row's labels; remove the extra rows"]


@pytest.mark.skipif((Path("/") / DEMO_THEMES).is_dir() or not shutil.which("apt-get"),
                    reason="the demo set is installed, or cannot be fetched here")
def test_processes_fetching_the_demo_set_at_once_all_get_it(tmp_path, monkeypatch):
    """Two test workers or torchrun ranks may fetch it together: the first to
    finish publishes its copy and the other uses that one."""
    monkeypatch.setenv("MUSICDIFF_CACHE", str(tmp_path))
    published = tmp_path / DEMO_PACKAGE / DEMO_THEMES

    def run_meanwhile_another_process_finishes(command, cwd=None, **kwargs):
        if command[:2] == ["apt-get", "download"]:
            (Path(cwd) / f"{DEMO_PACKAGE}_1.0_all.deb").write_bytes(b"")
        else:  # dpkg-deb -x DEB FOLDER
            (Path(command[3]) / DEMO_THEMES).mkdir(parents=True)
            published.mkdir(parents=True)
            (published / "theirs.ogg").write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run_meanwhile_another_process_finishes)
    assert demo_folder() == published
    assert [p.name for p in published.iterdir()] == ["theirs.ogg"]


def test_held_out_songs_are_a_song_level_split_fixed_by_seed():
    from musicdiff_nb.data import held_out_songs
    assert held_out_songs(10) == held_out_songs(10) and len(held_out_songs(10)) == 2
    assert held_out_songs(10, seed=1) != held_out_songs(10)
    assert held_out_songs(2) in ([0], [1]) and held_out_songs(1) == []
    kwargs = dict(max_clips_per_song=2, keep_audio=False)
    train_songs = set(load_music_dataset("demo", TEST_SPEC, songs="train", **kwargs)["song"])
    held = set(load_music_dataset("demo", TEST_SPEC, songs="held_out", **kwargs)["song"])
    every = set(load_music_dataset("demo", TEST_SPEC, **kwargs)["song"])
    assert not train_songs & held and train_songs | held == every and len(held) == 2
    with pytest.raises(ValueError, match="songs='test'"):
        load_music_dataset("demo", TEST_SPEC, songs="test")
