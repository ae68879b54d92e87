"""Longer music from the shipped model: seams, quality over length, speed.

    nice python benchmarks/editing.py --pieces 20 --seconds 30 --json docs/editing-cpu.json

- seams: the spectral flux (mean absolute change in dB per frequency bin, on
  the piece's decoded audio analysed again) across each join of a continued piece,
  against the flux between the other frames: the share of joins below the
  inside flux's 95th percentile (as many as 95 % if a join sounds like any
  other moment), at the default overlap (``default_overlap``: joins inside
  a patch), at exactly half a window (joins on a patch edge) and for pieces
  of independent windows (overlap 0), the hard cuts the measure has to catch.
- quality over length: windows of the pieces scored by musicdiff_nb.quality
  against single clips of the same sampler, two seeds of those for the
  seed noise.
- speed: one piece, generated and decoded (one Griffin-Lim over the whole
  piece), against as many independent clips as it has windows.
Figures and how they were measured: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from musicdiff_nb import sample, to_waveform
from musicdiff_nb.editing import continuation, default_overlap
from musicdiff_nb.files import atomic_write, trained_checkpoint
from musicdiff_nb.quality import build_reference, load_for_scoring, score
from musicdiff_nb.spectrogram import db, stft


def flux(waves: torch.Tensor, cfg) -> torch.Tensor:
    """Spectral flux [n, frames - 1]: how much frame k differs from frame k - 1, the mean absolute
    change in dB per bin (both ways: a seam may as well drop as rise)."""
    level = db(stft(waves, cfg).abs(), floor_db=-80.0)
    return (level[..., 1:] - level[..., :-1]).abs().mean(dim=-2)


def seams(pieces: torch.Tensor, cfg, window: int, overlap: int) -> dict:
    """Flux at the joins (the first new frame of each window after the first) against the other frames."""
    waves = to_waveform(pieces.cpu(), cfg)
    rises = flux(waves, cfg)  # rises[:, k - 1] is the rise into frame k
    joins = torch.arange(window, pieces.shape[-1], window - overlap)
    at_join = torch.zeros(rises.shape[-1], dtype=torch.bool)
    at_join[joins - 1] = True
    near = at_join | at_join.roll(1) | at_join.roll(-1)
    inside, across = rises[:, ~near], rises[:, at_join]
    p95 = inside.quantile(0.95)
    return {"joins": int(across.numel()), "share_below_inside_p95": float((across < p95).float().mean()),
            "median_join_flux_db": float(across.median()), "median_inside_flux_db": float(inside.median()),
            "inside_p95_db": float(p95)}


def timed(work):
    """The result, the wall-clock seconds and the CPU seconds of this process (the CPU may be shared)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - start, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(trained_checkpoint()))
    parser.add_argument("--pieces", type=int, default=20, help="pieces for the seams and the quality")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sampler", default="dpm++")
    parser.add_argument("--steps", type=int, default=10, help="10 DPM-Solver++ steps match DDIM-50 on this model "
                                                              "(docs/benchmarks.md, sampling)")
    parser.add_argument("--clips", type=int, default=64, help="clips (windows) scored for the quality")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", nargs="+", choices=["speed", "seams", "quality"],
                        default=["speed", "seams", "quality"], help="which measures to run (default: all)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt, run = load_for_scoring(args.checkpoint)
    model, schedule, cfg = ckpt.ema, ckpt.schedule, ckpt.spectrogram
    window, how = model.config.input_size[1], dict(steps=args.steps, sampler=args.sampler)
    frames = 1 + round(args.seconds * cfg.sample_rate) // cfg.hop_length
    figures = {"checkpoint": args.checkpoint, "seconds": args.seconds, "frames": frames, "window": window,
               "sampler": args.sampler, "steps": args.steps, "threads": args.threads}

    overlap = default_overlap(model)
    if "speed" in args.parts:
        speed(figures, model, schedule, cfg, frames, how)
    if "seams" in args.parts or "quality" in args.parts:
        pieces = {overlap: continuation(model, schedule, frames, args.pieces, overlap=overlap,
                                        generator=torch.Generator().manual_seed(1), **how)}
    if "seams" in args.parts:  # continued pieces (joins inside a patch or on a patch edge), independent windows
        pieces.update({k: continuation(model, schedule, frames, args.pieces, overlap=k,
                                       generator=torch.Generator().manual_seed(1), **how) for k in (window // 2, 0)})
        figures["seams"] = {f"overlap_{k}": seams(p, cfg, window, k) for k, p in pieces.items()}
        print(json.dumps(figures["seams"], indent=1), flush=True)
    if "quality" in args.parts:
        figures["quality"] = quality(run, model, schedule, pieces[overlap], frames, window, args.clips, how)
        print(json.dumps(figures["quality"], indent=1), flush=True)
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump(figures, f, indent=1)


def speed(figures, model, schedule, cfg, frames, how):
    """One piece, generated and decoded, then as many independent clips as it has windows."""
    window, overlap = model.config.input_size[1], default_overlap(model)
    piece, *generate = timed(lambda: continuation(model, schedule, frames, 1,
                                                  generator=torch.Generator().manual_seed(0), **how))
    _, *decode = timed(lambda: to_waveform(piece, cfg))
    windows = 1 + -(-(frames - window) // (window - overlap))
    clips, *generate_clips = timed(lambda: sample(model, schedule, windows, generator=torch.Generator().manual_seed(0),
                                                  **how))
    _, *decode_clips = timed(lambda: to_waveform(clips, cfg))
    figures["speed"] = {"windows": windows, "overlap": overlap, "note": "[wall-clock s, CPU s of this process]",
                        "piece_generate": generate, "piece_decode": decode,
                        "clips_generate": generate_clips, "clips_decode": decode_clips}
    print(json.dumps(figures["speed"], indent=1), flush=True)



def quality(run, model, schedule, pieces, frames, window, clips, how) -> dict:
    """Windows of the continued pieces against single clips (two seeds: the seed noise), scored by quality.py."""
    reference = build_reference(run)
    cut = pieces[..., :frames // window * window].unfold(-1, window, window)  # [n, C, F, k, window]
    cut = cut.permute(0, 3, 1, 2, 4).reshape(-1, *cut.shape[1:3], window)
    chosen = cut[torch.randperm(len(cut), generator=torch.Generator().manual_seed(0))[:clips]]
    reports = {"windows_of_pieces": score(reference, chosen, model.config.patch_size)}
    for seed in (0, 1):
        single = sample(model, schedule, clips, generator=torch.Generator().manual_seed(100 + seed), **how)
        reports[f"single_clips_seed{seed}"] = score(reference, single, model.config.patch_size)
    return {name: {"fd_features": r.fd["features"]["normalised"], "fd_judge": r.fd["judge"]["normalised"], **r.clips}
            for name, r in reports.items()}

if __name__ == "__main__":
    main()
