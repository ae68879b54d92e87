"""Sampling: DDIM at 25/50/100 steps against DDPM at 1000 steps, time and output statistics.

The same as `python -m musicdiff_nb bench sampling`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["sampling", *sys.argv[1:]])
