"""One run, declared once: RunConfig's sections, the named runs, its files, and the checkpoint that carries it."""

import ast
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
import torch

from musicdiff_nb import (
    RUNS,
    DDPMSchedule,
    DiT,
    DiTConfig,
    RunConfig,
    TrainConfig,
    load_checkpoint,
    named_run,
    train,
    trained_checkpoint,
)
from musicdiff_nb.conditioning import build_conditioning
from musicdiff_nb.files import read_checkpoint, write_checkpoint

from conftest import TEST_SPEC


def small_run(tmp_path, **sections) -> RunConfig:
    """The CPU run on the test clips: 4 steps of batch 2, a checkpoint in ``tmp_path``."""
    return RunConfig(spectrogram=TEST_SPEC).replace(
        train=dict(steps=4, batch_size=2, log_every=2, checkpoint_every=4, out_dir=str(tmp_path), progress=False),
        **sections)


def test_the_model_follows_the_spectrogram():
    run = RunConfig(spectrogram=TEST_SPEC)
    assert (run.model.in_channels, run.model.input_size) == (TEST_SPEC.channels, TEST_SPEC.shape[1:])
    mel = run.replace(spectrogram=dict(representation="magnitude"))
    assert mel.model.in_channels == 1 and DiT(mel.model)(torch.zeros(1, *mel.spectrogram.shape), 5).shape[1] == 1


def test_replace_changes_fields_section_by_section():
    run = RunConfig().replace(train=dict(steps=7), data=dict(source="songs/"), conditioning="labels")
    assert (run.train.steps, run.train.lr, run.data.source, run.conditioning) == (7, RunConfig().train.lr, "songs/",
                                                                                   "labels")
    with pytest.raises(ValueError, match="RunConfig has no section 'training'"):
        RunConfig().replace(training=dict(steps=7))
    with pytest.raises(TypeError, match="steps"):
        RunConfig().replace(data=dict(steps=7))
    with pytest.raises(ValueError, match="conditioning='tags': use one of"):
        RunConfig(conditioning="tags")
    with pytest.raises(ValueError, match="held_out=1.0"):
        RunConfig().replace(data=dict(held_out=1.0))


@pytest.mark.parametrize("yaml_format", [True, False])
def test_a_run_round_trips_through_its_file(tmp_path, yaml_format):
    run = RunConfig().replace(sample=dict(steps=7), data=dict(max_songs=None), conditioning="text")
    path = tmp_path / "run.yaml"
    path.write_text(run.dumps(yaml_format))
    assert RunConfig.load(path) == run


def test_unknown_settings_are_refused_in_every_section():
    with pytest.raises(ValueError, match=r"train has no setting\(s\) \['step'\]"):
        RunConfig.from_dict({"train": {"step": 5}})
    with pytest.raises(ValueError, match=r"train has no setting\(s\) \['step'\]"):
        TrainConfig.from_dict({"step": 5})
    with pytest.raises(ValueError, match=r"sample has no setting\(s\) \['quality_clips'\]"):
        RunConfig.from_dict({"sample": {"quality_clips": 64}})
    with pytest.raises(FrozenInstanceError):
        TrainConfig().steps = 3


def test_every_named_run_is_a_run_that_builds():
    assert RUNS["cpu"] == RunConfig() and named_run("quick") is RUNS["quick"]
    assert RUNS["seed"].model == DiTConfig.preset("seed") and RUNS["seed"].spectrogram.representation == "complex"
    assert RUNS["gpu"].model == DiTConfig.preset("seed", head="overlap", in_channels=1, input_size=(128, 1024))
    for name, run in RUNS.items():
        conditioning = build_conditioning(run, ["a", "b"])
        model = DiT(run.model, conditioning)
        cond = torch.zeros(1, model.config.cond_dim) if conditioning else None
        assert model(torch.zeros(1, *run.spectrogram.shape), 10, cond).shape == (1, *run.spectrogram.shape), name
        assert (conditioning is not None) == name.startswith("conditioned-") == (run.conditioning != "none")
    with pytest.raises(ValueError, match="no run named 'tpu': use one of cpu, quick"):
        named_run("tpu")


def test_config_only_declares():
    """config.py builds nothing: it imports the other sections' configs, never data, models or files."""
    tree = ast.parse((Path(__file__).parents[1] / "musicdiff_nb" / "config.py").read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
                for alias in node.names}
    assert imported == {("model", "DiTConfig"), ("precision", "PRECISIONS"), ("schedule", "SAMPLERS"),
                        ("schedule", "ScheduleConfig"), ("spectrogram", "SpectrogramConfig")}


def test_train_saves_the_run_and_load_checkpoint_rebuilds_it(demo_clips, tmp_path):
    run = small_run(tmp_path)
    torch.manual_seed(0)
    state = train(DiT(run.model), DDPMSchedule(run.schedule), demo_clips, run)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.run == run and ckpt.spectrogram == TEST_SPEC and ckpt.train_config == run.train
    assert ckpt.history.loss == state.history.loss and ckpt.step == 4
    saved = read_checkpoint(tmp_path / "last.pt")
    assert saved["run"] == run.to_dict() and not {"model_config", "schedule_config", "train_config"} & set(saved)


def test_a_conditioned_run_records_its_conditioning(demo_clips, tmp_path):
    run = small_run(tmp_path, conditioning="labels")
    conditioning = build_conditioning(run, ["a", "b", "c"])
    cond = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    train(DiT(run.model, conditioning), DDPMSchedule(run.schedule), (demo_clips, cond), run)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.run == run and ckpt.model.config.cond_dim == 3 and ckpt.label_names == ["a", "b", "c"]
    with pytest.raises(ValueError, match="needs labels, and the data 'demo' has none"):
        build_conditioning(run, [])


def test_a_checkpoint_records_the_model_and_schedule_it_trained(demo_clips, tmp_path):
    """A model or schedule other than the run's is what the weights are: the record says so."""
    run = small_run(tmp_path)
    model = DiT(replace(run.model, prediction_type="epsilon"))
    schedule = DDPMSchedule(replace(run.schedule, beta_schedule="cosine"))
    train(model, schedule, demo_clips, run)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.run.model.prediction_type == "epsilon" and ckpt.run.schedule.beta_schedule == "cosine"
    assert ckpt.run.train == run.train and ckpt.run.spectrogram == run.spectrogram


def test_a_checkpoint_that_records_no_run_is_refused(demo_clips, tmp_path):
    run = small_run(tmp_path)
    train(DiT(run.model), DDPMSchedule(run.schedule), demo_clips, run)
    state = read_checkpoint(tmp_path / "last.pt")
    del state["run"], state["format"]
    write_checkpoint(tmp_path / "old.pt", state)
    with pytest.raises(ValueError, match="old.pt records no run: it was written by an older musicdiff_nb"):
        load_checkpoint(tmp_path / "old.pt")


def test_the_shipped_checkpoint_is_its_run_and_its_state():
    """demo.pt: the cpu run trained for an hour (a time limit instead of steps), nothing recorded twice."""
    saved = read_checkpoint(trained_checkpoint())
    assert {"run", "model", "ema", "optimizer", "rng"} <= saved.keys()
    assert not {"model_config", "schedule_config", "train_config", "metadata"} & saved.keys()
    run = load_checkpoint(trained_checkpoint()).run
    assert run == RUNS["cpu"].replace(train=run.train) and run.train.time_limit == 3600
