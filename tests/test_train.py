from copy import deepcopy
from dataclasses import replace

import pytest
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, load_checkpoint, pick_device, sample, train
from musicdiff_nb.files import read_checkpoint
from musicdiff_nb.train import batch_indices, step_draws

from conftest import TEST_SPEC


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    return DiT(DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:], **overrides))


def relative_error(a, b):
    return float(((a - b) ** 2).mean() / (b ** 2).mean())


@pytest.mark.slow
def test_overfit_one_clip_then_ddim_reproduces_it(demo_clips):
    """Noising, the x0 objective and the DDIM sampler agree: a model that
    memorises one clip must generate that clip from pure noise."""
    clip = demo_clips[1:2]
    model, schedule = tiny(), DDPMSchedule()
    cfg = TrainConfig(steps=600, batch_size=8, lr=3e-3, ema_decay=0.99, log_every=20, progress=False)
    state = train(model, schedule, clip.expand(8, -1, -1, -1), cfg)
    history = state.history
    assert history.loss[0] / history.loss[-1] >= 10, history.loss
    generated = sample(state.ema, schedule, 2, steps=25, generator=torch.Generator().manual_seed(1))
    error = relative_error(generated, clip.expand(2, -1, -1, -1))
    nearest_other = min(relative_error(other, clip[0]) for other in demo_clips if not torch.equal(other, clip[0]))
    assert error < 0.05, error
    assert error < nearest_other / 20, (error, nearest_other)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_other_objectives_learn(demo_clips, prediction_type):
    model = tiny(prediction_type=prediction_type)
    state = train(model, DDPMSchedule(), demo_clips, TrainConfig(steps=60, batch_size=6, lr=3e-3, log_every=10,
                                                                   progress=False))
    history = state.history
    assert history.loss[-1] < history.loss[0]


def test_checkpoint_round_trip(demo_clips, tmp_path):
    model, schedule = tiny(cond_dim=3), DDPMSchedule(beta_schedule="cosine")
    cond = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    cfg = TrainConfig(steps=20, batch_size=3, log_every=5, checkpoint_every=10, out_dir=str(tmp_path), progress=False)
    state = train(model, schedule, (demo_clips, cond), cfg)
    history = state.history
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.step == 20 and ckpt.history.loss == history.loss
    assert ckpt.model.config == model.config and ckpt.schedule.config == schedule.config
    assert ckpt.train_config == cfg
    assert ckpt.run is None and ckpt.spectrogram is None  # bare tensors and a TrainConfig: no run to record
    saved = read_checkpoint(tmp_path / "last.pt")["run"]  # only the sections they have
    assert saved.keys() == {"model", "schedule", "train"} and saved["model"]["cond_dim"] == 3
    for name, tensor in model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[name], tensor.cpu()), name
    for name, tensor in state.ema.state_dict().items():
        assert torch.equal(ckpt.ema.state_dict()[name], tensor.cpu()), name


def test_resume_continues_the_run_exactly(demo_clips, tmp_path):
    def run(out, steps):
        cfg = TrainConfig(steps=steps, batch_size=2, log_every=1, checkpoint_every=2, out_dir=str(out),
                          progress=False, cond_dropout=0.0)
        return train(tiny(), DDPMSchedule(), demo_clips, cfg).history

    straight = run(tmp_path / "straight", 8)
    run(tmp_path / "split", 4)  # stops at 4 ...
    resumed = run(tmp_path / "split", 8)  # ... and a fresh process-like call continues from the checkpoint
    assert resumed.step == straight.step == list(range(1, 9))
    assert resumed.loss == straight.loss  # bit for bit on CPU
    final_a, final_b = load_checkpoint(tmp_path / "straight/last.pt"), load_checkpoint(tmp_path / "split/last.pt")
    for name, tensor in final_a.ema.state_dict().items():
        assert torch.equal(final_b.ema.state_dict()[name], tensor), name


def test_bad_training_input_is_named(demo_clips, tmp_path):
    with pytest.raises(ValueError, match="model expects"):
        train(DiT(DiTConfig.preset("tiny")), DDPMSchedule(), demo_clips, TrainConfig(steps=1, batch_size=2))
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train(tiny(), DDPMSchedule(), demo_clips, TrainConfig(steps=1, batch_size=64))
    with pytest.raises(ValueError, match="multiple of"):
        TrainConfig(log_every=3, checkpoint_every=10)
    with pytest.raises(ValueError, match="steps=0: train at least one step"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        pick_device("bogus")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError, match="a_file is a file"):  # before a step is trained, not at the first save
        train(tiny(), DDPMSchedule(), demo_clips, TrainConfig(steps=2, batch_size=2, out_dir=str(tmp_path / "a_file")))
    train(tiny(), DDPMSchedule(), demo_clips, TrainConfig(steps=2, batch_size=2, log_every=1, out_dir=str(tmp_path),
                                                        progress=False))
    with pytest.raises(ValueError, match="choose another out_dir"):
        train(tiny(hidden_size=32), DDPMSchedule(), demo_clips,
              TrainConfig(steps=4, batch_size=2, log_every=1, out_dir=str(tmp_path), progress=False))


def break_from_step(model, step, part):
    """From training step ``step`` on, the model outputs NaN (``part="loss"``)
    or one of its gradients is inf, which leaves NaN weights behind a loss
    that is still finite (``part="weights"``)."""
    forward_calls = []

    def output_hook(module, inputs, output):
        forward_calls.append(1)
        return output * float("nan") if part == "loss" and len(forward_calls) >= step else output

    model.register_forward_hook(output_hook)
    if part == "weights":
        model.final_layer.deembed.bias.register_hook(lambda grad: grad * float("inf") if len(forward_calls) >= step
                                                     else grad)
    return model


@pytest.mark.parametrize("part", ["loss", "weights"])
def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(demo_clips, tmp_path, part):
    model = break_from_step(tiny(), 6, part)
    cfg = TrainConfig(steps=10, batch_size=2, log_every=2, checkpoint_every=2, out_dir=str(tmp_path), progress=False)
    with pytest.raises(FloatingPointError, match=f"training diverged: the {part} became .* between steps 5 and 6; "
                                                 f"the last good checkpoint, {tmp_path / 'last.pt'}, is kept"):
        train(model, DDPMSchedule(), demo_clips, cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.step == 4 and ckpt.history.step == [2, 4]
    assert all(torch.isfinite(p).all() for p in [*ckpt.model.parameters(), *ckpt.ema.parameters()])


def test_resume_refuses_other_run_settings_or_data(demo_clips, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=2, log_every=1, checkpoint_every=1, out_dir=str(tmp_path), progress=False)
    train(tiny(), DDPMSchedule(), demo_clips, cfg)
    with pytest.raises(ValueError, match=r"continues a run with train.lr=0.001 \(now 0.003\), train.seed=0 \(now 1\): "
                                         "pass the same settings to resume it, or choose another out_dir"):
        train(tiny(), DDPMSchedule(), demo_clips, replace(cfg, steps=4, lr=3e-3, seed=1))
    with pytest.raises(ValueError, match=r"continues a run with model.hidden_size=64 \(now 32\), "
                                         r"schedule.beta_schedule='linear' \(now 'cosine'\)"):
        train(tiny(hidden_size=32), DDPMSchedule(beta_schedule="cosine"), demo_clips, replace(cfg, steps=4))
    with pytest.raises(ValueError, match="trained on 6 clips, this data has 4: resume on the same data"):
        train(tiny(), DDPMSchedule(), demo_clips[:4], replace(cfg, steps=4))
    # the length of the run, logging, checkpointing and the device may change
    state = train(tiny(), DDPMSchedule(), demo_clips, replace(cfg, steps=5, log_every=3, checkpoint_every=3,
                                                                device="cpu"))
    history = state.history
    assert history.step == [1, 2, 3, 5]


def test_a_time_limit_ends_the_run_at_a_logged_step_and_saves_it(demo_clips, tmp_path):
    cfg = TrainConfig(steps=10**6, time_limit=1.0, batch_size=6, log_every=5, checkpoint_every=10**6,
                      out_dir=str(tmp_path), progress=False)
    state = train(tiny(), DDPMSchedule(), demo_clips, cfg)
    history = state.history
    steps = history.step[-1]
    assert 0 < steps < 10**6 and steps % 5 == 0 and history.seconds >= 1.0
    assert load_checkpoint(tmp_path / "last.pt").step == steps
    # resumed with the same budget, it has nothing left to train; with a larger one, it continues
    assert train(tiny(), DDPMSchedule(), demo_clips, cfg).history.step[-1] == steps
    more = train(tiny(), DDPMSchedule(), demo_clips, replace(cfg, time_limit=2.0)).history
    assert more.step[-1] > steps and more.seconds >= 2.0


def test_min_snr_weighting_learns(demo_clips):
    cfg = TrainConfig(steps=60, batch_size=6, lr=3e-3, log_every=10, loss_weighting="min_snr", progress=False)
    state = train(tiny(), DDPMSchedule(), demo_clips, cfg)
    history = state.history
    assert history.loss[-1] < 0.8 * history.loss[0], history.loss
    with pytest.raises(ValueError, match="loss_weighting"):
        TrainConfig(loss_weighting="snr")


def test_one_step_by_hand_is_the_first_step_of_train(demo_clips):
    """What 05_training writes out: train's batch and draws (batch_indices,
    step_draws), x_t, the x0 loss, backward, clipping, one AdamW step."""
    model, schedule = tiny(), DDPMSchedule()
    cfg = TrainConfig(steps=1, batch_size=4, lr=1e-2, seed=3, progress=False)
    clean = demo_clips[next(batch_indices(len(demo_clips), cfg))]
    noise, t, _ = step_draws(torch.Generator().manual_seed(cfg.seed), cfg, clean.shape[1:], schedule.num_timesteps)
    by_hand = deepcopy(model).train()
    optimizer = torch.optim.AdamW(by_hand.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss = torch.nn.functional.mse_loss(by_hand(schedule.add_noise(clean, noise, t), t), clean)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(by_hand.parameters(), cfg.grad_clip)
    optimizer.step()
    state = train(model, schedule, demo_clips, cfg)
    history = state.history
    assert history.loss == [pytest.approx(loss.item(), rel=1e-6)]
    torch.testing.assert_close(dict(by_hand.named_parameters()), dict(model.named_parameters()))
    assert not torch.equal(model.final_layer.deembed.weight, tiny().final_layer.deembed.weight)  # a step was taken
