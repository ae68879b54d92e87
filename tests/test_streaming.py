"""Training from the dataset's cache on disk (streaming.py) against training
from the clips in memory: the same batches, the same run."""

import importlib

import datasets
import numpy as np
import pytest
import torch

import musicdiff_nb.streaming as streaming
from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, load_checkpoint, train
from musicdiff_nb.data import label_names, load_music_dataset

from conftest import TEST_SPEC

train_module = importlib.import_module("musicdiff_nb.train")  # the package's name `train` is the function


@pytest.fixture(scope="module")
def demo_dataset():
    """6 real clips (3 of 2 songs) in the dataset's Arrow cache on disk."""
    return load_music_dataset("demo", TEST_SPEC, max_songs=2, max_clips_per_song=3, keep_audio=False)


def conditional_tiny(ds):
    torch.manual_seed(0)
    return DiT(DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:], cond_dim=len(label_names(ds))))


def run(ds, stream, steps=6, out=None):
    cfg = TrainConfig(steps=steps, batch_size=2, log_every=1, checkpoint_every=2, out_dir=out and str(out),
                      stream=stream, progress=False)
    model = conditional_tiny(ds)
    return model, train(model, DDPMSchedule(), ds, cfg)


def test_streaming_trains_on_the_same_batches_as_memory(demo_dataset):
    """Two epochs of 3 steps, labels conditioning the model: bit for bit on a CPU."""
    in_memory, state = run(demo_dataset, stream=False)
    streamed, streamed_state = run(demo_dataset, stream=True)
    history, streamed_history = state.history, streamed_state.history
    assert streamed_history.step == history.step == list(range(1, 7))
    assert streamed_history.loss == history.loss
    for name, tensor in in_memory.state_dict().items():
        assert torch.equal(streamed.state_dict()[name], tensor), name
    for name, tensor in state.ema.state_dict().items():
        assert torch.equal(streamed_state.ema.state_dict()[name], tensor), name


def test_a_streamed_run_resumes_mid_epoch_exactly(demo_dataset, tmp_path):
    _, straight = run(demo_dataset, stream=False, steps=8, out=tmp_path / "straight")
    run(demo_dataset, stream=True, steps=4, out=tmp_path / "split")  # stops after the first step of epoch 2
    _, resumed = run(demo_dataset, stream=True, steps=8, out=tmp_path / "split")
    straight, resumed = straight.history, resumed.history
    assert resumed.step == straight.step and resumed.loss == straight.loss
    final_a, final_b = load_checkpoint(tmp_path / "straight/last.pt"), load_checkpoint(tmp_path / "split/last.pt")
    for name, tensor in final_a.ema.state_dict().items():
        assert torch.equal(final_b.ema.state_dict()[name], tensor), name


def test_the_clips_stream_when_they_do_not_fit_in_half_the_available_memory(demo_dataset, monkeypatch):
    size = streaming.clip_bytes(demo_dataset)
    assert size == 6 * 2 * 128 * 64 * 4
    monkeypatch.setattr(streaming, "available_host_memory", lambda: 2 * size + 1)
    assert not streaming.streams(demo_dataset)
    assert streaming.streams(demo_dataset, stream=True)  # forced
    monkeypatch.setattr(streaming, "available_host_memory", lambda: 2 * size - 1)
    assert streaming.streams(demo_dataset)
    assert not streaming.streams(demo_dataset, stream=False)  # forced
    clips = torch.zeros(6, 2, 128, 64)
    assert not streaming.streams(clips) and not streaming.streams(clips, stream=False)

    read = []  # train follows the choice: it reads its batches from disk
    monkeypatch.setattr(train_module, "read_batches", lambda *args: read.append(1) or streaming.read_batches(*args))
    train(conditional_tiny(demo_dataset), DDPMSchedule(), demo_dataset,
          TrainConfig(steps=1, batch_size=2, log_every=1, progress=False))
    assert read == [1]


def test_bad_stream_settings_are_named(demo_dataset):
    with pytest.raises(ValueError, match="stream='yes': use True"):
        TrainConfig(stream="yes")
    with pytest.raises(ValueError, match="stream=1: use True"):
        TrainConfig(stream=1)
    clips = torch.zeros(6, 2, 128, 64)
    with pytest.raises(ValueError, match="pass the dataset from load_music_dataset, not tensors"):
        train(conditional_tiny(demo_dataset), DDPMSchedule(), clips, TrainConfig(steps=1, batch_size=2, stream=True))


def test_streamed_clips_with_nan_are_refused_by_row():
    spectrograms = np.zeros((4, 2, 128, 64), dtype=np.float32)
    spectrograms[3, 0, 5, 5] = np.nan
    features = datasets.Features({"spectrogram": datasets.Array3D(shape=(2, 128, 64), dtype="float32"),
                                  "labels": datasets.List(datasets.ClassLabel(names=["a"]))})
    ds = datasets.Dataset.from_dict({"spectrogram": spectrograms, "labels": [[0]] * 4}, features=features)
    torch.manual_seed(0)
    model = DiT(DiTConfig.preset("tiny", input_size=(128, 64)))
    with pytest.raises(ValueError, match=r"clips \[.*3.*\] contain NaN or inf"):
        train(model, DDPMSchedule(), ds, TrainConfig(steps=4, batch_size=4, log_every=1, stream=True, progress=False))


def test_batches_are_read_across_record_batches_and_selections(demo_dataset):
    """Rows of several Arrow record batches, and of a selection or shuffle of
    them, come out as the dataset's own rows, in the batch's order."""
    two_tables = datasets.concatenate_datasets([demo_dataset, demo_dataset])
    for ds in (two_tables, two_tables.select(range(3, 11)), two_tables.shuffle(seed=0)):
        batches = [torch.tensor([5, 0, 3]), torch.tensor([7, 2, 6]), torch.tensor([1, 4, 2])] * 3
        rows = ds.with_format("torch", columns=["spectrogram"])
        read = list(streaming.read_batches(ds, batches, torch.device("cpu")))
        assert len(read) == len(batches)
        for idx, (indices, clips) in zip(batches, read):
            assert torch.equal(indices, idx)
            assert torch.equal(clips, rows[idx.tolist()]["spectrogram"])
