"""Each fast-path choice against the alternative it replaced.

The same as `python -m musicdiff_nb bench fast-path`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["fast-path", *sys.argv[1:]])
