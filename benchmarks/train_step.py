"""Training step throughput: our DiT against diffusers' DiTTransformer2DModel
configured to the same width, depth, heads, patch size and token count, in
one training step harness (same batch, precision, loss and fused AdamW), so
the models are all that differs. Also the FLOPs per step and the fraction of
the device's peak they reach (MFU), the peak being a large matmul in the
same precision, timed in the same rounds; and the operators per step, which
bound a small model's step on a GPU in eager mode (one launch or more each).

Figures and how they were measured: docs/benchmarks.md."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from musicdiff_nb.model import DiT, DiTConfig

import measure


def diffusers_dit(config: DiTConfig) -> torch.nn.Module:
    """diffusers' DiT with our configuration's architecture."""
    from diffusers import DiTTransformer2DModel  # a test-only dependency (requirements.txt), not the package's

    height, width = config.input_size
    if height != width or config.mlp_ratio != 4:
        raise ValueError(f"diffusers' DiTTransformer2DModel needs square inputs and an MLP ratio of 4, "
                         f"not input_size={config.input_size}, mlp_ratio={config.mlp_ratio}")
    return DiTTransformer2DModel(
        num_attention_heads=config.num_heads, attention_head_dim=config.hidden_size // config.num_heads,
        in_channels=config.in_channels, num_layers=config.depth, sample_size=height,
        patch_size=config.patch_size, activation_fn="gelu-approximate", norm_eps=1e-6)


def contenders(config: DiTConfig, device: torch.device) -> dict[str, tuple[torch.nn.Module, callable]]:
    """name -> (model, forward(x_t, t)). diffusers' DiT always embeds a class
    label (1000 classes); it is given label 0."""
    ours = DiT(config).to(device)
    peer = diffusers_dit(config).to(device)
    return {
        "ours": (ours, lambda x, t: ours(x, t)),
        "diffusers": (peer, lambda x, t: peer(x, t, torch.zeros_like(t), return_dict=False)[0]),
    }


def training_step(model: torch.nn.Module, forward, x_t, t, x0, autocast):
    """One step: forward, MSE against x0, backward, fused AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        with autocast:
            out = forward(x_t, t)
        loss = F.mse_loss(out.float(), x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run(config: DiTConfig, device: torch.device, batch_size: int, precision: str = "auto",
        compile: bool = False, repeats: int = 5) -> dict:
    bf16 = device.type == "cuda" and precision in ("auto", "bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    x0 = torch.randn(batch_size, config.in_channels, *config.input_size, device=device)
    t = torch.randint(0, 1000, (batch_size,), device=device)
    x_t = 0.5 * x0 + 0.5 * torch.randn_like(x0)

    steps, figures = {}, {}
    for name, (model, forward) in contenders(config, device).items():
        model.train()
        figures[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                         "flops_per_step": measure.count_flops(training_step(model, forward, x_t, t, x0, autocast)),
                         "ops_per_step": measure.count_ops(training_step(model, forward, x_t, t, x0, autocast))}
        steps[name] = training_step(model, forward, x_t, t, x0, autocast)
        if compile:
            steps[f"{name} compiled"] = training_step(model, torch.compile(forward), x_t, t, x0, autocast)
    peak, peak_flops = measure.matmul(device, torch.bfloat16 if bf16 else torch.float32)
    times = measure.interleaved({**steps, "matmul peak": peak}, device, repeats=repeats, warmup=2)

    peak_rate = peak_flops / measure.median(times.pop("matmul peak"))
    for name, seconds in times.items():
        model_name = name.split()[0]
        step_time = measure.median(seconds)
        figures[name] = {**figures[model_name], "seconds": seconds, "samples_per_s": batch_size / step_time,
                         "mfu": figures[model_name]["flops_per_step"] / step_time / peak_rate}
    ratios = {"eager": figures["ours"]["samples_per_s"] / figures["diffusers"]["samples_per_s"]}
    if compile:
        ratios["compiled"] = figures["ours compiled"]["samples_per_s"] / figures["diffusers compiled"]["samples_per_s"]
        ratios["ours compiled vs diffusers eager"] = (figures["ours compiled"]["samples_per_s"]
                                                      / figures["diffusers"]["samples_per_s"])
    return {"benchmark": "train-step", "config": config.to_dict(), "batch_size": batch_size,
            "precision": "bf16 autocast" if bf16 else "fp32", "peak_flops_per_s": peak_rate,
            "contenders": figures, "ratios": ratios}


def report(result: dict) -> str:
    config = result["config"]
    lines = [f"training step, DiT width {config['hidden_size']}, depth {config['depth']}, heads {config['num_heads']}, "
             f"patch {config['patch_size']}, input {config['in_channels']}x{config['input_size'][0]}x"
             f"{config['input_size'][1]}, batch {result['batch_size']}, {result['precision']}; "
             f"measured peak (large matmul) {result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s"]
    for name, f in result["contenders"].items():
        lines.append(f"  {name:20s} {f['samples_per_s']:9.2f} samples/s  step {measure.spread(f['seconds'])}  "
                     f"{f['parameters'] / 1e6:.2f} M params  {f['flops_per_step'] / 1e9:.1f} GFLOP/step  "
                     f"{f['ops_per_step']} ops/step  MFU {100 * f['mfu']:.1f} %")
    lines += [f"  ours / diffusers ({name}): {ratio:.2f}x" for name, ratio in result["ratios"].items()]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser)  # the seed's model; diffusers' DiT needs a square spectrogram
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on a GPU, 8 on a CPU")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA")
    parser.add_argument("--compile", action="store_true", help="also time both models under torch.compile")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        measure.chosen_run(args, device).model, device, measure.batch_size(args.batch_size, device), args.precision,
        args.compile, args.repeats), report)


if __name__ == "__main__":
    main()
