"""The figures, tables and widgets the notebooks show, one section per
notebook. Each figure function returns a matplotlib Figure; each table a
pandas DataFrame; each explorer an ipywidgets box whose first view is drawn
at once (so a headless run executes it too).

Figures are closed in pyplot as soon as they are made: a notebook shows each
one exactly once, as the value its cell returns, and none piles up in
pyplot's registry.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Audio, display
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from .data import label_names
from .files import atomic_write
from .schedule import DDPMSchedule
from .spectrogram import (
    SpectrogramConfig,
    db,
    magnitude_db,
    snr_db,
    spectral_convergence,
    stft,
    to_spectrogram,
    to_waveform,
)

SPECTROGRAM_DB_RANGE = (-80.0, 0.0)


def new_figure(rows: int = 1, cols: int = 1, size=(6.0, 3.5), **subplots):
    """A constrained-layout Figure and its [rows, cols] Axes array, already
    closed in pyplot (see the module docstring)."""
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained", **subplots)
    plt.close(fig)
    return fig, axes


def sparse_ticks(ax, ticks: int = 3, fontsize: float = 8):
    """Few, readable ticks for a small panel in a grid; tick labels only on
    the grid's outer edges."""
    if not isinstance(ax.yaxis.get_major_locator(), FixedLocator):  # mel bands keep their Hz ticks
        ax.yaxis.set_major_locator(MaxNLocator(ticks))
    ax.xaxis.set_major_locator(MaxNLocator(ticks))
    ax.tick_params(labelsize=fontsize)
    ax.title.set_fontsize(fontsize + 1)
    ax.xaxis.label.set_fontsize(fontsize + 1)
    ax.yaxis.label.set_fontsize(fontsize + 1)
    ax.label_outer()


def save_figure(fig, path) -> Path:
    """Save a figure as PNG atomically."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    return Path(path)


def play(wave: torch.Tensor, sample_rate: int) -> Audio:
    """An audio player, loudness-normalised (a silent clip stays silent)."""
    wave = torch.as_tensor(wave).detach().float().cpu().numpy()
    return Audio(wave, rate=sample_rate, normalize=bool(np.abs(wave).max() > 0))


STILL_TITLE = "a still of the first view, for pages that cannot run widgets; the controls below redraw it"


def explorer(render, **controls) -> widgets.VBox:
    """``controls`` (named widgets) above an Output that shows everything
    ``render(**values)`` returns (figures, audio players), redrawn when a
    control changes; the first view is drawn at once.

    The first view's figures are also displayed as a still, before the box:
    a static page (GitHub, nbviewer, exported HTML) shows widgets blank."""
    for item in render(**{name: control.value for name, control in controls.items()}):
        if isinstance(item, Figure):
            item.suptitle(STILL_TITLE, fontsize=9, color="0.4")
            display(item)

    output = widgets.Output()

    def redraw(_=None):
        output.outputs = ()
        for item in render(**{name: control.value for name, control in controls.items()}):
            _show(output, item)

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(controls.values())), output])


def _show(output: widgets.Output, item):
    """Add ``item`` to ``output``'s state. Not ``with output: display(item)``:
    capturing a cell's output into the widget makes a notebook run headless
    (nbclient, nbmake) stall until the cell's timeout every few runs."""
    output.append_display_data(item)


# -- spectrograms (every notebook) ----------------------------------------------

def _mel_bands(cfg: SpectrogramConfig, bins: int) -> bool:
    return cfg.representation == "mel" and bins == cfg.n_mels


def extent(cfg: SpectrogramConfig, bins: int, frames: int) -> tuple:
    """The imshow extent of a [bins, frames] image: time (s) by frequency
    (Hz; for mel bands, the band number: the axis is labelled in Hz)."""
    top = bins if _mel_bands(cfg, bins) else bins * cfg.sample_rate / cfg.n_fft
    return (0, frames * cfg.hop_length / cfg.sample_rate, 0, top)


def draw_image_db(ax, image_db: torch.Tensor, cfg: SpectrogramConfig, title: str = "", colorbar: bool = True):
    """A [bins, frames] STFT magnitude (or mel bands) in dB over time (s) and frequency (Hz)."""
    im = ax.imshow(image_db.numpy(), origin="lower", aspect="auto", extent=extent(cfg, *image_db.shape),
                   vmin=SPECTROGRAM_DB_RANGE[0],
                   vmax=SPECTROGRAM_DB_RANGE[1], cmap="magma", interpolation="nearest")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    if _mel_bands(cfg, image_db.shape[0]):
        bands = torch.linspace(0, cfg.n_mels - 1, 6).round().long()
        ax.set_yticks((bands + 0.5).tolist(), [f"{f:.0f}" for f in cfg.frequencies()[bands].tolist()])
        ax.set_ylabel("frequency (Hz, mel scale)")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="magnitude (dB)")
    return im


def draw_spectrogram(ax, spec: torch.Tensor, cfg: SpectrogramConfig, title: str = "", colorbar: bool = True):
    """A model tensor [C, F, T] as its STFT magnitude in dB."""
    image = magnitude_db(spec.detach().float().cpu(), cfg)
    return draw_image_db(ax, image, cfg, title, colorbar)


def plot_spectrograms(specs, cfg: SpectrogramConfig, titles=None, columns: int = 4, suptitle: str = ""):
    """A grid of spectrograms [n, C, F, T] (or a list of [C, F, T])."""
    specs = list(specs)
    rows, cols = (len(specs) + columns - 1) // columns, min(columns, len(specs))
    fig, axes = new_figure(rows, cols, size=(3.6 * cols, 2.8 * rows))
    for i, ax in enumerate(axes.flat):
        if i < len(specs):
            im = draw_spectrogram(ax, specs[i], cfg, titles[i] if titles else "", colorbar=False)
        else:
            ax.axis("off")
    fig.colorbar(im, ax=axes, label="magnitude (dB)")  # one scale for all: they share vmin and vmax
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def draw_waveform(ax, wave, sample_rate: int, start: float = 0.0, max_points: int = 4000, **style):
    """A waveform as its min/max envelope over at most ``max_points`` blocks,
    so an hour of audio draws as fast as a second."""
    wave = torch.as_tensor(wave).float()
    block = max(1, len(wave) // max_points)
    blocks = wave[: len(wave) // block * block].view(-1, block)
    times = start + (torch.arange(len(blocks)) * block + block / 2) / sample_rate
    ax.fill_between(times.numpy(), blocks.min(1).values.numpy(), blocks.max(1).values.numpy(),
                    linewidth=0.6, **style)
    ax.set(xlabel="time (s)", ylabel="amplitude")


# -- 01 data --------------------------------------------------------------------

def song_table(ds, cfg: SpectrogramConfig) -> pd.DataFrame:
    """One row per song: its labels, how many clips it gave and the span they cover."""
    names = label_names(ds)
    clips = ds.select_columns(["song", "labels", "start_seconds"]).to_pandas()
    songs = clips.groupby("song", sort=False).agg(
        labels=("labels", "first"), clips=("start_seconds", "size"), first=("start_seconds", "min"),
        last=("start_seconds", "max"))
    songs["labels"] = songs["labels"].map(lambda ids: ", ".join(names[i] for i in ids))
    songs["last"] += cfg.clip_seconds
    return songs.rename(columns={"first": "first clip starts (s)", "last": "last clip ends (s)"}).round(2)


def plot_label_counts(ds, top: int = 30):
    """How many songs carry each label (the ``top`` most frequent), and how
    many labels each song has."""
    names = label_names(ds)
    per_song = dict(zip(ds["song"], ds["labels"]))
    counts = Counter(names[i] for ids in per_song.values() for i in ids).most_common(top)
    per_song_counts = Counter(len(ids) for ids in per_song.values())
    fig, axes = new_figure(1, 2, size=(11, 3.8), width_ratios=[3, 1])
    left, right = axes[0]
    left.bar([name for name, _ in counts], [n for _, n in counts], color="tab:blue")
    left.tick_params(axis="x", rotation=60)
    left.set(title=f"the {len(counts)} most frequent of {len(names)} labels", xlabel="label", ylabel="songs")
    label_counts = range(1, max(per_song_counts) + 1)
    bars = right.bar(label_counts, [per_song_counts[k] for k in label_counts], width=0.6, color="tab:orange")
    right.bar_label(bars, padding=2)
    right.set_xticks(label_counts)
    right.set(title="labels per song", xlabel="labels on the song", ylabel="songs",
              xlim=(0.4, label_counts[-1] + 0.6), ylim=(0, 1.15 * max(per_song_counts.values())))
    for ax in (left, right):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # songs come whole
    return fig


def plot_waveforms(waves, sample_rate: int, titles):
    """Waveforms, one row each, amplitude against time (s)."""
    fig, axes = new_figure(len(waves), 1, size=(10, 1.7 * len(waves)), sharex=True)
    for ax, wave, title in zip(axes[:, 0], waves, titles):
        draw_waveform(ax, wave, sample_rate)
        ax.set_title(title, loc="left", fontsize=10)
        ax.label_outer()
    return fig


def plot_song_clips(ds, song: str, cfg: SpectrogramConfig):
    """How a song was cut: each clip drawn where it starts in the song, in
    alternating colours; a gap is a clip dropped as silent (or not taken)."""
    rows = ds.select([i for i, name in enumerate(ds["song"]) if name == song])
    fig, axes = new_figure(size=(11, 2.6))
    ax = axes[0, 0]
    for k, (start, audio) in enumerate(zip(rows["start_seconds"], rows["audio"])):
        color = ("tab:blue", "tab:orange")[k % 2]
        ax.axvspan(start, start + cfg.clip_seconds, color=color, alpha=0.08)
        draw_waveform(ax, audio, cfg.sample_rate, start=start, color=color)
    ax.set_title(f"{song}: {len(rows)} clips of {cfg.clip_seconds:.2f} s "
                 f"({cfg.clip_samples} samples = hop {cfg.hop_length} x ({cfg.frames} frames - 1))")
    return fig


# -- 02 STFT --------------------------------------------------------------------

def _stft_db(wave: torch.Tensor, cfg: SpectrogramConfig) -> torch.Tensor:
    return db(stft(torch.as_tensor(wave).float(), cfg).abs())


def plot_framing(wave, cfg: SpectrogramConfig, frames: int = 4):
    """How the STFT reads a signal: a Hann window of n_fft samples centred
    every hop_length samples (top), and the spectrum of one windowed frame
    (bottom), which is one column of the spectrogram."""
    wave = torch.as_tensor(wave).float()
    n = min(len(wave), frames * cfg.hop_length + cfg.n_fft)
    ms = 1000 / cfg.sample_rate
    fig, axes = new_figure(2, 1, size=(10, 5.5))
    top, bottom = axes[:, 0]
    top.plot(np.arange(n) * ms, wave[:n].numpy(), color="0.6", linewidth=0.8, label="signal")
    peak = float(wave[:n].abs().max().clamp_min(1e-6))
    window = torch.hann_window(cfg.n_fft).numpy() * peak
    shown = 1 + frames // 2
    for k in range(1, frames + 1):
        centre = k * cfg.hop_length
        span = np.arange(centre - cfg.n_fft // 2, centre + cfg.n_fft // 2)
        top.plot(span * ms, window, linewidth=2.2 if k == shown else 1.0, label=f"window of frame {k}")
    top.set(title=f"Hann windows of n_fft = {cfg.n_fft} samples ({cfg.n_fft * ms:.1f} ms), "
                  f"one every hop = {cfg.hop_length} samples ({cfg.hop_length * ms:.1f} ms)",
            xlabel="time (ms)", ylabel="amplitude", xlim=(0, n * ms))
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: it hid a window
    column = _stft_db(wave, cfg)[:, shown]
    bottom.plot(np.arange(len(column)) * cfg.sample_rate / cfg.n_fft, column.numpy())
    bottom.set(title=f"|FFT| of frame {shown}: one column of the spectrogram, bins "
                     f"{cfg.sample_rate / cfg.n_fft:.1f} Hz apart",
               xlabel="frequency (Hz)", ylabel="magnitude (dB)", ylim=(SPECTROGRAM_DB_RANGE[0] - 20, None))
    return fig


def _resolution_title(cfg: SpectrogramConfig) -> str:
    return (f"n_fft {cfg.n_fft}, hop {cfg.hop_length}: window {1000 * cfg.n_fft / cfg.sample_rate:.1f} ms, "
            f"bins {cfg.sample_rate / cfg.n_fft:.1f} Hz apart")


def plot_resolution(wave, cfg: SpectrogramConfig, n_ffts=(128, 512, 2048)):
    """The time/frequency trade-off: one sound through short and long windows
    (each hop the same fraction of n_fft as in ``cfg``)."""
    fig, axes = new_figure(1, len(n_ffts), size=(4.2 * len(n_ffts), 3.4))
    for i, (ax, n_fft) in enumerate(zip(axes[0], n_ffts)):
        c = replace(cfg, n_fft=n_fft, hop_length=max(1, n_fft * cfg.hop_length // cfg.n_fft))
        draw_image_db(ax, _stft_db(wave, c), c, _resolution_title(c), colorbar=i == len(n_ffts) - 1)
        ax.title.set_fontsize(9)
    return fig


def plot_magnitude_phase(wave, cfg: SpectrogramConfig):
    """The two halves of the complex STFT: magnitude (dB) and phase (rad)."""
    x = stft(torch.as_tensor(wave).float(), cfg)
    fig, axes = new_figure(1, 2, size=(11, 3.6))
    draw_image_db(axes[0, 0], db(x.abs()), cfg, "magnitude |X|")
    im = axes[0, 1].imshow(x.angle().numpy(), origin="lower", aspect="auto", extent=extent(cfg, *x.shape[-2:]),
                           cmap="twilight", vmin=-np.pi, vmax=np.pi, interpolation="nearest")
    axes[0, 1].set(title="phase angle(X)", xlabel="time (s)", ylabel="frequency (Hz)")
    fig.colorbar(im, ax=axes[0, 1], label="phase (rad)")
    return fig


def _kurtosis(x: torch.Tensor) -> float:
    z = (x - x.mean()) / x.std()
    return float(z.pow(4).mean())


def plot_representation(wave, cfg: SpectrogramConfig):
    """What the model sees: the real and imaginary channels of the compressed
    STFT, and the distribution of their values with and without compression."""
    wave = torch.as_tensor(wave).float()
    spec = to_spectrogram(wave, cfg)
    uncompressed = to_spectrogram(wave, replace(cfg, compression=1.0))
    limit = float(spec.abs().quantile(0.99))
    fig, axes = new_figure(1, 3, size=(14, 3.6))
    for ax, channel, name in zip(axes[0], spec, ("real part (channel 0)", "imaginary part (channel 1)")):
        im = ax.imshow(channel.numpy(), origin="lower", aspect="auto", extent=extent(cfg, *channel.shape),
                       cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set(title=name, xlabel="time (s)", ylabel="frequency (Hz)")
    fig.colorbar(im, ax=axes[0, :2].tolist(), label="value (model units)")
    ax = axes[0, 2]
    bins = np.linspace(-6, 6, 121)
    for values, label in ((spec, f"|X|^{cfg.compression:g} (the model's input)"),
                          (uncompressed, "|X| (no compression)")):
        z = (values / values.std()).flatten().numpy()
        ax.hist(z, bins=bins, density=True, histtype="step", linewidth=1.5,
                label=f"{label}: kurtosis {_kurtosis(values):.0f}")
    ax.plot(bins, np.exp(-bins**2 / 2) / np.sqrt(2 * np.pi), "k--", linewidth=1, label="N(0, 1) noise: kurtosis 3")
    ax.set(title="values / their std", xlabel="value (standard deviations)", ylabel="density", yscale="log",
           ylim=(1e-4, None))
    ax.legend(fontsize=8)
    return fig


def round_trip_table(wave, restored: dict, cfg: SpectrogramConfig) -> pd.DataFrame:
    """SNR (dB) and spectral convergence of each restored waveform against ``wave``."""
    wave = torch.as_tensor(wave).float()
    return pd.DataFrame({name: {"SNR (dB)": snr_db(wave, w), "spectral convergence": spectral_convergence(wave, w, cfg)}
                         for name, w in restored.items()}).T


def stft_explorer(wave, cfg: SpectrogramConfig, n_ffts=(64, 128, 256, 512, 1024, 2048, 4096)) -> widgets.VBox:
    """Sliders for n_fft and the hop (as a fraction of n_fft) over one sound's spectrogram."""
    wave = torch.as_tensor(wave).float()

    def render(n_fft, hop_fraction):
        c = replace(cfg, n_fft=n_fft, hop_length=max(1, n_fft // hop_fraction))
        image = _stft_db(wave, c)
        fig, axes = new_figure(size=(9, 3.6))
        draw_image_db(axes[0, 0], image, c, f"{_resolution_title(c)}; {image.shape[0]} bins x {image.shape[1]} frames")
        yield fig

    style = dict(continuous_update=False, style={"description_width": "initial"})
    return explorer(render,
                    n_fft=widgets.SelectionSlider(options=list(n_ffts), value=cfg.n_fft, description="n_fft", **style),
                    hop_fraction=widgets.SelectionSlider(options=[(f"n_fft/{k}", k) for k in (8, 4, 2, 1)], value=4,
                                                         description="hop", **style))


# -- 03 noise schedule ----------------------------------------------------------

def plot_schedules(schedules: dict[str, DDPMSchedule]):
    """beta_t, abar_t and the signal-to-noise ratio abar_t / (1 - abar_t) of each schedule."""
    fig, axes = new_figure(1, 3, size=(14, 3.6))
    for name, s in schedules.items():
        t = np.arange(s.num_timesteps)
        axes[0, 0].plot(t, s.betas.cpu().numpy(), label=name)
        axes[0, 1].plot(t, s.alphas_cumprod.cpu().numpy(), label=name)
        axes[0, 2].plot(t, (10 * torch.log10(s.snr())).cpu().numpy(), label=name)
    axes[0, 0].set(title="beta_t: noise added at step t", ylabel="beta_t", yscale="log")
    axes[0, 1].set(title="abar_t: signal variance left in x_t", ylabel="abar_t")
    axes[0, 2].set(title="SNR abar_t / (1 - abar_t)", ylabel="SNR (dB)")
    for ax in axes[0]:
        ax.set_xlabel("timestep t")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_noising(x0: torch.Tensor, schedules: dict[str, DDPMSchedule], cfg: SpectrogramConfig, timesteps,
                 seed: int = 0):
    """x_t of one clip at each of ``timesteps`` (columns) under each schedule
    (rows), all with the same noise eps."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = new_figure(len(schedules), len(timesteps), size=(1.7 * len(timesteps) + 1, 2.3 * len(schedules)))
    for row, (name, s) in zip(axes, schedules.items()):
        for ax, t in zip(row, timesteps):
            abar = float(s.alphas_cumprod[t])
            im = draw_spectrogram(ax, s.add_noise(x0, eps, t), cfg, f"{name}, t = {t}\nabar_t = {abar:.3f}",
                                  colorbar=False)
            sparse_ticks(ax)
    fig.colorbar(im, ax=axes, label="magnitude (dB)", fraction=0.02)  # one scale: they share vmin and vmax
    fig.suptitle("x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps: the same clip and the same eps")
    return fig


def timestep_explorer(x0: torch.Tensor, schedule: DDPMSchedule, cfg: SpectrogramConfig, t: int = 250,
                      seed: int = 0) -> widgets.VBox:
    """A slider for t: the noised spectrogram x_t, where t sits on the abar_t
    curve, and x_t as audio. The noise eps is drawn once, so only t changes."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    abar = schedule.alphas_cumprod.cpu()

    def render(t):
        x_t = schedule.add_noise(x0, eps, t)
        fig, axes = new_figure(1, 2, size=(11, 3.4), width_ratios=[2, 1])
        draw_spectrogram(axes[0, 0], x_t, cfg, f"x_t at t = {t}")
        axes[0, 1].plot(abar.numpy(), label="abar_t")
        axes[0, 1].plot(t, abar[t], "o", color="tab:red", label=f"abar_{t} = {abar[t]:.3f}")
        axes[0, 1].set(title="signal left", xlabel="timestep t", ylabel="abar_t")
        axes[0, 1].legend()
        yield fig
        yield play(to_waveform(x_t, cfg), cfg.sample_rate)

    slider = widgets.IntSlider(value=t, min=0, max=schedule.num_timesteps - 1, description="t",
                               continuous_update=False, layout=widgets.Layout(width="60%"))
    return explorer(render, t=slider)


# -- 04 DiT model ---------------------------------------------------------------

def patches(spec: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[C, F, T] -> [N, C * p * p]: the tokens' pixels, in the order the
    Conv2d patch embedding reads them (rows of frequency, then time)."""
    return F.unfold(spec[None].float(), kernel_size=patch_size, stride=patch_size)[0].T


def middle_token(grid: tuple[int, int]) -> int:
    """The token at the centre of a (rows, cols) patch grid."""
    return grid[0] // 2 * grid[1] + grid[1] // 2


def draw_on_patch_grid(ax, values: torch.Tensor, cfg: SpectrogramConfig, patch_size: int, title: str,
                       token: int | None = None, **scale):
    """One value per patch ([rows, cols]) over the clip's time (s) and
    frequency (Hz); a red cross marks ``token``; ``scale``: imshow's vmin, vmax."""
    rows, cols = values.shape
    box = extent(cfg, rows * patch_size, cols * patch_size)
    im = ax.imshow(values.cpu().numpy(), origin="lower", aspect="auto", extent=box, cmap="viridis",
                   interpolation="nearest", **scale)
    if token is not None:
        row, col = divmod(token, cols)
        ax.plot((col + 0.5) * box[1] / cols, (row + 0.5) * box[3] / rows, "x", color="red")
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)")
    return im


def plot_patches(spec: torch.Tensor, cfg: SpectrogramConfig, patch_size: int):
    """Patchify: the spectrogram cut into p x p patches (left, numbered in
    token order) becomes a sequence of N tokens of C * p * p numbers (right)."""
    fig, axes = new_figure(1, 2, size=(13, 4.2), width_ratios=[1.3, 1])
    ax = axes[0, 0]
    draw_spectrogram(ax, spec, cfg, f"{patch_size} x {patch_size} patches")
    rows, cols = cfg.freq_bins // patch_size, spec.shape[-1] // patch_size
    _, dt, _, df = extent(cfg, patch_size, patch_size)
    for r in range(1, rows):
        ax.axhline(r * df, color="white", linewidth=0.5)
    for c in range(1, cols):
        ax.axvline(c * dt, color="white", linewidth=0.5)
    for r in range(rows):
        for c in range(cols):
            if r in (0, rows - 1) or c in (0, cols - 1):
                ax.text((c + 0.5) * dt, (r + 0.5) * df, str(r * cols + c), color="white", ha="center",
                        va="center", fontsize=7, bbox=dict(facecolor="black", alpha=0.4, linewidth=0, pad=1))
    tokens = patches(spec, patch_size)
    limit = float(tokens.abs().quantile(0.99))
    im = axes[0, 1].imshow(tokens.numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                           interpolation="nearest")
    axes[0, 1].set(title=f"{len(tokens)} tokens x {tokens.shape[1]} values (C x p x p)",
                   xlabel="value within the patch (channel, row, column)", ylabel="token")
    fig.colorbar(im, ax=axes[0, 1], label="value (model units)")
    return fig


def plot_position_embedding(model, cfg: SpectrogramConfig, token: int | None = None):
    """The fixed 2-D sin-cos position embedding: its [N, D] table (left) and
    how similar (cosine) one token's position code is to every other's (right)."""
    pos = model.pos_embed[0].cpu()
    grid = model.config.grid_size
    token = middle_token(grid) if token is None else token
    similarity = F.cosine_similarity(pos[token][None], pos, dim=-1).view(grid)
    fig, axes = new_figure(1, 2, size=(12, 3.8))
    im = axes[0, 0].imshow(pos.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    axes[0, 0].set(title="pos_embed: first half codes frequency, second half time", xlabel="channel",
                   ylabel="token")
    fig.colorbar(im, ax=axes[0, 0], label="value")
    im = draw_on_patch_grid(axes[0, 1], similarity, cfg, model.config.patch_size,
                            f"cosine similarity to token {token}'s position", token)
    fig.colorbar(im, ax=axes[0, 1], label="cosine similarity")
    return fig


def parameter_table(model, reference: int | None = None) -> pd.DataFrame:
    """``DiT.parameter_counts()`` with each part's share, and a total row
    (beside ``reference`` when given)."""
    counts = model.parameter_counts()
    total = sum(counts.values())
    table = pd.DataFrame({"parameters": counts})
    table.loc["total"] = total
    if reference is not None:
        table.loc["seed's reported total"] = reference
    table["share (%)"] = (100 * table["parameters"] / total).round(2)
    return table


def shape_table(model, x: torch.Tensor, t) -> pd.DataFrame:
    """The input and output shapes of each part of ``model`` in one forward pass."""
    rows = []

    def record(name):
        def hook(module, inputs, output):
            rows.append({"part": name, "input": tuple(inputs[0].shape), "output": tuple(output.shape)})
        return hook

    parts = {"patch_embed": model.patch_embed, "t_embedder": model.t_embedder,
             **{f"blocks[{i}]": block for i, block in enumerate(model.blocks)}, "final_layer": model.final_layer}
    handles = [module.register_forward_hook(record(name)) for name, module in parts.items()]
    try:
        with torch.no_grad():
            model(x, t)
    finally:
        for handle in handles:
            handle.remove()
    return pd.DataFrame(rows).set_index("part")


def plot_attention(maps, model, cfg: SpectrogramConfig, query: int | None = None):
    """Where one token looks: row ``query`` of each block's (rows) and head's
    (columns) attention matrix, laid out on the patch grid; the cross marks the query."""
    grid = model.config.grid_size
    query = middle_token(grid) if query is None else query
    heads = maps[0].shape[1]
    rows = torch.stack([weights[0, :, query] for weights in maps])  # [blocks, heads, N]
    top = float(rows.max())
    fig, axes = new_figure(len(maps), heads, size=(2.6 * heads + 1, 2.2 * len(maps)))
    for b, (row, weights) in enumerate(zip(axes, rows)):
        for h, ax in enumerate(row):
            im = draw_on_patch_grid(ax, weights[h].view(grid), cfg, model.config.patch_size,
                                    f"block {b}, head {h}", query, vmin=0, vmax=top)
            sparse_ticks(ax)
    bar = fig.colorbar(im, ax=axes, label="attention weight (one scale for all)", fraction=0.03)
    bar.ax.axhline(1 / rows.shape[-1], color="white", linewidth=1.5)
    fig.suptitle(f"attention of token {query} over the {grid[0]} x {grid[1]} patch grid "
                 f"(white line on the bar: 1/{rows.shape[-1]}, an even spread)")
    return fig


def attention_share_table(maps, model, query: int | None = None, rows: int = 2) -> pd.DataFrame:
    """The share of token ``query``'s attention that falls on the lowest
    ``rows`` rows of the patch grid (the bass), per block and head, beside the
    share an even spread over all tokens would give."""
    grid = model.config.grid_size
    query = middle_token(grid) if query is None else query
    shares = torch.stack([weights[0, :, query].view(-1, *grid)[:, :rows].sum(dim=(1, 2)) for weights in maps])
    table = pd.DataFrame(shares.numpy(), index=[f"block {b}" for b in range(len(maps))],
                         columns=[f"head {h}" for h in range(shares.shape[1])])
    table["even spread"] = rows / grid[0]
    return table.round(3)


# -- 05 training ----------------------------------------------------------------

def plot_loss(history, title: str = "training loss", ax=None, marks=()):
    """The logged loss against the step, on a log scale; ``marks`` are steps to flag."""
    if ax is None:
        ax = new_figure()[1][0, 0]
    ax.plot(history.step, history.loss)
    for step in marks:
        ax.axvline(step, color="0.6", linestyle=":", linewidth=1)
    ax.set(xlabel="step", ylabel="MSE loss", yscale="log", title=title)
    ax.set_xlim(0, max(history.step, default=1) * 1.02)  # from step 0: the first point is logged after a few steps
    ax.grid(alpha=0.3, which="both")
    if history.loss and max(history.loss) < 10 * min(history.loss):  # within a decade: label the minor ticks too
        plain = FuncFormatter(lambda value, _: f"{value:.2g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    return ax.figure


class TrainingMonitor:
    """A ``callback`` for ``train``: a loss curve that redraws itself as
    training goes (at most every ``redraw_seconds``), and, at step 0 and at
    ``snapshots`` evenly spaced steps, the model's prediction of x_0 from one
    clip noised to each of ``timesteps`` (the same noise every time)."""

    def __init__(self, model, schedule: DDPMSchedule, clip: torch.Tensor, cfg: SpectrogramConfig, total_steps: int,
                 timesteps=(0, 250, 500, 750, 999), snapshots: int = 4, redraw_seconds: float = 5.0, seed: int = 0):
        self.schedule, self.cfg, self.total_steps = schedule, cfg, total_steps
        self.timesteps = torch.tensor(timesteps)
        self.x0 = clip.float().cpu().expand(len(timesteps), *clip.shape)
        noise = torch.randn(self.x0.shape, generator=torch.Generator().manual_seed(seed))
        self.x_t = schedule.add_noise(self.x0, noise, self.timesteps)
        self.due = sorted({max(1, round(total_steps * (k + 1) / snapshots)) for k in range(snapshots)})
        self.redraw_seconds = redraw_seconds
        self.predictions: dict[int, torch.Tensor] = {}
        self.errors: dict[int, torch.Tensor] = {}
        self._display = None
        self._drawn = float("-inf")
        self.snapshot(model, 0)

    @torch.no_grad()
    def snapshot(self, model, step: int):
        """Record the model's x_0 predictions (and their MSE per t) at ``step``."""
        device = next(model.parameters()).device
        x_t, t = self.x_t.to(device), self.timesteps.to(device)
        out = model(x_t, t).float()
        x0 = self.schedule.predict_x0(out, x_t, t, model.config.prediction_type).cpu()
        self.predictions[step] = x0
        self.errors[step] = (x0 - self.x0).pow(2).mean(dim=(1, 2, 3))

    def __call__(self, step: int, history, model):
        while self.due and step >= self.due[0]:
            self.snapshot(model, step)
            self.due.pop(0)
        if step >= self.total_steps or time.monotonic() - self._drawn >= self.redraw_seconds:
            self._show(self.loss_figure(history))
            self._drawn = time.monotonic()

    def _show(self, fig):
        if self._display is None:
            self._display = display(fig, display_id=True)
        else:
            self._display.update(fig)

    def loss_figure(self, history):
        step = history.step[-1] if history.step else 0
        title = f"training loss: step {step} of {self.total_steps}, {history.seconds:.0f} s on {history.device}"
        return plot_loss(history, title, marks=[s for s in self.predictions if s])

    def plot_predictions(self):
        """Rows: the input x_t, then the predicted x_0 at each recorded step;
        columns: the timesteps. The MSE against the clean clip is in each title."""
        steps = sorted(self.predictions)
        cols = len(self.timesteps)
        fig, axes = new_figure(1 + len(steps), cols, size=(2.9 * cols, 2.3 * (1 + len(steps))))
        for ax, x_t, t in zip(axes[0], self.x_t, self.timesteps.tolist()):
            draw_spectrogram(ax, x_t, self.cfg, f"input x_t, t = {t}" + (" (= x_0)" if t == 0 else ""),
                             colorbar=False)
        for row, step in zip(axes[1:], steps):
            for ax, x0, error, t in zip(row, self.predictions[step], self.errors[step], self.timesteps.tolist()):
                draw_spectrogram(ax, x0, self.cfg, f"step {step}: x_0 from t = {t}\nMSE {error:.3f}", colorbar=False)
        for ax in axes.flat:
            ax.label_outer()
        fig.suptitle("the model's prediction of x_0 as training goes")
        return fig


# -- 06 sampling ----------------------------------------------------------------

def plot_trajectory(trajectory, cfg: SpectrogramConfig, index: int = 0, count: int = 6):
    """``count`` points of a sampler's trajectory for sample ``index``, from
    pure noise to the finished sample: x_t (top) and the model's prediction
    of x_0 from it (bottom; under the sample, the last prediction)."""
    last = len(trajectory.timesteps)  # x_t has last + 1 entries: x_t[last] is the sample
    steps = np.linspace(0, last, min(count, last + 1)).round().astype(int)
    fig, axes = new_figure(2, len(steps), size=(2.2 * len(steps) + 1, 4.6))
    for col, i in enumerate(steps):
        guess = min(i, last - 1)
        top = (f"after all {last} steps:\nthe sample" if i == last
               else f"after {i} steps:\nx_t, t = {trajectory.timesteps[i]}")
        im = draw_spectrogram(axes[0, col], trajectory.x_t[i, index], cfg, top, colorbar=False)
        draw_spectrogram(axes[1, col], trajectory.x0[guess, index], cfg,
                         f"predicted x_0\nat t = {trajectory.timesteps[guess]}", colorbar=False)
    for ax in axes.flat:
        sparse_ticks(ax)
    fig.colorbar(im, ax=axes, label="magnitude (dB)", fraction=0.03)
    fig.suptitle("denoising: from pure noise (left) to the sample (right)")
    return fig


def trajectory_explorer(trajectory, cfg: SpectrogramConfig, index: int = 0) -> widgets.VBox:
    """A slider over the sampler's steps: x_t, the model's x_0 prediction, and x_t as audio."""
    last = len(trajectory.timesteps)

    def render(step):
        x_t = trajectory.x_t[step, index]
        title = (f"the sample, after all {last} steps" if step == last
                 else f"x_t after {step} of {last} steps (t = {trajectory.timesteps[step]})")
        guess = min(step, last - 1)  # the result has no prediction of its own: show the last one
        fig, axes = new_figure(1, 2, size=(11, 3.4))
        draw_spectrogram(axes[0, 0], x_t, cfg, title)
        draw_spectrogram(axes[0, 1], trajectory.x0[guess, index], cfg, f"the model's x_0 prediction at step {guess}")
        yield fig
        yield play(to_waveform(x_t, cfg), cfg.sample_rate)

    slider = widgets.IntSlider(value=last, min=0, max=last, description="step", continuous_update=False,
                               layout=widgets.Layout(width="60%"))
    return explorer(render, step=slider)


def plot_nearest(samples: torch.Tensor, references: torch.Tensor, neighbours, cfg: SpectrogramConfig, names=None):
    """Each sample (left) beside its nearest training clip (right), with the
    distance between their log-magnitude spectrograms (dB RMS)."""
    fig, axes = new_figure(len(samples), 2, size=(9, 2.8 * len(samples)))
    for row, (sample, j, d) in enumerate(zip(samples, neighbours.index.tolist(), neighbours.distance.tolist())):
        draw_spectrogram(axes[row, 0], sample, cfg, f"sample {row}", colorbar=False)
        name = f" ({names[j]})" if names is not None else ""
        draw_spectrogram(axes[row, 1], references[j], cfg, f"nearest training clip {j}{name}: {d:.1f} dB RMS",
                         colorbar=False)
    for ax in axes.flat:
        ax.label_outer()
    return fig


def plot_quality(reports: dict, title: str = "how far from real music?"):
    """Normalised Fréchet distances (quality.py) of each named report, on
    both embeddings: 0 = held-out real music (the floor), 1 = noise (the
    ceiling), with the real clips of the training songs for scale."""
    embeddings = list(next(iter(reports.values())).fd)
    fig, axes = new_figure(1, len(embeddings), size=(5 * len(embeddings), 0.6 * len(reports) + 1.8))
    first = next(iter(reports.values()))
    for ax, embedding in zip(axes[0], embeddings):
        names = ["real (held out)", "real (training songs)", *reports, "noise"]
        values = [0.0, first.fd[embedding]["train_normalised"],
                  *(r.fd[embedding]["normalised"] for r in reports.values()), 1.0]
        colors = ["tab:green", "tab:green", *["tab:blue"] * len(reports), "tab:gray"]
        bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
        ax.bar_label(bars, fmt="%.3f", padding=3)
        ax.set(xlim=(min(0.0, *values) - 0.02, 1.2 * max(1.0, *values)),
               xlabel="normalised Fréchet distance (0 = real, 1 = noise)",
               title=f"{embedding} embedding")
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[0, 1:]:
        ax.set_yticklabels([])
    fig.suptitle(title)
    return fig


def plot_sampler_quality(curves: dict[str, dict[int, float]], levels: dict[str, float] | None = None,
                         noise: float = 0.0, title: str = "fewer steps at equal quality?"):
    """Normalised Fréchet distance (features) against sampling steps, one
    line per sampler (``curves``: sampler -> {steps: FD}); ``levels`` (name ->
    FD, e.g. DDIM-50, DDPM over all timesteps) as horizontal lines, the first
    with ± ``noise`` shaded around it (what counts as equally good:
    bench/sampling.py). ``bench.sampling.figure_data(result)`` gives all three
    from ``bench sampling``'s result."""
    fig, ((ax,),) = new_figure(size=(6.5, 3.8))
    for sampler, points in curves.items():
        ax.plot(*zip(*sorted(points.items())), "o-", label=sampler.upper())
    for (name, level), style in zip((levels or {}).items(), ("--", ":", "-.")):
        ax.axhline(level, color="black" if style == ":" else "tab:gray", ls=style, label=name)
    if levels and noise:
        name, level = next(iter(levels.items()))
        ax.axhspan(level - noise, level + noise, color="tab:gray", alpha=0.2, label=f"{name} ± FD noise")
    steps = sorted({k for points in curves.values() for k in points})
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(k) for k in steps], minor=False)
    ax.minorticks_off()
    ax.set(xlabel="sampling steps (model calls)", ylabel="normalised FD, features\n(0 = real, 1 = noise)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig

# -- 07 conditioning ------------------------------------------------------------

def plot_guidance_sweep(sweep: list[dict], real_hit_rate: float | None = None,
                        title: str = "classifier-free guidance"):
    """Hit rate and diversity (rows of ``evaluation.guidance_sweep``) against
    the guidance scale s; s = 0 is the unconditioned model."""
    scales = [row["scale"] for row in sweep]
    fig, ((hits, spread),) = new_figure(1, 2, size=(10, 3.6))
    hits.plot(scales, [100 * row["hit_rate"] for row in sweep], "o-", label="generated clips")
    if real_hit_rate is not None:
        hits.axhline(100 * real_hit_rate, color="gray", ls="--", label="real clips (held out)")
    hits.set(xlabel="guidance scale s", ylabel="requested label found (%)", ylim=(0, 105),
             title="does the clip carry its label?")
    hits.legend()
    spread.plot(scales, [row["diversity"] for row in sweep], "o-", color="tab:orange")
    spread.set(xlabel="guidance scale s", ylabel="distance between clips (dB RMS)",
               title="how different are clips of one label?")
    for ax in (hits, spread):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig
