"""Where a training step's time goes: ``torch.profiler`` over our DiT's
training step (forward, MSE, backward, fused AdamW; the train-step
benchmark's harness), eager against compiled. Operators are grouped by kind;
the matmul group's FLOPs over its own time give the rate the matmuls run
at, and the whole step's FLOPs over the step time the MFU, both against a
large matmul timed in the same run (the device's best case).

Figures and how they were measured: docs/benchmarks.md."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from musicdiff_nb.model import DiT, DiTConfig
from musicdiff_nb.precision import autocast, autocast_dtype

import measure
from train_step import training_step

# operator name fragments -> group; the first group that matches wins
GROUPS = {
    "matmul": ("addmm", "aten::mm", "bmm", "linear", "matmul", "convolution", "mkldnn"),
    "attention": ("scaled_dot_product", "flash_attention", "efficient_attention", "_softmax"),
    "normalisation": ("layer_norm",),
    "activation": ("gelu", "silu"),
    "optimizer": ("adam",),
    "copies": ("copy_", "clone", "contiguous", "cat", "stack", "fill_", "zero_", "empty"),
    "elementwise": ("add", "mul", "sub", "div", "mse", "pow", "sum", "mean", "where", "neg", "rsqrt", "exp", "sin",
                    "cos", "cpp_fused", "triton_"),
}


def group_of(name: str) -> str:
    return next((group for group, parts in GROUPS.items() if any(p in name for p in parts)), "other")


def profiled(step, repeats: int, device: torch.device) -> tuple[list[dict], float]:
    """Each operator's self time per step over ``repeats`` steps, slowest
    first, and their sum (the step as profiled, the profiler's overhead included)."""
    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.type == "cuda" else [])]
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0 or getattr(e, "self_device_time_total", 0)]
    ops = [{"name": e.key, "group": group_of(e.key), "calls": e.count / repeats,
            "seconds": max(e.self_cpu_time_total, getattr(e, "self_device_time_total", 0)) / 1e6 / repeats}
           for e in events]
    return sorted(ops, key=lambda op: -op["seconds"]), sum(op["seconds"] for op in ops)


def run(config: DiTConfig, device: torch.device, batch_size: int, compile: bool = False, repeats: int = 5,
        precision: str = "auto") -> dict:
    torch.manual_seed(0)
    x0 = torch.randn(batch_size, config.in_channels, *config.input_size, device=device)
    t = torch.randint(0, 1000, (batch_size,), device=device)
    x_t = 0.5 * x0 + 0.5 * torch.randn_like(x0)
    dtype = autocast_dtype(device, precision)
    casting = autocast(device, dtype)
    model = DiT(config).to(device).train()
    counts = measure.flops_by_operator(training_step(model, model, x_t, t, x0, casting))
    flops = sum(counts.values())
    mm_flops = sum(n for op, n in counts.items() if op != "aten.bmm")  # the matmuls and convolutions, not attention
    peak, peak_flops = measure.matmul(device, dtype or torch.float32)  # the peak of the dtype the matmuls run in
    peak_rate = peak_flops / measure.median(measure.interleaved({"peak": peak}, device, repeats=5)["peak"])
    variants = {"eager": training_step(model, model, x_t, t, x0, casting)}
    if compile:
        variants["compiled"] = training_step(model, torch.compile(model), x_t, t, x0, casting)
    figures = {}
    for name, step in variants.items():
        ops, profiled_seconds = profiled(step, repeats, device)
        step_time = measure.median(measure.interleaved({name: step}, device, repeats=repeats)[name])
        groups = {}
        for op in ops:
            groups[op["group"]] = groups.get(op["group"], 0.0) + op["seconds"]
        matmul_seconds = groups.get("matmul", 0.0)
        figures[name] = {"step_seconds": step_time, "profiled_seconds": profiled_seconds, "groups": groups,
                         "top_ops": ops[:15], "mfu": flops / step_time / peak_rate,
                         "matmul_rate_vs_peak": mm_flops / matmul_seconds / peak_rate if matmul_seconds else None}
    return {"benchmark": "profile", "config": config.to_dict(), "batch_size": batch_size,
            "precision": str(dtype or torch.float32).removeprefix("torch."), "flops_per_step": flops,
            "matmul_flops_per_step": mm_flops, "peak_flops_per_s": peak_rate, "variants": figures}


def report(result: dict) -> str:
    lines = [f"training step of our DiT (width {result['config']['hidden_size']}, depth {result['config']['depth']}), "
             f"batch {result['batch_size']}, {result.get('precision', 'float32')}: "
             f"{result['flops_per_step'] / 1e9:.1f} GFLOP, of which matmuls and convolutions "
             f"{result['matmul_flops_per_step'] / 1e9:.1f}; measured peak "
             f"{result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s in that dtype"]
    for name, v in result["variants"].items():
        rate = v["matmul_rate_vs_peak"]
        lines.append(f"  {name}: step {v['step_seconds'] * 1e3:.1f} ms, MFU {100 * v['mfu']:.1f} %; the matmuls run at "
                     f"{'?' if rate is None else f'{100 * rate:.0f} %'} of the peak while they run")
        total = v["profiled_seconds"]
        shares = sorted(v["groups"].items(), key=lambda kv: -kv[1])
        lines.append(f"    time by kind (of {total * 1e3:.1f} ms profiled, the profiler's overhead included): "
                     + ", ".join(f"{g} {100 * s / total:.0f} %" for g, s in shares))
        lines.append(f"    {'operator':44s} {'calls':>6s} {'ms/step':>8s}  kind")
        lines += [f"    {op['name'][:44]:44s} {op['calls']:6.0f} {op['seconds'] * 1e3:8.2f}  {op['group']}"
                  for op in v["top_ops"][:10]]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on a GPU, 8 on a CPU")
    parser.add_argument("--compile", action="store_true", help="also profile the step under torch.compile")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="autocast dtype (auto: bf16 on CUDA, fp32 on a CPU); the peak is timed in it")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        measure.chosen_run(args, device).model, device, measure.batch_size(args.batch_size, device), args.compile,
        args.repeats, args.precision), report)


if __name__ == "__main__":
    main()
