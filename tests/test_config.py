"""One run, declared once: RunConfig's sections, its files, and the checkpoint that carries it."""

from dataclasses import asdict

import pytest
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, RunConfig, load_checkpoint, train
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
    assert mel.model.in_channels == 1 and mel.build_model()(torch.zeros(1, *mel.spectrogram.shape), 5).shape[1] == 1


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


@pytest.mark.parametrize("name", ["run.yaml", "run.json"])
def test_a_run_round_trips_through_its_file(tmp_path, name):
    run = RunConfig().replace(sample=dict(curve_steps=(5, 15)), data=dict(max_songs=None), conditioning="text")
    assert RunConfig.load(run.save(tmp_path / name)) == run


def test_train_saves_the_run_and_load_checkpoint_rebuilds_it(demo_clips, tmp_path):
    run = small_run(tmp_path)
    torch.manual_seed(0)
    state = train(run.build_model(), run.build_schedule(), demo_clips, run)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.run == run and ckpt.spectrogram == TEST_SPEC and ckpt.train_config == run.train
    assert ckpt.history.loss == state.history.loss and ckpt.step == 4


def test_a_conditioned_run_records_its_conditioning(demo_clips, tmp_path):
    run = small_run(tmp_path, conditioning="labels")
    conditioning = run.build_conditioning(["a", "b", "c"])
    cond = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    train(run.build_model(conditioning), run.build_schedule(), (demo_clips, cond), run)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.run.conditioning == "labels" and ckpt.run.model.cond_dim == 3 and ckpt.label_names == ["a", "b", "c"]
    with pytest.raises(ValueError, match="needs labels, and the data 'demo' has none"):
        run.build_conditioning([])


def test_train_refuses_a_model_or_schedule_the_run_does_not_declare(demo_clips, tmp_path):
    run = small_run(tmp_path)
    with pytest.raises(ValueError, match="the run declares .*: build it with run.build_model"):
        train(DiT(DiTConfig.preset("tiny", hidden_size=32, input_size=TEST_SPEC.shape[1:])), run.build_schedule(),
              demo_clips, run)
    with pytest.raises(ValueError, match="build it with run.build_schedule"):
        train(run.build_model(), DDPMSchedule(beta_schedule="cosine"), demo_clips, run)


def test_a_checkpoint_from_before_runs_were_recorded_gets_its_run_from_its_metadata(demo_clips, tmp_path):
    run = small_run(tmp_path, data=dict(source="my_songs", held_out=0.3, split_seed=2))
    train(run.build_model(), run.build_schedule(), demo_clips, run)
    state = read_checkpoint(tmp_path / "last.pt")
    del state["run"], state["format"]
    state["metadata"] = {"spectrogram": asdict(TEST_SPEC), "data": "my_songs", "split": {"held_out": 0.3,
                                                                                         "split_seed": 2}}
    write_checkpoint(tmp_path / "old.pt", state)
    old = load_checkpoint(tmp_path / "old.pt")
    assert old.run == run and old.spectrogram == TEST_SPEC
    del state["metadata"]
    write_checkpoint(tmp_path / "bare.pt", state)
    assert load_checkpoint(tmp_path / "bare.pt").run is None

