"""The quality measure's reach: how far a trained model scores from real music
of its training songs, in units of the measure's own seed-to-seed spread.

For each seed: ``n`` real clips of the training songs are set aside, the rest
of those songs' clips are the reference (the seed also draws its halves and
noise), and both the model's ``n`` samples (drawn with that seed) and the
real clips set aside are scored against it. Per comparison and embedding it
prints the mean and spread over seeds of both, and the gap between the means
in units of the larger spread and of the real clips' spread. With ``--join
k`` each scored piece is ``k`` consecutive model clips laid end to end,
against real clips ``k`` times as long: the structure-in-time measure needs
4 s, and the models make 1-s clips.

    python benchmarks/quality_reach.py [--checkpoint PATH] [--seeds 5] [--n 64] [--join 4] [--json FILE]

Figures and how they were measured: docs/quality.md.
"""

import argparse
import json
import statistics
from dataclasses import replace

import torch

from musicdiff_nb import load_checkpoint, to_spectrogram, trained_checkpoint
from musicdiff_nb.files import atomic_write
from musicdiff_nb.quality import build_reference, evaluate, score


def set_aside(reference, n: int, seed: int):
    """``n`` real training clips, and the reference of the rest."""
    order = torch.randperm(len(reference.train), generator=torch.Generator().manual_seed(1000 + seed))
    rest = replace(reference, train=reference.train[order[n:]], train_specs=reference.train_specs[order[n:]])
    return reference.train[order[:n]], rest


def normalised(report) -> dict:
    return {comparison: {e: s["normalised"] for e, s in fd.items()}
            for comparison, fd in [("held_out", report.fd), ("train", report.fd_train)]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="default: the shipped trained model")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--join", type=int, default=1, help="model clips laid end to end per scored piece")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint or trained_checkpoint())
    run, clips_per_song = ckpt.run, ckpt.run.data.max_clips_per_song
    if args.join > 1:  # pieces longer than the model's clips: every clip of the training songs, at that length
        run, clips_per_song = run.replace(spectrogram=dict(frames=run.spectrogram.frames * args.join)), None
    reference = build_reference(run, max_train_clips_per_song=clips_per_song)
    rows = []
    for seed in range(args.seeds):
        real, rest = set_aside(reference, args.n, seed)
        model = evaluate(ckpt.ema, ckpt.schedule, rest, n=args.n, steps=args.steps, seed=seed, join=args.join)
        real = score(rest, to_spectrogram(real, run.spectrogram), ckpt.model.config.patch_size, seed)
        rows.append({"seed": seed, "model": normalised(model), "real": normalised(real),
                     "model_report": model.to_dict(), "real_report": real.to_dict()})
        print(f"seed {seed}: model {rows[-1]['model']}, real {rows[-1]['real']}", flush=True)
    print(f"{args.checkpoint or 'shipped model'}: {args.n} pieces of {args.join} clip(s), "
          f"{run.spectrogram.clip_seconds:.2f} s, {args.seeds} seeds")
    summary = {}
    for comparison, embeddings in rows[0]["model"].items():
        for e in embeddings:
            model, real = ([r[side][comparison][e] for r in rows] for side in ("model", "real"))
            spreads = statistics.stdev(model), statistics.stdev(real)
            gap = statistics.mean(model) - statistics.mean(real)
            summary[f"{comparison}/{e}"] = dict(model=model, real=real, gap=gap, spreads=spreads,
                                                ratio=gap / max(spreads))
            print(f"  against {comparison:8s} {e:9s} model {statistics.mean(model):.3f} ± {spreads[0]:.3f}"
                  f"   real {statistics.mean(real):.3f} ± {spreads[1]:.3f}   gap {gap:.3f} = "
                  f"{gap / max(spreads):.1f} x the larger spread, {gap / spreads[1]:.1f} x the real clips'")
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
