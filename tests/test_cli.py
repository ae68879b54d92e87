import subprocess
import sys

import pytest
import soundfile as sf
import torch

from musicdiff_nb import load_checkpoint


def run(*args):
    result = subprocess.run([sys.executable, "-m", "musicdiff_nb", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("command", ["prepare", "train", "sample", "bench"])
def test_help(command):
    assert "usage" in run(command, "--help")


@pytest.mark.slow
def test_train_then_sample(tmp_path):
    out = tmp_path / "run"
    printed = run("train", "--steps", "20", "--batch-size", "4", "--max-songs", "2", "--max-clips-per-song", "4",
                  "--checkpoint-every", "10", "--conditional", "--out", str(out))
    assert "20 steps" in printed
    assert (out / "loss.png").stat().st_size > 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.label_names == ["aztec", "castle"] and ckpt.spectrogram.sample_rate == 16000
    run("sample", "--checkpoint", str(out / "last.pt"), "-n", "2", "--steps", "5", "--label", "aztec",
        "--out", str(out / "samples"))
    audio, rate = sf.read(out / "samples" / "sample_001.wav")
    assert rate == 16000 and len(audio) == ckpt.spectrogram.clip_samples
    assert (out / "samples" / "sample_001.png").exists()


def test_unknown_label_is_refused(tmp_path):
    run("train", "--steps", "2", "--batch-size", "2", "--max-songs", "1", "--max-clips-per-song", "2",
        "--log-every", "1", "--checkpoint-every", "2", "--out", str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "musicdiff_nb", "sample", "--checkpoint", str(tmp_path / "last.pt"),
                             "--label", "polka"], capture_output=True, text=True)
    assert result.returncode != 0 and "unknown label" in result.stderr


def test_a_checkpoint_of_another_model_is_refused_before_any_song_is_decoded(tmp_path):
    from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, train
    from musicdiff_nb.__main__ import main

    out, no_songs = tmp_path / "run", tmp_path / "no_songs"
    no_songs.mkdir()
    torch.manual_seed(0)
    train(DiT(DiTConfig.preset("tiny", input_size=(128, 128))), DDPMSchedule(), torch.randn(2, 2, 128, 128),
          TrainConfig(steps=1, batch_size=2, log_every=1, checkpoint_every=1, out_dir=str(out), progress=False))
    command = ["train", "--data", str(no_songs), "--preset", "small"]
    with pytest.raises(ValueError, match="was trained with DiTConfig.*hidden_size=64.* not DiTConfig.*hidden_size=128"):
        main([*command, "--out", str(out)])
    with pytest.raises(ValueError, match="holds no audio files"):  # what loading the songs first would have said
        main([*command, "--out", str(tmp_path / "fresh")])
