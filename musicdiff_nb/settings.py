"""The notebooks' runs, by where they run: ``notebook_settings(mode)`` is one
of the named runs (``config.RUNS``):

- ``"gpu"``: 8.2-s log-mel clips through the seed's DiT, every clip of the data
  (the seed's own workload is the named run ``"seed"``);
- ``"cpu"``: the main job (``RunConfig()``), a size that trains in minutes;
- ``"quick"``: seconds, for CI and headless runs, chosen by the environment
  variable ``MUSICDIFF_QUICK=1`` (never by editing a notebook): each notebook
  in about a minute on two CPU cores.

``notebook_settings(mode, conditioned=True)`` is 07's run of that size
(``RUNS["conditioned-<mode>"]``). Any setting can be changed with
``RunConfig.replace``, e.g.
``notebook_settings("gpu").replace(data=dict(max_songs=2, max_clips_per_song=4))``:
the tests run the gpu settings on a CPU that way.
"""

from __future__ import annotations

import os

from .config import RunConfig, named_run
from .processes import pick_device

QUICK_ENV = "MUSICDIFF_QUICK"
MODES = ("gpu", "cpu", "quick")


def notebook_mode() -> str:
    """Where the notebooks run: quick under MUSICDIFF_QUICK=1, else gpu on a CUDA device, else cpu."""
    return "quick" if os.environ.get(QUICK_ENV) == "1" else ("gpu" if pick_device().type == "cuda" else "cpu")


def notebook_settings(mode: str | None = None, *, source: str = "demo", conditioned: bool = False) -> RunConfig:
    """The run of notebooks 05-06 (07's with ``conditioned``) for ``mode``
    (``notebook_mode()`` by default), on the songs of ``source`` (see
    ``load_music_dataset``; 07 trains on the "scores" songs); checkpoints in
    ``runs/<mode>`` beside the notebook."""
    mode = mode or notebook_mode()
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {MODES}")
    if conditioned:
        return named_run(f"conditioned-{mode}").replace(train=dict(out_dir=f"runs/{mode}/07_conditioning"))
    return named_run(mode).replace(train=dict(out_dir=f"runs/{mode}"), data=dict(source=source))
