"""Train a DiT in a process of its own, for the tests that kill one.

    python training_process.py CLIPS.pt OUT_DIR --steps 8 [--checkpoint-every 4] [--kill-at 6]

CLIPS.pt holds a tensor of clips [N, C, F, T]. The run checkpoints to
OUT_DIR/last.pt and resumes from it; ``--kill-at STEP`` makes the process
SIGKILL itself once STEP is done, as a dying Colab session would.
"""

import argparse
import os
import signal

import torch

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, train


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("clips")
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=8)
    args = parser.parse_args()

    clips = torch.load(args.clips, weights_only=True)
    torch.manual_seed(0)
    model = DiT(DiTConfig.preset("tiny", input_size=clips.shape[2:], hidden_size=args.hidden_size,
                                 patch_size=args.patch_size))
    cfg = TrainConfig(steps=args.steps, batch_size=2, lr=1e-3, log_every=1, checkpoint_every=args.checkpoint_every,
                      out_dir=args.out_dir, progress=False)

    def kill_when_due(step, history, model):
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(model, DDPMSchedule(), clips, cfg, callback=kill_when_due)


if __name__ == "__main__":
    main()
