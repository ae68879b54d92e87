"""Training from disk (the streaming path, streaming.py) against training
from memory: peak resident memory as the data set grows, and steps/s.

Data sets of 1x, 4x, 16x the demo set's clips (its real music, repeated) are
written as Arrow files to a temporary folder row by row, so that no size is
ever held in memory whole. Every run trains in a fresh Python process, so
the figures are that run's own: the peak resident memory of the training
process (the OS's high-water mark, ``VmHWM``), and the largest proportional
set size (PSS: a page shared by n processes counts 1/n in each) of the
training process and its loader workers together, sampled at every loss
check (outside the timed steps), in two parts (Linux's ``smaps_rollup``):
anonymous memory (the heap, the tensors, the shared memory that carries
batches between the processes: what cannot be given back while the run
lives) and the file pages of the memory-mapped cache that were read (the OS
reclaims them when memory runs short). The in-memory path runs at 1x; its
steps/s are the reference of the streaming path's, the two paths
alternating over ``repeats`` rounds (medians reported). On a busy machine
steps/s follow the load, so the CPU seconds per step of the training
process and its workers together are reported too: the work each path
costs, whatever else runs. The spectrogram, model and batch are those of the
named run ``--run`` (by default the notebooks' CPU run, ``cpu``).

Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from musicdiff_nb.config import RunConfig
from musicdiff_nb.data import load_music_dataset
from musicdiff_nb.memory import gib
from musicdiff_nb.model import DiT
from musicdiff_nb.schedule import DDPMSchedule
from musicdiff_nb.spectrogram import SpectrogramConfig
from musicdiff_nb.train import train

import measure

try:
    import psutil  # a dependency of IPython, so wherever the notebooks run
except ImportError:
    psutil = None

SIZES = (1, 4, 16)
COLUMNS = ["spectrogram", "labels"]
CHILD = "--train-in-process"  # the first argument of the process that trains one run (``child``)


def open_files(files: list[str]):
    """The dataset of Arrow ``files`` (memory-mapped), its training columns."""
    import datasets
    return datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files]).select_columns(COLUMNS)


def _repeated_rows(files: list[str], times: int):
    ds = open_files(files).with_format("numpy")
    for _ in range(times):
        yield from ds


def write_repeated(files: list[str], times: int, folder: Path) -> list[str]:
    """The Arrow files of a dataset that holds the rows of ``files`` ``times`` times over."""
    import datasets
    ds = datasets.Dataset.from_generator(_repeated_rows, features=open_files(files).features,
                                         cache_dir=str(folder / f"{times}x"),
                                         gen_kwargs={"files": files, "times": times})
    return [f["filename"] for f in ds.cache_files]


def demo_files(spec: SpectrogramConfig, songs: int | None, clips_per_song: int | None) -> list[str]:
    """The Arrow files of the demo set's clips in the package's cache."""
    ds = load_music_dataset("demo", spec, max_songs=songs, max_clips_per_song=clips_per_song, keep_audio=False)
    return [f["filename"] for f in ds.cache_files]


def train_in_process(files: list[str], stream: bool, run: dict, steps: int, threads: int | None) -> dict:
    """A run in this process (the child's side): its steady steps/s and peak resident memory."""
    if threads:
        torch.set_num_threads(threads)
    ds = open_files(files)
    log_every = max(1, steps // 10)
    settings = RunConfig.from_dict(run).replace(train=dict(
        steps=steps, log_every=log_every, checkpoint_every=log_every, device="cpu", stream=stream, out_dir=None,
        progress=False))
    torch.manual_seed(0)
    model = DiT(settings.model)
    logged, pss, paused = [], [], [0.0]

    def on_log(step, *_):
        now = time.perf_counter()
        logged.append((step, now - paused[0], cpu_seconds()))
        pss.append(proportional_set_sizes())
        paused[0] += time.perf_counter() - now

    start = time.perf_counter()
    train(model, DDPMSchedule(settings.schedule), ds, settings, callback=on_log)
    (first_step, first_time, first_cpu), (last_step, last_time, last_cpu) = logged[0], logged[-1]
    return {"clips": len(ds), "seconds": time.perf_counter() - start - paused[0],
            "steps_per_s": (last_step - first_step) / (last_time - first_time),
            "cpu_seconds_per_step": (last_cpu - first_cpu) / (last_step - first_step),
            "peak_rss_bytes": _status_kib("VmHWM") * 1024,
            "peak_anonymous_pss_bytes": max(p["anonymous"] for p in pss),
            "peak_file_pss_bytes": max(p["file"] for p in pss)}


def cpu_seconds() -> float:
    """CPU seconds (user and system) of this process and its living children so far."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for process in me.children(recursive=True):
        try:
            total += sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def _status_kib(field: str, path: str = "/proc/self/status") -> int:
    with open(path) as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def proportional_set_sizes() -> dict[str, int]:
    """Bytes of PSS of this process and its children (the loader's workers)
    together: ``anonymous`` (with shared memory) and ``file`` (mapped files)."""
    if psutil is None:
        raise RuntimeError("the streaming benchmark counts the memory of the loader's worker processes with psutil: "
                           "pip install psutil")
    me, total = psutil.Process(), {"anonymous": 0, "file": 0}
    for process in [me, *me.children(recursive=True)]:
        try:
            rollup = f"/proc/{process.pid}/smaps_rollup"
            anonymous = _status_kib("Pss_Anon", rollup) + _status_kib("Pss_Shmem", rollup)
            total["file"] += _status_kib("Pss_File", rollup) * 1024
            total["anonymous"] += anonymous * 1024
        except (FileNotFoundError, ProcessLookupError):  # a worker that has just exited
            continue
    return total


def train_in_subprocess(**kwargs) -> dict:
    done = subprocess.run([sys.executable, __file__, CHILD, json.dumps(kwargs)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the training process failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(settings: RunConfig, run_name: str, steps: int = 60, sizes: tuple[int, ...] = SIZES, repeats: int = 2,
        threads: int | None = None, songs: int | None = None, clips_per_song: int | None = None) -> dict:
    """``settings``: the run (its spectrogram, model and batch), called ``run_name`` in the report."""
    spec, model, batch_size = settings.spectrogram, settings.model, settings.train.batch_size
    common = dict(run=settings.to_dict(), steps=steps, threads=threads)
    files = demo_files(spec, songs, clips_per_song)
    with tempfile.TemporaryDirectory(prefix="musicdiff-streaming-") as tmp:
        data = {times: write_repeated(files, times, Path(tmp)) for times in sizes}
        runs = {f"streaming {times}x": [] for times in sizes}
        runs[f"in memory {sizes[0]}x"] = []
        for r in range(repeats):  # the two paths at the smallest size alternate: both see the same load
            runs[f"in memory {sizes[0]}x"].append(train_in_subprocess(files=data[sizes[0]], stream=False, **common))
            for times in sizes if r == 0 else sizes[:1]:
                runs[f"streaming {times}x"].append(train_in_subprocess(files=data[times], stream=True, **common))
        disk = {times: sum(Path(f).stat().st_size for f in data[times]) for times in sizes}
    rows = {}
    for name, results in runs.items():
        times = int(name.split()[-1][:-1])
        rows[name] = {"size": times, "clips": results[0]["clips"], "disk_bytes": disk[times],
                      "steps_per_s": statistics.median(r["steps_per_s"] for r in results),
                      "runs_steps_per_s": [r["steps_per_s"] for r in results],
                      "cpu_seconds_per_step": statistics.median(r["cpu_seconds_per_step"] for r in results),
                      **{key: max(r[key] for r in results)
                         for key in ("peak_rss_bytes", "peak_anonymous_pss_bytes", "peak_file_pss_bytes")}}
    streamed, in_memory = rows[f"streaming {sizes[0]}x"], rows[f"in memory {sizes[0]}x"]
    return {"benchmark": "streaming", "spectrogram": spec.shape, "run": run_name,
            "model": dataclasses.asdict(model), "batch_size": batch_size, "steps": steps, "repeats": repeats,
            "rows": rows,
            "steps_per_s_ratio": streamed["steps_per_s"] / in_memory["steps_per_s"],
            "cpu_per_step_ratio": streamed["cpu_seconds_per_step"] / in_memory["cpu_seconds_per_step"]}


def report(result: dict) -> str:
    lines = [f"training from disk (streaming) vs from memory: the {result['run']!r} run's DiT, spectrograms "
             f"{tuple(result['spectrogram'])}, batch {result['batch_size']}, {result['steps']} steps per run on "
             "a CPU, each run in a fresh process"]
    for name, row in result["rows"].items():
        lines.append(f"  {name:15s} {row['clips']:6d} clips ({gib(row['disk_bytes'])} on disk): peak RSS "
                     f"{gib(row['peak_rss_bytes'])}; with its loader workers, peak PSS anonymous "
                     f"{gib(row['peak_anonymous_pss_bytes'])}, cache file pages "
                     f"{gib(row['peak_file_pss_bytes'])}; {row['steps_per_s']:.3g} steps/s "
                     f"({', '.join(f'{x:.3g}' for x in row['runs_steps_per_s'])}), "
                     f"{row['cpu_seconds_per_step']:.3g} CPU s/step")
    lines.append(f"  steps/s streaming / in memory ({min(r['size'] for r in result['rows'].values())}x, median of "
                 f"{result['repeats']}): {result['steps_per_s_ratio']:.3f}; CPU seconds per step streaming / in "
                 f"memory: {result['cpu_per_step_ratio']:.3f}")
    return "\n".join(lines)


def child():
    """One training run in a process of its own: settings in argv[2], figures out on stdout (JSON)."""
    print(json.dumps(train_in_process(**json.loads(sys.argv[2]))))


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    measure.add_run_arguments(parser, run="cpu", representation=None)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="data set sizes in multiples of the demo set (the first also trains in memory)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path at the first size, alternating")
    parser.add_argument("--songs", type=int, default=None, help="demo songs (default: all 10)")
    parser.add_argument("--max-clips-per-song", type=int, default=None, help="default: every clip")
    args = parser.parse_args(argv)

    def measured(device):
        settings = measure.chosen_run(args, device)
        if args.batch_size:
            settings = settings.replace(train=dict(batch_size=args.batch_size))
        return run(settings, args.run, args.steps, tuple(args.sizes), args.repeats, args.threads, args.songs,
                   args.max_clips_per_song)

    return measure.run_benchmark(args, measured, report)


if __name__ == "__main__":
    child() if sys.argv[1:2] == [CHILD] else main()
