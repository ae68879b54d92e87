"""The tables the notebooks show, each a pandas DataFrame."""

from __future__ import annotations

import pandas as pd
import torch

from ..data import label_names
from ..spectrogram import SpectrogramConfig, snr_db, spectral_convergence


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


def round_trip_table(wave, restored: dict, cfg: SpectrogramConfig) -> pd.DataFrame:
    """SNR (dB) and spectral convergence of each restored waveform against ``wave``."""
    wave = torch.as_tensor(wave).float()
    return pd.DataFrame({name: {"SNR (dB)": snr_db(wave, w), "spectral convergence": spectral_convergence(wave, w, cfg)}
                         for name, w in restored.items()}).T


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


def attention_share_table(maps, model, query: int | None = None, rows: int = 2) -> pd.DataFrame:
    """The share of token ``query``'s attention that falls on the lowest
    ``rows`` rows of the patch grid (the bass), per block and head, beside the
    share an even spread over all tokens would give."""
    grid = model.config.grid_size
    query = model.config.middle_token if query is None else query
    shares = torch.stack([weights[0, :, query].view(-1, *grid)[:, :rows].sum(dim=(1, 2)) for weights in maps])
    table = pd.DataFrame(shares.numpy(), index=[f"block {b}" for b in range(len(maps))],
                         columns=[f"head {h}" for h in range(shares.shape[1])])
    table["even spread"] = rows / grid[0]
    return table.round(3)
