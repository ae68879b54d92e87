"""The GPU memory estimate against what the forward pass really keeps, and the
refusal of a run that will not fit (the GPU mocked: these run on a CPU)."""

import importlib

import pytest
import torch
import torch.nn.functional as F

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, train
from musicdiff_nb.memory import activation_bytes_per_sample, estimate_training_memory
from musicdiff_nb.precision import autocast

from conftest import TEST_SPEC

GiB = 2**30
training = importlib.import_module("musicdiff_nb.train")  # the module: the package's `train` is the function


def saved_for_backward(model: DiT, batch: int, dtype) -> int:
    """Bytes of the tensors a forward pass and its loss save for the backward,
    each storage once, the parameters left out."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.randn(batch, model.config.in_channels, *model.config.input_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with autocast(torch.device("cpu"), dtype):
            out = model(x, torch.randint(0, 1000, (batch,)))
        F.mse_loss(out.float(), x)
    return sum(saved.values())


@pytest.mark.parametrize("config", [DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:]),
                                    DiTConfig.preset("seed", depth=2)], ids=["tiny", "seed-depth-2"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_the_activation_estimate_matches_what_the_forward_saves(config, dtype):
    torch.manual_seed(0)
    model = DiT(config)
    per_sample = (saved_for_backward(model, 3, dtype) - saved_for_backward(model, 1, dtype)) / 2
    assert abs(activation_bytes_per_sample(config, dtype) / per_sample - 1) < 0.1
    estimate = estimate_training_memory(config, 4, dtype)
    assert 0.5 < estimate.activations / saved_for_backward(model, 4, dtype) < 2


def test_the_estimate_counts_weights_optimizer_ema_and_data():
    config = DiTConfig.preset("seed")
    fp32, bf16 = estimate_training_memory(config, 64), estimate_training_memory(config, 64, torch.bfloat16)
    assert fp32.weights == 20 * 5_259_522 and bf16.weights == 22 * 5_259_522
    assert bf16.activations < 0.7 * fp32.activations
    with_data = estimate_training_memory(DiT(config), 64, torch.bfloat16, data_bytes=GiB)
    assert with_data.total == bf16.total + GiB and "1.00 GiB clip cache" in str(with_data)


def mock_gpu(monkeypatch, free: int, total: int = 16 * GiB):
    monkeypatch.setattr(training, "pick_device", lambda name, rank=0: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, total))


def test_a_run_that_will_not_fit_is_refused_before_training(monkeypatch, demo_clips, tmp_path):
    model = DiT(DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:]))
    mock_gpu(monkeypatch, free=2**20)
    cfg = TrainConfig(steps=2, batch_size=6, out_dir=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match=r"training will not fit on cuda:0: it needs about .* GiB \(.* activations "
                                         r"of batch 6 in fp16\), and 0.00 GiB of 16.00 GiB is free. Lower batch_size "
                                         r"\(now 6 per process\), the clip size .* or the model preset"):
        train(model, DDPMSchedule(), demo_clips, cfg)
    assert not (tmp_path / "last.pt").exists()


def test_fp32_is_suggested_to_drop_and_the_clip_cache_stays_on_the_host_when_it_does_not_fit(monkeypatch):
    needed = estimate_training_memory(DiTConfig.preset("seed"), 64)
    mock_gpu(monkeypatch, free=GiB)
    with pytest.raises(ValueError, match=r"needs about 1.8\d GiB .* in fp32\), and 1.00 GiB of 16.00 GiB is free.* "
                                         r"or train in bf16/fp16"):
        training._place(torch.zeros(1), None, torch.device("cuda", 0), needed)
    clips = torch.zeros(1000, 2, 256, 256)  # 0.49 GiB, more than half of what training leaves free
    mock_gpu(monkeypatch, free=needed.total + clips.nbytes)
    placed, _ = training._place(clips, None, torch.device("cuda", 0), needed)
    assert placed.device.type == "cpu"
