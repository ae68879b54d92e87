"""Every figure, table and widget the notebooks show, on real music."""

import base64
import io
import subprocess
import sys
import warnings
from types import SimpleNamespace

import ipywidgets
import matplotlib.pyplot as plt
import nbformat
import pytest
import soundfile as sf
import torch
from IPython.display import Audio
from matplotlib.figure import Figure
from nbconvert import HTMLExporter

from musicdiff_nb import DDPMSchedule, DiT, DiTConfig, TrainConfig, load_music_dataset, sample, train, viz
from musicdiff_nb.neighbours import nearest_clips
from musicdiff_nb.spectrogram import magnitude_db
from musicdiff_nb.viz import draw, widgets

from conftest import TEST_SPEC, benchmark, randomize

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STILL_IMG = 'src="data:image/png;base64'  # an <img> of the still, in nbconvert's HTML


@pytest.fixture(scope="module")
def clips_ds():
    """2 songs x 3 clips, with audio."""
    return load_music_dataset("demo", TEST_SPEC, max_songs=2, max_clips_per_song=3)


@pytest.fixture
def shown(monkeypatch):
    """What the package displays: a list of objects, and of updates to a display handle."""
    items = []

    class Handle:
        def update(self, obj):
            items.append(obj)

    def display(obj, display_id=False):
        items.append(obj)
        return Handle() if display_id else None

    monkeypatch.setattr(widgets, "display", display)
    monkeypatch.setattr(widgets, "_show", lambda output, item: items.append(item))
    return items


def title(ax):
    return ax.get_title() or ax.get_title("left")


def titles(fig):
    return [title(ax) for ax in fig.axes if title(ax)]


def assert_readable(fig, units=()):
    """A figure outside pyplot's registry, with titled panels and labelled axes (with ``units``)."""
    assert isinstance(fig, Figure) and fig.number not in plt.get_fignums()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert panels and all(title(ax) or not ax.axison or fig.get_suptitle() for ax in panels)
    labels = " ".join(ax.get_xlabel() + " " + ax.get_ylabel() for ax in panels)
    assert any(ax.get_xlabel() for ax in panels) and any(ax.get_ylabel() for ax in panels)
    for unit in units:
        assert unit in labels, (unit, labels)


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def has_still(box):
    """The explorer's output carries a PNG of its first view, titled as a still, beside the widget view."""
    bundle = box._repr_mimebundle_()
    return WIDGET_VIEW in bundle and base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")


def tiny_model(**overrides):
    return randomize(DiT(DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:], **overrides))).eval()


def test_figures_are_not_kept_by_pyplot():
    before = plt.get_fignums()
    fig, axes = draw.new_figure(2, 3)
    assert axes.shape == (2, 3) and plt.get_fignums() == before


# -- 01 ------------------------------------------------------------------------

def test_song_table(clips_ds):
    table = viz.song_table(clips_ds, TEST_SPEC)
    assert list(table.index) == ["aztec.ogg", "castle.ogg"] and list(table["labels"]) == ["aztec", "castle"]
    assert list(table["clips"]) == [3, 3]
    span = table["last clip ends (s)"] - table["first clip starts (s)"]
    assert (span >= 3 * TEST_SPEC.clip_seconds - 0.01).all()


def test_waveform_envelope_keeps_the_peaks():
    wave = torch.zeros(100_000)
    wave[12_345] = 0.9
    fig, axes = draw.new_figure()
    draw.draw_waveform(axes[0, 0], wave, 16000, max_points=100)
    top = axes[0, 0].collections[0].get_paths()[0].vertices[:, 1]
    assert top.max() == pytest.approx(0.9)


# -- 02 ------------------------------------------------------------------------

def test_round_trip_table(demo_music):
    wave = demo_music[1, : TEST_SPEC.clip_samples]
    cfg = TEST_SPEC.__class__(sample_rate=22050)
    table = viz.round_trip_table(wave, {"same": wave, "silence": torch.zeros_like(wave)}, cfg)
    assert table.loc["same", "SNR (dB)"] > 200 and table.loc["same", "spectral convergence"] == 0
    assert table.loc["silence", "SNR (dB)"] == pytest.approx(0, abs=1e-4)
    assert table.loc["silence", "spectral convergence"] == pytest.approx(1)


def test_stft_explorer_renders_and_follows_its_sliders(demo_music, shown):
    box = viz.stft_explorer(demo_music[0, : 22050], TEST_SPEC.__class__(sample_rate=22050))
    n_fft, hop = box.children[0].children
    (first,) = shown  # the view, rendered once
    assert has_still(box) and "n_fft 512, hop 128" in titles(first)[0]
    assert_readable(first, units=["time (s)", "frequency (Hz)"])
    n_fft.value = 2048
    hop.value = 8
    assert "n_fft 2048, hop 256" in titles(shown[-1])[0] and "1025 bins" in titles(shown[-1])[0]


# -- 03 ------------------------------------------------------------------------

def test_timestep_explorer_shows_x_t_and_plays_it(demo_clips, shown):
    box = viz.timestep_explorer(demo_clips[0], DDPMSchedule(), TEST_SPEC, t=10)
    slider = box.children[0].children[0]
    assert (slider.min, slider.max, slider.value) == (0, 999, 10)
    figure, audio = shown
    assert has_still(box) and isinstance(audio, Audio) and "t = 10" in titles(figure)[0]
    assert_readable(figure, units=["time (s)", "frequency (Hz)", "timestep t"])
    slider.value = 999
    assert "t = 999" in titles(shown[-2])[0] and shown[-1].data != audio.data


# -- 04 ------------------------------------------------------------------------

def test_patch_grid_lines_fall_between_bins():
    """The patch grid drawn over a spectrogram: rows of patches end on pixel edges, between bins."""
    p, rows, cols = 8, TEST_SPEC.freq_bins // 8, TEST_SPEC.frames // 8
    (left, bottom), (width, height) = draw.patch_grid_cells(TEST_SPEC, p, rows, cols)
    x0, x1, y0, y1 = draw.extent(TEST_SPEC, TEST_SPEC.freq_bins, TEST_SPEC.frames)
    assert (left, bottom) == (x0, y0) and height == pytest.approx((y1 - y0) / TEST_SPEC.freq_bins * p)
    assert left + cols * width == pytest.approx(x1) and bottom + rows * height == pytest.approx(y1)


def test_model_tables(demo_clips):
    model = tiny_model()
    table = viz.parameter_table(model, reference=1000)
    assert table.loc["total", "parameters"] == model.num_parameters() == table["parameters"].iloc[:-2].sum()
    assert table.loc["seed's reported total", "parameters"] == 1000
    shapes = viz.shape_table(model, demo_clips[:2], torch.tensor([3, 4]))
    assert list(shapes.index) == ["patch_embed", "t_embedder", "blocks[0]", "blocks[1]", "final_layer"]
    assert shapes.loc["patch_embed", "input"] == shapes.loc["final_layer", "output"] == (2, 2, 128, 64)
    assert shapes.loc["blocks[0]", "output"] == (2, 128, 64)
    assert not model.patch_embed._forward_hooks  # the hooks are gone
    maps = model.attention_maps(demo_clips[:1], 500)
    shares = viz.attention_share_table(maps, model, query=5, rows=2)
    rows, cols = model.config.grid_size
    by_hand = maps[1][0, 0, 5, : 2 * cols].sum()
    assert shares.loc["block 1", "head 0"] == pytest.approx(float(by_hand), abs=1e-3)
    assert (shares["even spread"] == round(2 / rows, 3)).all()


# -- 05 ------------------------------------------------------------------------

def test_training_monitor(demo_clips, shown):
    torch.manual_seed(0)
    model, schedule = DiT(DiTConfig.preset("tiny", input_size=TEST_SPEC.shape[1:])), DDPMSchedule()
    monitor = viz.TrainingMonitor(model, schedule, demo_clips[0], TEST_SPEC, total_steps=20, snapshots=2,
                                       redraw_seconds=0)
    assert torch.count_nonzero(monitor.predictions[0]) == 0  # a fresh DiT predicts zeros
    history = train(model, schedule, demo_clips, TrainConfig(steps=20, batch_size=3, lr=3e-3, log_every=5,
                                                              progress=False), callback=monitor).history
    assert sorted(monitor.predictions) == [0, 10, 20] and monitor.due == []
    assert monitor.errors[20].shape == (5,) and monitor.errors[20].mean() < monitor.errors[0].mean()
    assert len(shown) == 4 and "step 20 of 20" in titles(shown[-1])[0]  # drawn once, then updated
    fig = viz.plot_loss(history)
    assert_readable(fig, units=["MSE loss"])
    assert history.step[0] == 5 and fig.axes[0].get_xlim()[0] == 0  # the axis starts at step 0
    fig = monitor.plot_predictions()
    assert_readable(fig, units=["time (s)", "frequency (Hz)"])
    assert len(fig.axes) == 4 * 5 and "step 20: x_0 from t = 999" in titles(fig)[-1]


# -- 06 ------------------------------------------------------------------------

def test_sampling_figures_and_explorer(demo_clips, shown):
    model = tiny_model()
    x, trajectory = sample(model, DDPMSchedule(), 2, steps=4, return_trajectory=True)
    fig = viz.plot_trajectory(trajectory, TEST_SPEC, index=1, count=3)
    assert_readable(fig, units=["time (s)", "frequency (Hz)"])
    assert [t.split(":")[0] for t in titles(fig)[:3]] == ["after 0 steps", "after 2 steps", "after all 4 steps"]
    last = fig.axes[2].images[0].get_array()  # top row, last column: the finished sample
    assert torch.allclose(torch.tensor(last.data), magnitude_db(x[1], TEST_SPEC))
    box = viz.trajectory_explorer(trajectory, TEST_SPEC, index=1)
    slider = box.children[0].children[0]
    figure, audio = shown
    assert has_still(box) and isinstance(audio, Audio)
    assert (slider.max, slider.value) == (4, 4) and "after all 4 steps" in titles(figure)[0]
    slider.value = 0
    assert "t = 999" in titles(shown[-2])[0] and isinstance(shown[-1], Audio)
    found = nearest_clips(x, demo_clips, TEST_SPEC)
    fig = viz.plot_nearest(x, demo_clips, found, TEST_SPEC, names=[f"song {i}" for i in range(6)])
    assert_readable(fig, units=["time (s)", "frequency (Hz)"])
    assert "dB RMS" in titles(fig)[1] and len(fig.axes) == 4


def test_sampler_quality_figure_draws_one_line_per_sampler():
    compare, figure_data = benchmark("sampling").compare, benchmark("sampling").figure_data

    def row(sampler, steps, fd):
        return {"sampler": sampler, "steps": steps, "model_calls": steps,
                "fd": {"features": {"mean": fd, "seeds": [fd - 0.01, fd + 0.01]}}}

    rows = {f"{s.upper()}-{k}": row(s, k, 0.3 + 1 / k) for s in ("ddim", "dpm++") for k in (5, 10, 50)}
    rows["DDPM-1000"] = row("ddpm", 1000, 0.3)
    samplers = ("ddim", "dpm++")
    result = {"contenders": rows, "samplers": samplers, **compare(rows, samplers, "DDIM-50", "DDPM-1000")}
    fig = viz.plot_sampler_quality(*figure_data(result))
    assert_readable(fig, units=["steps", "normalised FD"])
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["DDIM", "DPM++", "DDIM-50", "DDPM-1000"]
    assert list(ax.lines[1].get_xdata()) == [5, 10, 50] and ax.get_xscale() == "log"
    assert list(ax.lines[1].get_ydata()) == [0.3 + 1 / k for k in (5, 10, 50)]
    assert ax.lines[2].get_ydata()[0] == rows["DDIM-50"]["fd"]["features"]["mean"]

def test_play_keeps_silence_silent():
    """IPython's Audio divides by the peak: silence would become NaN noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silent = viz.play(torch.zeros(1000), 16000)
    assert (sf.read(io.BytesIO(silent.data))[0] == 0).all()
    loud, _ = sf.read(io.BytesIO(viz.play(0.01 * torch.randn(1000), 16000).data))
    assert abs(loud).max() > 0.99  # normalised


def test_loss_within_a_decade_reads_in_plain_numbers():
    history = SimpleNamespace(step=[50, 100, 150], loss=[0.56, 0.33, 0.22])
    fig = viz.plot_loss(history)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert {"0.3", "0.4", "0.5"} <= set(labels) and ax.get_xlim()[0] == 0


def test_explorer_draws_into_the_widget_state_and_follows_its_control():
    """Without capturing output (see widgets._show): the Output's state holds the view."""
    slider = ipywidgets.IntSlider(value=1, min=0, max=3)
    output = widgets.explorer(lambda n: iter([f"n = {n}"]), n=slider).children[1]
    assert [o["data"]["text/plain"] for o in output.outputs] == ["'n = 1'"]
    slider.value = 2
    assert [o["data"]["text/plain"] for o in output.outputs] == ["'n = 2'"]


def test_explorer_renders_each_view_once(shown):
    rendered = []

    def render(n):
        rendered.append(n)
        yield draw.new_figure()[0]

    slider = ipywidgets.IntSlider(value=1, min=0, max=3)
    box = widgets.explorer(render, n=slider)
    assert rendered == [1] and len(shown) == 1 and has_still(box)  # the view, drawn once; its still, not shown
    slider.value = 2
    assert rendered == [1, 2] and len(shown) == 2


def test_a_page_shows_the_live_explorer_or_its_still_never_both():
    """The still is one more format of the explorer's own output: nbconvert's
    HTML (as any page) draws the widget where the notebook saved its state
    and the PNG where it did not; no second output stays above the live view."""
    slider = ipywidgets.IntSlider(value=1, min=0, max=3)
    box = widgets.explorer(lambda n: iter([draw.new_figure()[0]]), n=slider)
    bundle = box._repr_mimebundle_()
    view = bundle[WIDGET_VIEW]
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    output = nbformat.v4.new_output("display_data", data=bundle)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("explorer", outputs=[output])])
    html = HTMLExporter().from_notebook_node(nb)[0]
    assert STILL_IMG in html and view["model_id"] not in html
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": {view["model_id"]: {}}, "version_major": 2, "version_minor": 0}}
    html = HTMLExporter().from_notebook_node(nb)[0]
    assert STILL_IMG not in html and view["model_id"] in html


def test_spectrogram_rows_sit_on_their_bins_frequencies():
    """Row k of an STFT image is centred on k * sample_rate / n_fft: a full
    STFT's last row on the Nyquist frequency, the model's (Nyquist bin
    dropped) one bin below it; mel bands keep their band numbers."""
    cfg = TEST_SPEC
    spacing = cfg.sample_rate / cfg.n_fft
    for bins in (cfg.n_fft // 2 + 1, cfg.freq_bins):
        left, right, bottom, top = draw.extent(cfg, bins, cfg.frames)
        centres = bottom + (torch.arange(bins) + 0.5) * (top - bottom) / bins
        assert torch.allclose(centres, torch.arange(bins) * spacing)
        assert (left, right) == (0, cfg.frames * cfg.hop_length / cfg.sample_rate)
    assert draw.extent(cfg, cfg.n_fft // 2 + 1, 2)[3] == pytest.approx(cfg.sample_rate / 2 + spacing / 2)
    mel = cfg.with_representation("mel")
    assert draw.extent(mel, mel.n_mels, 2)[2:] == (0, mel.n_mels)


def test_the_names_of_viz_come_from_their_modules():
    for name, module in viz.MODULE_OF.items():
        assert getattr(viz, name) is getattr(getattr(viz, module), name), name
    assert not hasattr(viz, "patches") and "plot_spectrograms" in dir(viz)


def test_figures_and_the_command_line_load_no_widgets():
    """Only widgets.py imports ipywidgets and IPython (seconds to import, and
    nothing the command line's PNGs need)."""
    check = ("import sys, musicdiff_nb.__main__\n"
             "from musicdiff_nb.viz.figures import plot_loss, plot_spectrograms, save_figure\n"
             "from musicdiff_nb.viz import plot_quality, song_table\n"
             "loaded = sorted({'ipywidgets', 'IPython'} & sys.modules.keys())\n"
             "assert not loaded, f'loaded {loaded}'")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
