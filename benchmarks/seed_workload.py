"""The seed's workload (5 epochs over 710 songs, seed presets): time, memory, MFU.

The same as `python -m musicdiff_nb bench seed-workload`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["seed-workload", *sys.argv[1:]])
