"""Quality per minute of training: every variant trains for the same
wall-clock budget on the training songs of the demo set, then 64 DDIM-50
samples are scored against the held-out songs (quality.py: normalised
Fréchet distance on fixed features and on the judge, flatness, block
energy). The peer of each variant is the baseline, the seed's choices at CPU
size: the named run ``cpu`` on the complex STFT (x0 prediction, plain MSE,
linear schedule).

A variant is the baseline with some of its settings replaced
(``BASELINE.replace(...)``): every variant is a setting of the package, not
a fork of its code.

Figures and how they were measured: docs/quality.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from musicdiff_nb.config import RunConfig
from musicdiff_nb.data import load_data, load_music_dataset, spectrograms
from musicdiff_nb.model import DiT, DiTConfig
from musicdiff_nb.quality import build_reference, evaluate
from musicdiff_nb.schedule import DDPMSchedule
from musicdiff_nb.settings import notebook_settings
from musicdiff_nb.spectrogram import SpectrogramConfig, to_spectrogram
from musicdiff_nb.train import train

import measure

CPU = notebook_settings("cpu")
BASELINE = CPU.replace(spectrogram=CPU.stft)
SPECTROGRAM = BASELINE.spectrogram

VARIANTS = {
    "baseline": BASELINE,
    "epsilon": BASELINE.replace(model=dict(prediction_type="epsilon")),
    "v": BASELINE.replace(model=dict(prediction_type="v_prediction")),
    "min-snr": BASELINE.replace(train=dict(loss_weighting="min_snr")),
    "v+min-snr": BASELINE.replace(model=dict(prediction_type="v_prediction"), train=dict(loss_weighting="min_snr")),
    "cosine": BASELINE.replace(schedule=dict(beta_schedule="cosine")),
    "magnitude": BASELINE.replace(spectrogram=SPECTROGRAM.with_representation("magnitude")),
    "mel": BASELINE.replace(spectrogram=SPECTROGRAM.with_representation("mel")),  # the cpu run's
    "compression-0.3": BASELINE.replace(spectrogram=dict(compression=0.3)),
    "small": BASELINE.replace(model=DiTConfig.preset("small")),
    "patch-16": BASELINE.replace(model=dict(patch_size=16)),
    "patch-4": BASELINE.replace(model=dict(patch_size=4)),
    "lr-3e-3": BASELINE.replace(train=dict(lr=3e-3)),
    "lr-3e-4": BASELINE.replace(train=dict(lr=3e-4)),
    "batch-32": BASELINE.replace(train=dict(batch_size=32)),
    "all-clips": BASELINE.replace(data=dict(max_clips_per_song=None)),
    "clip-0.5s": BASELINE.replace(spectrogram=dict(frames=64)),
    "22kHz": BASELINE.replace(spectrogram=dict(sample_rate=22050)),
}


def unit_scale(spec: SpectrogramConfig, source: str = "demo") -> SpectrogramConfig:
    """``spec`` with ``scale`` set so the complex representation of the
    source's music has unit standard deviation (a compression exponent other
    than 0.5 changes it)."""
    if spec.representation != "complex":
        return spec
    ds = load_music_dataset(source, spec, songs="train", max_clips_per_song=4)
    waves = ds.with_format("torch", columns=["audio"])[:]["audio"]
    raw = to_spectrogram(waves, SpectrogramConfig(**{**asdict(spec), "scale": 1.0}))
    return SpectrogramConfig(**{**asdict(spec), "scale": round(float(raw.std()), 4)})


def run_variant(name: str, settings: RunConfig, minutes: float, out_dir: Path, references: dict, n: int,
                sample_steps: int, seed: int = 0) -> dict:
    if settings.spectrogram.compression != SPECTROGRAM.compression:
        settings = settings.replace(spectrogram=unit_scale(settings.spectrogram))
    settings = settings.replace(train=dict(steps=10**9, time_limit=60 * minutes, seed=seed, out_dir=str(out_dir / name),
                                           progress=False, log_every=50, checkpoint_every=10**6))
    ds = load_data(settings, keep_audio=False)
    torch.manual_seed(seed)
    model, schedule = DiT(settings.model), DDPMSchedule(settings.schedule)
    state = train(model, schedule, spectrograms(ds), settings)
    history = state.history
    key = json.dumps(asdict(settings.spectrogram), sort_keys=True)
    if key not in references:
        references[key] = build_reference(settings)
    report = evaluate(state.ema, schedule, references[key], n=n, steps=sample_steps, seed=seed)
    return {"variant": name, "run": settings.to_dict(), "steps": history.step[-1], "seconds": history.seconds,
            "final_loss": history.loss[-1], "parameters": model.num_parameters(), "clips": len(ds),
            **report.to_dict()}


def run(variants: list[str], minutes: float, out_dir: str, n: int = 64, sample_steps: int = 50,
        json_path: str | None = None) -> dict:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}: use some of {list(VARIANTS)}")
    result = {"benchmark": "quality", "minutes": minutes, "n": n, "sample_steps": sample_steps, "rows": []}
    references = {}
    for name in variants:
        result["rows"].append(run_variant(name, VARIANTS[name], minutes, Path(out_dir), references, n, sample_steps))
        print(row_line(result["rows"][-1]), flush=True)
        if json_path:  # after every variant: a long run interrupted keeps what it measured
            measure.write_json(json_path, result)
    return result


def row_line(row: dict) -> str:
    fd, c = row["fd"], row["clips"]
    return (f"  {row['variant']:16s} {row['steps']:6d} steps  FD features {fd['features']['normalised']:6.3f}  "
            f"judge {fd['judge']['normalised']:6.3f}  flatness {c['flatness']:.3f}  block {c['block_energy']:.3f}  "
            f"silence {c['silence']:.2f}  nearest {c['nearest_db']:5.1f} dB  loss {row['final_loss']:.4f}")


def report(result: dict) -> str:
    lines = [f"quality after {result['minutes']} min of training per variant; {result['n']} DDIM-"
             f"{result['sample_steps']} samples scored against held-out songs (normalised FD: 0 = real, 1 = noise)"]
    lines += [row_line(row) for row in result["rows"]]
    if result["rows"]:
        fd = result["rows"][0]["fd"]
        lines.append(f"  real clips of the training songs: FD features {fd['features']['train_normalised']:.3f}, "
                     f"judge {fd['judge']['train_normalised']:.3f} (a perfect copy of the training data)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = measure.parser(__doc__)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="some of: " + ", ".join(VARIANTS))
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of every variant (wall clock)")
    parser.add_argument("-n", type=int, default=64, help="clips generated and scored per variant")
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--out", default="runs/quality", help="checkpoints, one folder per variant (run again "
                                                              "with more --minutes to continue them)")
    args = parser.parse_args(argv)
    return measure.run_benchmark(args, lambda device: run(
        args.variants, args.minutes, args.out, args.n, args.sample_steps, args.json), report)


if __name__ == "__main__":
    main()
