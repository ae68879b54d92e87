"""Training step throughput of our DiT against diffusers' DiTTransformer2DModel.

The same as `python -m musicdiff_nb bench train-step`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["train-step", *sys.argv[1:]])
