"""Training from disk (the streaming path) against training from memory:
peak memory at 1x, 4x, 16x the demo set, and steps/s.

The same as `python -m musicdiff_nb bench streaming`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["streaming", *sys.argv[1:]])
