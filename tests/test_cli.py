import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
import torch
import yaml

from musicdiff_nb import RUNS, RunConfig, TrainConfig, load_checkpoint, sample

from conftest import error_of


def run(*args):
    result = subprocess.run([sys.executable, "-m", "musicdiff_nb", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# what each command's --help must list: for train and sample what the README names, for prepare
# and evaluate their inputs
PROMISED = {
    "prepare": ["--run", "--data", "--representation", "--max-songs", "--held-out"],
    "train": ["--run", *RUNS, "--data", "--representation", "--steps", "--epochs", "--batch-size",
              "--conditioning", "--precision", "fp16", "--out", "--config", "--print-config"],
    "sample": ["--checkpoint", "--sampler", "ddpm", "ddim", "--steps", "--label", "--prompt", "--guidance-scale",
               "--precision", "--out"],
    "evaluate": ["--checkpoint", "--data", "--sampler", "--json"],
}


@pytest.mark.parametrize("command", PROMISED)
def test_help_lists_the_promised_options(command):
    printed = run(command, "--help")
    missing = [word for word in PROMISED[command] if not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", printed)]
    assert not missing, f"`{command} --help` does not list {missing}:\n{printed}"


@pytest.mark.slow
def test_train_then_sample(tmp_path):
    out = tmp_path / "run"
    printed = run("train", "--steps", "20", "--batch-size", "4", "--max-songs", "2", "--max-clips-per-song", "4",
                  "--held-out", "0", "--checkpoint-every", "10", "--conditioning", "labels", "--out", str(out))
    assert "20 steps" in printed
    assert (out / "loss.png").stat().st_size > 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.label_names == ["aztec", "castle"] and ckpt.spectrogram.sample_rate == 16000
    assert ckpt.run == RunConfig.load(out / "run.yaml") and ckpt.model.config.cond_dim == 2  # the run, saved twice
    assert (ckpt.run.train.steps, ckpt.run.data.max_songs, ckpt.run.conditioning) == (20, 2, "labels")
    run("sample", "--checkpoint", str(out / "last.pt"), "-n", "2", "--steps", "5", "--label", "aztec",
        "--out", str(out / "samples"))
    audio, rate = sf.read(out / "samples" / "sample_001.wav")
    assert rate == 16000 and len(audio) == ckpt.spectrogram.clip_samples
    assert (out / "samples" / "sample_001.png").exists()


def test_unknown_label_is_refused(tmp_path):
    run("train", "--steps", "2", "--batch-size", "2", "--max-songs", "1", "--max-clips-per-song", "2",
        "--held-out", "0", "--log-every", "1", "--checkpoint-every", "2", "--out", str(tmp_path))
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
    command = ["train", "--data", str(no_songs), "--hidden-size", "128"]
    with pytest.raises(ValueError, match=r"continues a run with .*model.hidden_size=64 \(now 128\)"):
        main(["--debug", *command, "--out", str(out)])
    with pytest.raises(ValueError, match="holds no audio files"):  # what loading the songs first would have said
        main(["--debug", *command, "--out", str(tmp_path / "fresh")])


# -- errors a learner can read ---------------------------------------------------

@pytest.fixture
def no_songs(tmp_path, monkeypatch):
    """An empty data folder: a command that gets as far as loading it says 'holds no audio files'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "no_songs").mkdir()
    return str(tmp_path / "no_songs")


@pytest.mark.parametrize("setting, message", [
    (["--patch-size", "5"], r"input_size=\(128, 128\) does not divide by patch_size=5"),
    (["--batch-size", "0"], "batch_size=0: .* must be >= 1"),
    (["--checkpoint-every", "15"], "checkpoint_every=15 must be a multiple of log_every=10"),
    (["--steps", "0"], "steps=0: train at least one step"),
    (["--steps", "-5"], "steps=-5: train at least one step"),
    (["--epochs", "0"], "epochs=0.0: train at least one step"),
    (["--device", "bogus"], "unknown device 'bogus': use auto, cpu"),
])
def test_bad_train_settings_are_refused_before_the_data_is_loaded(capsys, no_songs, setting, message):
    assert re.search(message, error_of(capsys, "train", "--data", no_songs, *setting))


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(capsys, no_songs, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    err = error_of(capsys, "train", "--data", no_songs, "--out", "a_file")
    assert "a_file is a file; choose another output folder" in err
    err = error_of(capsys, "sample", "--checkpoint", "missing.pt", "--out", "a_file/samples")
    assert "cannot make the folder a_file/samples: a_file is a file" in err


@pytest.mark.parametrize("metadata, message", [
    (None, "no_songs holds no audio files"),
    ("file_name,labels\na.wav,rock\n", r"names 1 file\(s\) that do not exist, e.g. \['a.wav'\]"),
    ("file_name,genre\na.wav,rock\n", "has no 'labels' column"),
    ("name,labels\na.wav,rock\n", "needs a 'file_name' column"),
    ("file_name,labels\n", "holds no songs"),
])
def test_data_errors_are_one_line(capsys, no_songs, metadata, message):
    if metadata is not None:
        (Path(no_songs) / "metadata.csv").write_text(metadata)
    assert re.search(message, error_of(capsys, "train", "--data", no_songs))


def test_a_missing_data_folder_is_named(capsys, no_songs):
    assert "there is no folder /nonexistent/songs: pass a folder of audio files" in \
        error_of(capsys, "train", "--data", "/nonexistent/songs")


def test_missing_truncated_or_foreign_checkpoints_are_one_line(capsys, tmp_path, no_songs):
    from musicdiff_nb.files import write_checkpoint
    data = write_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.randn(1000)}}).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("file_name,labels\n")
    for checkpoint, message in [("missing.pt", "no checkpoint at missing.pt: train one first"),
                                ("cut.pt", "cut.pt is truncated or corrupt"),
                                ("notes.txt", "notes.txt is not a musicdiff_nb checkpoint")]:
        assert message in error_of(capsys, "sample", "--checkpoint", checkpoint)  # in tmp_path, the working folder
    assert "-n 0: ask for at least one clip" in error_of(capsys, "sample", "-n", "0")


def test_debug_shows_the_traceback_and_bugs_always_do(monkeypatch, no_songs):
    import musicdiff_nb.__main__ as cli
    with pytest.raises(ValueError, match="steps=0"):
        cli.main(["--debug", "train", "--steps", "0"])

    def broken(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli, "prepare", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["prepare"])


def test_an_error_prints_no_traceback():
    result = subprocess.run([sys.executable, "-m", "musicdiff_nb", "train", "--steps", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "error: steps=0: train at least one step (steps >= 1, epochs > 0)\n"


# -- --precision -------------------------------------------------------------------

def test_train_precision_reaches_the_train_config():
    for argv, expected in [([], TrainConfig().precision), (["--precision", "fp16"], "fp16"),
                           (["--precision", "fp32"], "fp32")]:
        assert printed_run("train", *argv).train.precision == expected


def test_sample_precision_reaches_the_sampler(capsys, monkeypatch, no_songs):
    import musicdiff_nb.__main__ as cli
    from musicdiff_nb import SpectrogramConfig
    asked = []

    def sampler(*args, precision, **kwargs):
        asked.append(precision)
        raise ValueError("sampled")
    checkpoint = SimpleNamespace(spectrogram=SpectrogramConfig.preset("small"), schedule=None, run=None,
                                 ema=SimpleNamespace(conditioning=None))
    monkeypatch.setattr(cli, "load_checkpoint", lambda *args, **kwargs: checkpoint)
    monkeypatch.setattr(cli, "sample_clips", sampler)
    error_of(capsys, "sample")
    error_of(capsys, "sample", "--precision", "bf16")
    assert asked == [inspect.signature(sample).parameters["precision"].default, "bf16"]


@pytest.mark.parametrize("command", ["train", "sample"])
def test_an_unknown_precision_is_one_line(capsys, command):
    from musicdiff_nb.__main__ import main
    with pytest.raises(SystemExit) as exit:
        main([command, "--precision", "fp8"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1, err
    assert re.match(r"error: argument --precision: invalid choice: '?fp8'?.*fp16", err), err
    assert f"see python -m musicdiff_nb {command} --help" in err


# -- one run, declared once ----------------------------------------------------------

def printed_run(*argv) -> RunConfig:
    """The run that ``train --print-config`` prints for these options."""
    printed = run(*argv, "--print-config")
    return RunConfig.from_dict(yaml.safe_load(printed))


def test_the_defaults_are_the_run_configs():
    """One default per setting: the options' defaults are RunConfig()'s (the CLI adds only its output folder)."""
    assert printed_run("train") == RunConfig().replace(train=dict(out_dir="runs/demo"))


@pytest.mark.parametrize("name", RUNS)
def test_run_starts_from_a_named_run(name):
    assert printed_run("train", "--run", name) == RUNS[name].replace(train=dict(out_dir="runs/demo"))


def test_an_unknown_run_names_the_runs(capsys):
    from musicdiff_nb.__main__ import main
    with pytest.raises(SystemExit) as exit:
        main(["train", "--run", "huge"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and re.search(r"invalid choice: '?huge'? \(choose from '?cpu'?, '?quick'?", err), err


def test_every_field_of_the_run_is_an_option():
    from musicdiff_nb.__main__ import NOT_OPTIONS, OPTION_NAMES
    from musicdiff_nb.config import SECTIONS
    printed = run("train", "--help")
    for section in ("spectrogram", "model", "schedule", "train", "data"):
        for f in dataclasses.fields(SECTIONS[section]):
            option = OPTION_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
            assert f.name in NOT_OPTIONS or re.search(rf"(?<![\w-]){option}(?![\w-])", printed), option


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_print_config_and_config_round_trip(tmp_path, suffix):
    chosen = printed_run("train", "--run", "seed", "--data", "scores", "--conditioning", "text", "--lr", "2e-4",
                         "--max-songs", "none", "--beta-schedule", "cosine", "--no-resume", "--time-limit", "90")
    assert (chosen.spectrogram.sample_rate, chosen.model.hidden_size, chosen.schedule.beta_schedule) == \
        (22050, 256, "cosine")
    assert (chosen.train.lr, chosen.train.resume, chosen.train.time_limit) == (2e-4, False, 90.0)
    assert (chosen.data.source, chosen.data.max_songs, chosen.conditioning) == ("scores", None, "text")
    path = tmp_path / f"run{suffix}"
    path.write_text(chosen.dumps(yaml_format=suffix == ".yaml"))
    assert printed_run("train", "--config", str(path)) == chosen
    assert printed_run("train", "--config", str(path), "--steps", "9") == chosen.replace(train=dict(steps=9))


def test_a_config_with_an_unknown_setting_is_one_line(capsys, tmp_path):
    (tmp_path / "run.yaml").write_text("train:\n  step: 100\n")
    err = error_of(capsys, "train", "--config", str(tmp_path / "run.yaml"))
    assert "run.yaml: train has no setting(s) ['step']; its settings are " in err
    (tmp_path / "run.yaml").write_text("trian:\n  steps: 100\n")
    assert "unknown section(s) ['trian']" in error_of(capsys, "train", "--config", str(tmp_path / "run.yaml"))
    assert "no run config at missing.yaml" in error_of(capsys, "train", "--config", "missing.yaml")
