"""Preprocessing throughput (seconds of audio per second) against librosa.stft.

The same as `python -m musicdiff_nb bench preprocess`; `--help` lists the options.
Figures and how they were measured: docs/benchmarks.md.
"""

import sys

from musicdiff_nb.bench import main

if __name__ == "__main__":
    main(["preprocess", *sys.argv[1:]])
