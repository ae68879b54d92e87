"""Precision by device (bf16, fp16 with loss scaling, fp32), and fp16
training with a GradScaler, run on a CPU (torch autocasts to fp16 there too)."""

import pytest
import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, load_checkpoint, train
from musicdiff_nb.files import read_checkpoint
from musicdiff_nb.precision import autocast_dtype

from conftest import TEST_SPEC


def cuda_of_capability(monkeypatch, capability) -> torch.device:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return torch.device("cuda", 0)


def tiny(seed=0):
    torch.manual_seed(seed)
    return DiT(DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:]))


def inf_gradient_at(model, steps):
    """One of ``model``'s gradients becomes inf at these training steps, as
    when an fp16 backward overflows."""
    backward_passes = []

    def hook(grad):
        backward_passes.append(1)
        return grad * float("inf") if len(backward_passes) in steps else grad

    model.final_layer.deembed.bias.register_hook(hook)
    return model


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((6, 0), torch.float16),
                                               ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_is_bf16_from_compute_capability_8_and_fp16_below(monkeypatch, capability, dtype):
    assert autocast_dtype(cuda_of_capability(monkeypatch, capability)) == dtype


def test_auto_is_fp32_on_cpu_and_mps():
    assert autocast_dtype("cpu") is None and autocast_dtype(torch.device("mps")) is None


def test_explicit_precisions_are_honoured_on_any_device(monkeypatch):
    for device in (cuda_of_capability(monkeypatch, (7, 5)), torch.device("cpu")):
        chosen = [autocast_dtype(device, p) for p in ("fp32", "bf16", "fp16")]
        assert chosen == [None, torch.bfloat16, torch.float16]
    with pytest.raises(ValueError, match=r"precision='fp8': use one of \('auto', 'fp32', 'bf16', 'fp16'\)"):
        autocast_dtype("cpu", "fp8")
    with pytest.raises(ValueError, match="precision='half'"):
        TrainConfig(precision="half")


def test_fp16_learns_and_skips_the_step_whose_gradients_are_inf(demo_clips, tmp_path):
    model = inf_gradient_at(tiny(), {3})
    cfg = TrainConfig(steps=60, batch_size=6, lr=3e-3, log_every=10, precision="fp16", out_dir=str(tmp_path),
                      progress=False)
    history = train(model, DDPMSchedule(), demo_clips, cfg).history
    assert history.loss[-1] < 0.8 * history.loss[0], history.loss
    assert type(history.skipped_steps) is int and history.skipped_steps == 1
    assert all(p.isfinite().all() for p in model.parameters())
    state = read_checkpoint(tmp_path / "last.pt")
    assert state["history"]["skipped_steps"] == 1
    assert state["scaler"]["scale"] == 2.0 ** 15  # 2 ** 16 to start with, halved once


def test_fp16_resume_continues_the_run_and_its_loss_scale_exactly(demo_clips, tmp_path):
    def run(out, steps, model):
        cfg = TrainConfig(steps=steps, batch_size=2, log_every=1, checkpoint_every=2, out_dir=str(out),
                          precision="fp16", progress=False, cond_dropout=0.0)
        return train(model, DDPMSchedule(), demo_clips, cfg).history

    straight = run(tmp_path / "straight", 8, inf_gradient_at(tiny(), {2}))
    run(tmp_path / "split", 4, inf_gradient_at(tiny(), {2}))
    resumed = run(tmp_path / "split", 8, tiny())
    assert resumed.loss == straight.loss and resumed.skipped_steps == straight.skipped_steps == 1
    a, b = read_checkpoint(tmp_path / "straight/last.pt"), read_checkpoint(tmp_path / "split/last.pt")
    assert a["scaler"] == b["scaler"] and a["scaler"]["_growth_tracker"] == 6  # good steps since the skip
    assert load_checkpoint(tmp_path / "split/last.pt").history.skipped_steps == 1


def test_fp16_gradients_inf_at_every_loss_scale_are_divergence(demo_clips, tmp_path):
    model = inf_gradient_at(tiny(), range(6, 1000))
    cfg = TrainConfig(steps=100, batch_size=2, log_every=2, checkpoint_every=2, precision="fp16",
                      out_dir=str(tmp_path), progress=False)
    with pytest.raises(FloatingPointError, match="the gradients were inf or NaN at every fp16 loss scale down to "
                                                 r"0.5 between steps 2\d and 2\d; the last good checkpoint"):
        train(model, DDPMSchedule(), demo_clips, cfg)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.history.skipped_steps >= 15 and all(p.isfinite().all() for p in ckpt.model.parameters())
