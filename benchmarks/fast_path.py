"""Each choice of the fast path against the alternative it replaced, timed
in the same rounds at the seed's sizes:

- the patch de-embedding as one matmul per token vs the ConvTranspose2d
  module call (forward and backward);
- fused AdamW vs the default (foreach) AdamW;
- the EMA update with a host-side weight (``update_ema``: one multi-tensor
  lerp) vs ``AveragedModel.update_parameters`` with the same warm-up (a
  lerp per tensor, and two reads of its counter from the device);
- ``to_spectrogram`` (one real gain per bin) vs ``compress`` then stacking
  the real and imaginary parts.

Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from musicdiff_nb.model import DiT, DiTConfig, deembed_patches
from musicdiff_nb.spectrogram import SpectrogramConfig, compress, stft, to_spectrogram
from musicdiff_nb.train import update_ema

import measure


def deembedding(model: DiT, batch_size: int, device: torch.device) -> dict:
    layer, grid = model.final_layer.deembed, model.config.grid_size
    tokens = torch.randn(batch_size, model.config.num_tokens, model.config.hidden_size, device=device,
                         requires_grad=True)

    def backward(fn):
        return lambda: fn().square().mean().backward()

    return {"matmul per token": backward(lambda: deembed_patches(tokens, layer, grid)),
            "ConvTranspose2d": backward(lambda: layer(tokens.transpose(1, 2).unflatten(2, grid)))}


def adamw(model: DiT) -> dict:
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    fused = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    default = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return {"fused": fused.step, "foreach (default)": default.step}


def ema(model: DiT, decay: float = 0.999) -> dict:
    def device_side_update(averaged, current, num_averaged):  # the update update_ema replaced
        d = ((1 + num_averaged) / (10 + num_averaged)).clamp(max=decay)
        for a, c in zip(averaged, current):
            a.lerp_(c, 1 - d)

    ours, previous, updates = AveragedModel(model), AveragedModel(model, multi_avg_fn=device_side_update), [0]

    def ours_step():
        update_ema(ours, model, decay, updates[0])
        updates[0] += 1

    return {"update_ema": ours_step, "AveragedModel.update_parameters": lambda: previous.update_parameters(model)}


def spectrogram(cfg: SpectrogramConfig, clips: int) -> dict:
    waves = torch.randn(clips, cfg.clip_samples)

    def compress_then_stack():
        x = compress(stft(waves, cfg)[..., :-1, :], cfg.compression) / cfg.scale
        return torch.stack([x.real, x.imag], dim=-3)

    return {"to_spectrogram": lambda: to_spectrogram(waves, cfg), "compress, then stack": compress_then_stack}


def repeated(fn, calls: int):
    """``fn`` called ``calls`` times: a timing long enough to rise above a busy machine's jitter."""
    return lambda: [fn() for _ in range(calls)]


def run(device: torch.device, config: DiTConfig, spec: SpectrogramConfig, batch_size: int, repeats: int = 7) -> dict:
    torch.manual_seed(0)
    model = DiT(config).to(device)
    groups = {"patch de-embedding (forward + backward)": (deembedding(model, batch_size, device), 1),
              "AdamW step": (adamw(model), 10), "EMA update": (ema(model), 10),
              "waveform -> model tensor (64 clips, CPU)": (spectrogram(spec, 64), 1)}
    figures = {}
    for group, (contenders, calls) in groups.items():
        where = torch.device("cpu") if "CPU" in group else device
        times = measure.interleaved({name: repeated(fn, calls) for name, fn in contenders.items()}, where,
                                    repeats=repeats, warmup=2)
        times = {name: [s / calls for s in seconds] for name, seconds in times.items()}
        ours, alternative = (measure.median(t) for t in times.values())
        figures[group] = {"seconds": times, "speedup": alternative / ours}
    return {"benchmark": "fast-path", "config": config.to_dict(), "batch_size": batch_size, "groups": figures}


def report(result: dict) -> str:
    lines = [f"fast path, each choice (first) vs the alternative it replaced; batch {result['batch_size']}"]
    for group, f in result["groups"].items():
        (ours, ours_t), (alternative, alt_t) = f["seconds"].items()
        lines.append(f"  {group}: {ours} {measure.median(ours_t) * 1e3:.2f} ms vs {alternative} "
                     f"{measure.median(alt_t) * 1e3:.2f} ms: {f['speedup']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on a GPU, 8 on a CPU")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    def measured(device):
        settings = measure.chosen_run(args, device)
        return run(device, settings.model, settings.spectrogram, measure.batch_size(args.batch_size, device),
                   args.repeats)

    return measure.run_benchmark(args, measured, report)


if __name__ == "__main__":
    main()
