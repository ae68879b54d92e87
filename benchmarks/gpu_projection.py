"""How long a named run trains on a GPU one does not have (Colab's T4 by
default): a projection, not a measurement, from what can be counted on any
machine — the training step's FLOPs and operators (PyTorch's counters, one
step of the run's DiT at batch 2, FLOPs scaled to the run's batch) and its
memory (``estimate_training_memory``, fp16) — and two figures per card:

- its sustained fp16/bf16 matmul rate; an eager step of our DiT reaches about
  half of it (``MATMUL_SHARE``: the whole compiled step ran at 57-61 % of the
  matmul peak on a CPU, docs/benchmarks.md), so the compute-bound step is
  FLOPs / (rate x MATMUL_SHARE);
- the time per operator of an eager step, launch and Python included: on the
  H200, the seed preset's step at batch 64 (about 1 ms of FLOPs) took 12.3 ms,
  and the counter finds 447 operators in that step on a CPU under bf16
  autocast, i.e. 27.5 us per counted operator; the launch-bound step is
  operators x that time.

The step takes the longer of the two (launches overlap the kernels of the
steps before them). ``python benchmarks/gpu_projection.py --run gpu --card t4``.
"""

from __future__ import annotations

import torch

from musicdiff_nb.config import RUNS, named_run
from musicdiff_nb.memory import estimate_training_memory, gib
from musicdiff_nb.model import DiT

import measure
from train_step import training_step

MATMUL_SHARE = 0.5
# tflops: sustained dense fp16/bf16 matmul; op_us: seconds per eager operator (launch + Python), in microseconds
CARDS = {
    # the H200's rate was measured (8192^2 bf16 matmul, docs/benchmarks.md), its op_us is 12.3 ms / 447 operators
    "h200": dict(name="NVIDIA H200", tflops=741.0, op_us=27.5, memory_gib=139.0),
    # the T4 was not measured: 65 TFLOP/s is its fp16 tensor-core peak, and the 70 W card sustains about a third
    # of it in long matmuls; Colab's host CPU, slower than the H200 machine's, makes each operator 1.5x dearer
    "t4": dict(name="NVIDIA T4 (Colab)", tflops=22.0, op_us=41.0, memory_gib=15.0),
}


def count_step(run, batch: int = 2) -> tuple[int, int]:
    """FLOPs per sample and operators per step of one training step of ``run``'s DiT, counted on the CPU."""
    model = DiT(run.model)
    x0 = torch.randn(batch, *run.spectrogram.shape)
    t = torch.randint(0, run.schedule.num_timesteps, (batch,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)  # a GPU step's casts are operators too
    step = training_step(model, lambda x, t: model(x, t), x0, t, x0, autocast)
    step()  # AdamW's state exists from here on, as in every later step
    return measure.count_flops(step) // batch, measure.count_ops(step)


def project(run, card: dict, batch: int) -> dict:
    flops_per_sample, ops = count_step(run)
    flops = flops_per_sample * batch
    compute_s = flops / (card["tflops"] * 1e12 * MATMUL_SHARE)
    launch_s = ops * card["op_us"] * 1e-6
    step_s = max(compute_s, launch_s)
    memory = estimate_training_memory(run.model, batch, torch.float16, data_bytes=0)
    return {"benchmark": "gpu-projection", "run": run.to_dict(), "card": card, "batch_size": batch,
            "steps": run.train.steps, "tokens": run.model.num_tokens,
            "gflop_per_step": flops / 1e9, "ops_per_step": ops, "compute_bound_ms": 1e3 * compute_s,
            "launch_bound_ms": 1e3 * launch_s, "step_ms": 1e3 * step_s, "run_minutes": run.train.steps * step_s / 60,
            "memory_bytes": memory.total, "memory": str(memory)}


def report(r: dict) -> str:
    card = r["card"]
    bound = "compute" if r["compute_bound_ms"] >= r["launch_bound_ms"] else "launch"
    return "\n".join([
        f"projected for {card['name']} (not measured; assumptions in the module docstring):",
        f"  step: {r['gflop_per_step']:.0f} GFLOP at batch {r['batch_size']}, {r['tokens']} tokens, "
        f"{r['ops_per_step']} operators",
        f"  compute-bound {r['compute_bound_ms']:.1f} ms, launch-bound {r['launch_bound_ms']:.1f} ms -> "
        f"{r['step_ms']:.1f} ms per step ({bound}-bound)",
        f"  {r['steps']} steps: {r['run_minutes']:.1f} minutes",
        f"  memory: {r['memory']} of the card's {card['memory_gib']:.0f} GiB "
        f"({'fits' if r['memory_bytes'] < card['memory_gib'] * 2**30 else 'does NOT fit'}; "
        f"{gib(r['memory_bytes'])})",
    ])


def main(argv=None):
    p = measure.parser(__doc__)
    p.add_argument("--run", choices=list(RUNS), default="gpu", help="the named run projected (default: gpu)")
    p.add_argument("--card", choices=list(CARDS), default="t4")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    args = p.parse_args(argv)
    run = named_run(args.run)
    batch = args.batch_size or run.train.batch_size
    return measure.run_benchmark(args, lambda device: project(run, CARDS[args.card], batch), report)


if __name__ == "__main__":
    main()
