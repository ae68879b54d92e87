"""Label and text conditioning, the scores source and the judge, on real music."""

import csv
import warnings

import pytest
import soundfile as sf
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, load_checkpoint, sample, train
from musicdiff_nb import conditioning as conditioning_module
from musicdiff_nb.conditioning import Conditioning, label_conditioning, text_conditioning
from musicdiff_nb.data import label_names, load_music_dataset, multi_hot, spectrograms
from musicdiff_nb.guidance import guidance_sweep
from musicdiff_nb.judge import judge_scores, train_judge
from musicdiff_nb.scores import COLLECTIONS, scores_folder
from musicdiff_nb.text import ENCODER_DIM, encode_text, load_text_encoder

from conftest import TEST_SPEC

MAGNITUDE_SPEC = TEST_SPEC.__class__.preset("small", frames=64, representation="magnitude")


@pytest.fixture(scope="module")
def demo_labelled():
    """Real clips of the 10 demo themes (16 each, magnitude), their multi-hot labels and the vocabulary."""
    ds = load_music_dataset("demo", MAGNITUDE_SPEC, max_clips_per_song=16, keep_audio=False)
    return spectrograms(ds), multi_hot(ds), label_names(ds)


def tiny(conditioning, spec=TEST_SPEC, seed=0):
    torch.manual_seed(seed)
    config = DiTConfig.preset("tiny", in_channels=spec.channels, input_size=spec.shape[1:], cond_dim=conditioning.dim)
    return DiT(config, conditioning)


def test_scores_source_renders_labelled_compositions(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICDIFF_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21's notes on the scores it repairs
        ds = load_music_dataset("scores", TEST_SPEC, max_songs=3, max_clips_per_song=2, keep_audio=False)
    folder = scores_folder(3)
    with open(folder / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and not list(folder.parent.glob("tmp*"))  # rendered into place atomically
    composers = [c.composer for c in COLLECTIONS[:3]]
    for row, composer in zip(rows, composers):  # round-robin: one song per collection
        labels = row["labels"].split(";")
        assert labels[0] == composer and len(labels) >= 4, labels
        audio, rate = sf.read(folder / row["file_name"])
        assert rate == 22050 and 5 < len(audio) / rate <= 30 and 0.5 < abs(audio).max() < 1
    assert set(composers) <= set(label_names(ds)) and len(set(ds["song"])) == 3
    assert spectrograms(ds).shape[1:] == TEST_SPEC.shape
    stamp = (folder / "metadata.csv").stat().st_mtime_ns
    assert scores_folder(3) == folder and (folder / "metadata.csv").stat().st_mtime_ns == stamp  # cached


def test_text_encoder_runs_offline_and_means_something(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = encode_text(["calm piano with strings", "piano, strings", "bach, chorale, minor, organ"])
    assert vectors.shape == (3, ENCODER_DIM)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


def test_loading_the_text_encoder_draws_no_progress_bar(capfd):
    from transformers.utils import logging as transformers_logging

    load_text_encoder.cache_clear()
    load_text_encoder()
    assert "Loading weights" not in capfd.readouterr().err  # the bar a notebook showed for local files
    assert transformers_logging.is_progress_bar_enabled()  # and other downloads keep theirs


def test_text_conditioning_trains_on_the_text_of_the_labels(demo_clips):
    cond = text_conditioning(["piano", "strings", "choir"])
    assert cond.kind == "text" and cond.dim == ENCODER_DIM
    vectors = cond.from_labels([["piano", "strings"], ["choir"], ["piano", "strings"]])
    assert torch.equal(vectors[0], vectors[2]) and torch.allclose(vectors[0], encode_text(["piano, strings"])[0])
    with pytest.raises(ValueError, match="unknown label"):
        cond.from_labels([["polka"]])


def test_fallback_matches_prompt_words_to_the_labels(monkeypatch):
    monkeypatch.setattr(conditioning_module, "text_encoder_available", lambda: False)
    with pytest.warns(UserWarning, match="not installed"):
        cond = text_conditioning(["piano", "strings", "choir", "triple meter"])
    assert cond.kind == "labels"
    with pytest.warns(UserWarning, match=r"ignored: \['calm', 'with'\]"):
        vectors = cond.from_prompts("calm piano with strings")
    assert vectors.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    with pytest.warns(UserWarning, match="waltz"):
        assert cond.from_prompts(["a waltz in triple meter for choir"]).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="names none of this model's labels"):
        cond.from_prompts("heavy metal")


@pytest.mark.parametrize("kind", ["labels", "text"])
def test_checkpoint_records_how_the_model_is_conditioned(demo_clips, tmp_path, kind):
    names = ["aztec", "castle"]
    conditioning = label_conditioning(names) if kind == "labels" else text_conditioning(names)
    cond = conditioning.from_labels([["aztec"]] * 3 + [["castle"]] * 3)
    cfg = TrainConfig(steps=4, batch_size=3, log_every=2, checkpoint_every=4, out_dir=str(tmp_path), progress=False)
    train(tiny(conditioning), DDPMSchedule(), (demo_clips, cond), cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.ema.conditioning == ckpt.model.conditioning == conditioning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the label model ignores the word 'ruins'
        by_prompt = sample(ckpt.ema, ckpt.schedule, 2, steps=3, prompt="aztec ruins", guidance_scale=3.0,
                           generator=torch.Generator().manual_seed(0))
    expected = conditioning.from_prompts(["aztec ruins"]) if kind == "text" else conditioning.from_labels([["aztec"]])
    by_vector = sample(ckpt.ema, ckpt.schedule, 2, steps=3, cond=expected[0], guidance_scale=3.0,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(by_prompt, by_vector)
    by_labels = sample(ckpt.ema, ckpt.schedule, 2, steps=3, labels=["aztec"],
                       generator=torch.Generator().manual_seed(0))
    assert by_labels.shape == by_prompt.shape


def test_conditioning_must_fit_the_model():
    with pytest.raises(ValueError, match="cond_dim=3"):
        DiT(DiTConfig.preset("tiny", cond_dim=5), label_conditioning(["a", "b", "c"]))
    with pytest.raises(ValueError, match="does not record how it is conditioned"):
        sample(DiT(DiTConfig.preset("tiny", input_size=(32, 32), cond_dim=2)), DDPMSchedule(), 1, steps=2, prompt="x")
    with pytest.raises(ValueError, match="use one of"):
        Conditioning("genre", ("a",))


def test_judge_recognises_held_out_real_clips(demo_labelled):
    specs, targets, names = demo_labelled
    held_out = torch.arange(len(specs)) % 4 == 3
    judge = train_judge(specs[~held_out], targets[~held_out], names, MAGNITUDE_SPEC)
    scores = judge_scores(judge, specs[held_out], targets[held_out])
    print(f"judge on held-out real demo clips: {scores}")
    assert scores["recall"] >= 0.85 and scores["false_alarms"] <= 0.03


@pytest.mark.slow
def test_conditioned_samples_carry_the_requested_label(demo_labelled):
    """A label-conditioned DiT trained for 400 steps on the demo themes: the
    judge finds the requested theme far more often with guidance than in
    unconditioned samples (s = 0)."""
    specs, targets, names = demo_labelled
    judge = train_judge(specs, targets, names, MAGNITUDE_SPEC)
    model = tiny(label_conditioning(names), MAGNITUDE_SPEC)
    state = train(model, DDPMSchedule(), (specs, targets), TrainConfig(
        steps=400, batch_size=16, lr=2e-3, ema_decay=0.99, log_every=50, progress=False))
    sweep = guidance_sweep(state.ema, DDPMSchedule(), judge, [0.0, 3.0], n_per_set=4, steps=10)
    print(f"hit rate of the requested theme: {sweep}")
    unconditioned, guided = sweep[0]["hit_rate"], sweep[1]["hit_rate"]
    assert guided >= unconditioned + 0.2, sweep
