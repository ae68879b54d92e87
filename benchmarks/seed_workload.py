"""The seed's workload: 5 epochs over 710 songs, the seed's model and
spectrogram (the named run ``seed``), batch 64,
through ``train`` with its fast path. The seed took 2250 s and about
8 GB on one GPU.

The songs come from the ``scores`` source (real compositions rendered to
audio, the seed's size at 710 songs) or the demo set. Rendering 710 songs
takes half an hour on a laptop and does not change the time per step, so by
default ``sample_songs`` = 16 are loaded: the workload's clip count is 710 x
their clips per song (every whole 2.97 s clip, silent ones dropped, as
``load_music_dataset`` cuts them), and their clips are repeated to that count
(``sample_songs=710`` loads every song). With ``steps`` set, that many steps
are timed and the full run is projected from their steady rate (stated as a
projection); without it, the whole workload runs.

Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from musicdiff_nb.config import RunConfig
from musicdiff_nb.data import load_music_dataset, spectrograms
from musicdiff_nb.memory import gib
from musicdiff_nb.model import DiT, DiTConfig
from musicdiff_nb.schedule import DDPMSchedule
from musicdiff_nb.spectrogram import SpectrogramConfig
from musicdiff_nb.train import train

import measure

SEED_SONGS, SEED_EPOCHS, SEED_BATCH, SEED_SECONDS = 710, 5, 64, 2250.0


def source_clips(source: str, spec: SpectrogramConfig, songs: int) -> tuple[torch.Tensor, float]:
    """The clips [N, C, F, T] of ``songs`` songs of ``source`` and their clips per song."""
    ds = load_music_dataset(source, spec, max_songs=songs, keep_audio=False)
    return spectrograms(ds), len(ds) / len(set(ds["song"]))


def repeated(clips: torch.Tensor, count: int) -> torch.Tensor:
    return clips[torch.arange(count) % len(clips)]


def step_flops(config: DiTConfig, batch_size: int, device: torch.device) -> int:
    """FLOPs of one training step's forward and backward pass."""
    model = DiT(config).to(device)
    x = torch.randn(batch_size, config.in_channels, *config.input_size, device=device)
    t = torch.randint(0, 1000, (batch_size,), device=device)
    return measure.count_flops(lambda: F.mse_loss(model(x, t), x).backward())


def run(device: torch.device, settings: RunConfig, steps: int | None = None, batch_size: int = SEED_BATCH,
        epochs: int = SEED_EPOCHS, songs: int = SEED_SONGS, source: str = "scores", sample_songs: int = 16,
        compile: bool = False) -> dict:
    config = settings.model
    clips, clips_per_song = source_clips(source, settings.spectrogram, min(sample_songs, songs))
    clip_count = round(songs * clips_per_song)
    total_steps = epochs * (clip_count // batch_size)
    measured_steps = min(steps or total_steps, total_steps)
    full = measured_steps == total_steps
    data = repeated(clips, clip_count if full else max(batch_size, len(clips)))

    log_every = max(1, measured_steps // 10)
    peak_fn, peak_flops = measure.matmul(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    logged, peaks, paused = [], [], [0.0]

    def on_log(step, *_):
        """At each loss check (one host sync each): the time, and one peak matmul
        timed beside the training, so both see the same load."""
        now = time.perf_counter()
        logged.append((step, now - start - paused[0]))
        peaks.append(measure.interleaved({"peak": peak_fn}, device, repeats=1)["peak"][0])
        paused[0] += time.perf_counter() - now

    settings = settings.replace(train=dict(steps=measured_steps, batch_size=batch_size, log_every=log_every,
                                           checkpoint_every=log_every, device=str(device), compile=compile,
                                           out_dir=None, progress=False))
    torch.manual_seed(0)
    model = DiT(settings.model)
    measure.reset_peak_memory(device)
    start = time.perf_counter()
    train(model, DDPMSchedule(settings.schedule), data, settings, callback=on_log)
    wall = time.perf_counter() - start - paused[0]
    peak = measure.peak_memory(device)

    (first_step, first_time), (last_step, last_time) = logged[0], logged[-1]
    steady = (last_step - first_step) / (last_time - first_time) if last_step > first_step else measured_steps / wall
    seconds = wall if full else first_time + (total_steps - first_step) / steady
    flops = step_flops(config, batch_size, device)
    peak_rate = peak_flops / measure.median(peaks)
    return {"benchmark": "seed-workload", "config": config.to_dict(), "songs": songs, "epochs": epochs,
            "batch_size": batch_size, "source": source, "source_clips": len(clips), "clips_per_song": clips_per_song,
            "clip_count": clip_count, "total_steps": total_steps, "measured_steps": measured_steps,
            "measured_seconds": wall, "steady_steps_per_s": steady, "projected": not full, "seconds": seconds,
            "speedup_vs_seed": SEED_SECONDS / seconds, "peak_memory_bytes": peak, "data_bytes": data.nbytes,
            "flops_per_step": flops, "peak_flops_per_s": peak_rate, "mfu": flops * steady / peak_rate,
            "compile": compile}


def report(result: dict) -> str:
    what = "projected from" if result["projected"] else "measured over"
    lines = [
        f"seed workload: {result['epochs']} epochs x {result['clip_count']} clips "
        f"({result['songs']} songs x {result['clips_per_song']:.1f} clips per song; "
        f"{result['source_clips']} clips of {result['source']!r} repeated), "
        f"batch {result['batch_size']} = {result['total_steps']} steps, "
        f"DiT of width {result['config']['hidden_size']}, depth {result['config']['depth']}"
        f"{', compiled' if result['compile'] else ''}",
        f"  {result['measured_steps']} steps in {result['measured_seconds']:.1f} s, steady "
        f"{result['steady_steps_per_s']:.3g} steps/s = "
        f"{result['steady_steps_per_s'] * result['batch_size']:.1f} samples/s",
        f"  whole workload: {result['seconds']:.0f} s ({what} {result['measured_steps']} steps), "
        f"{result['speedup_vs_seed']:.3g}x the seed's {SEED_SECONDS:.0f} s",
        f"  peak memory {gib(result['peak_memory_bytes'])}, of which the clip cache is "
        f"{gib(result['data_bytes'])} where it is resident (on a GPU: when it fits in half the free memory)",
        f"  {result['flops_per_step'] / 1e9:.1f} GFLOP per step; MFU {100 * result['mfu']:.1f} % of a measured "
        f"peak of {result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s (a large matmul, timed at each loss check)",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser)  # seed: the seed's workload
    parser.add_argument("--steps", type=int, default=None, help="time this many steps and project the rest "
                                                                "(default: all on a GPU, 10 on a CPU)")
    parser.add_argument("--batch-size", type=int, default=SEED_BATCH)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--data", default="scores", choices=["scores", "demo"], help="where the songs come from")
    parser.add_argument("--sample-songs", type=int, default=16,
                        help="songs loaded to count clips per song, repeated to 710 songs' worth (710: all of them)")
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        device, measure.chosen_run(args, device), args.steps or (None if device.type == "cuda" else 10),
        args.batch_size, source=args.data, sample_songs=args.sample_songs, compile=args.compile), report)


if __name__ == "__main__":
    main()
