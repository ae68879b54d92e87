"""What the notebooks show, by kind:

- ``figures``  static matplotlib figures (drawn with ``draw``: spectrograms, waveforms, patch grids)
- ``tables``   pandas tables
- ``widgets``  explorers (sliders over a view) and an audio player: the only module importing ipywidgets and IPython
- ``monitor``  the live loss curve and x_0 predictions of a training run

``from musicdiff_nb.viz import plot_spectrograms, ...`` gives any of the names
below; each module is imported on first use, so the command line, which
imports ``viz.figures``, never loads ipywidgets or IPython.
"""

from importlib import import_module

EXPORTS = {
    "figures": ["save_figure", "plot_spectrograms",
                "plot_loss", "plot_trajectory", "plot_trajectory_step", "plot_nearest",
                "plot_quality", "plot_sampler_quality", "plot_guidance_sweep"],
    "tables": ["song_table", "round_trip_table", "parameter_table", "shape_table", "attention_share_table"],
    "widgets": ["play", "explorer", "stft_explorer", "timestep_explorer", "trajectory_explorer"],
    "monitor": ["TrainingMonitor"],
}
MODULE_OF = {name: module for module, names in EXPORTS.items() for name in names}

__all__ = list(MODULE_OF)


def __getattr__(name: str):
    if name not in MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{MODULE_OF[name]}", __name__), name)


def __dir__():
    return sorted([*globals(), *__all__])
