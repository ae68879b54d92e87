"""Sampling: DDIM and DPM-Solver++ at few steps against DDIM-50 and DDPM at 1000, time and quality.

The same as `python -m musicdiff_nb bench sampling`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["sampling", *sys.argv[1:]])
