"""What a DiT's condition vector means, and how labels and prompts become one.

Two kinds:

- ``"labels"``: a multi-hot vector over a vocabulary of label names. A
  prompt is read word by word: every label named in it is switched on, and
  the other words are ignored (with a warning that lists them).
- ``"text"``: the sentence embedding (``text.py``) of a text. A clip's text
  is its labels joined by commas; a prompt is embedded by the same encoder,
  so words outside the vocabulary still steer by their meaning.

A model carries its ``Conditioning`` (``DiT.conditioning``) into every
checkpoint, so ``sample(model, ..., prompt=...)`` encodes a prompt the way
the model was trained, wherever the model was loaded.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from . import data
from .config import CONDITIONINGS, RunConfig
from .text import ENCODER_DIM, ENCODER_NAME, INSTALL_HINT, encode_text, text_encoder_available

if TYPE_CHECKING:  # datasets takes seconds to import: with_condition imports it
    import datasets

KINDS = tuple(kind for kind in CONDITIONINGS if kind != "none")


@dataclass(frozen=True)
class Conditioning:
    kind: str
    label_names: tuple[str, ...]
    encoder: str = ""

    def __post_init__(self):
        object.__setattr__(self, "label_names", tuple(self.label_names))
        if self.kind not in KINDS:
            raise ValueError(f"conditioning kind {self.kind!r}: use one of {KINDS}")
        if self.kind == "text" and self.encoder != ENCODER_NAME:
            raise ValueError(f"text encoder {self.encoder!r} is not available here: use {ENCODER_NAME!r}")

    @property
    def dim(self) -> int:
        """Length of the condition vector (``DiTConfig.cond_dim``)."""
        return len(self.label_names) if self.kind == "labels" else ENCODER_DIM

    def to_dict(self) -> dict:
        return {**asdict(self), "label_names": list(self.label_names)}

    @classmethod
    def from_dict(cls, d: dict) -> "Conditioning":
        return cls(**d)

    def describe(self) -> str:
        if self.kind == "labels":
            return f"{len(self.label_names)} labels (multi-hot): {', '.join(self.label_names)}"
        return (f"text, embedded by {self.encoder} ({self.dim} numbers); "
                f"trained on the text of {len(self.label_names)} labels")

    def from_labels(self, label_lists) -> torch.Tensor:
        """[n, dim] condition vectors of n clips, each given by its list of label names."""
        label_lists = [list(labels) for labels in label_lists]
        unknown = sorted({label for labels in label_lists for label in labels} - set(self.label_names))
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}: this model knows {list(self.label_names)}")
        if self.kind == "text":
            texts = sorted({label_text(labels) for labels in label_lists})  # clips of a song share one text
            embedded = dict(zip(texts, encode_text(texts)))
            return torch.stack([embedded[label_text(labels)] for labels in label_lists])
        vectors = torch.zeros(len(label_lists), self.dim)
        for row, labels in enumerate(label_lists):
            vectors[row, [self.label_names.index(label) for label in labels]] = 1.0
        return vectors

    def from_prompts(self, prompts) -> torch.Tensor:
        """[n, dim] condition vectors of n free-text prompts."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.kind == "text":
            return encode_text(prompts)
        return self.from_labels([self.match_labels(prompt) for prompt in prompts])

    def match_labels(self, prompt: str) -> list[str]:
        """The labels a prompt names (a plural 's' allowed); warns about the words it ignores."""
        text = prompt.lower()
        matched = [name for name in self.label_names if re.search(rf"\b{re.escape(name.lower())}s?\b", text)]
        if not matched:
            raise ValueError(f"prompt {prompt!r} names none of this model's labels; it is conditioned on labels "
                             f"and knows only {list(self.label_names)}")
        for name in matched:
            text = re.sub(rf"\b{re.escape(name.lower())}s?\b", " ", text)
        ignored = re.findall(r"[\w'-]+", text)
        if ignored:
            warnings.warn(f"prompt {prompt!r} -> labels {matched}; this model is conditioned on labels, so the "
                          f"other words are ignored: {ignored}", stacklevel=3)
        return matched


def label_text(labels) -> str:
    """The text a clip is trained on: its labels, joined by commas."""
    return ", ".join(labels)


def label_conditioning(label_names) -> Conditioning:
    return Conditioning("labels", tuple(label_names))


def text_conditioning(label_names) -> Conditioning:
    """Text conditioning; where the sentence encoder is not installed, label
    conditioning instead (prompts then match the label vocabulary), with a warning."""
    if not text_encoder_available():
        warnings.warn(f"the sentence encoder is not installed ({INSTALL_HINT}): conditioning on labels instead; "
                      "prompts will be matched word by word to the label vocabulary", stacklevel=2)
        return label_conditioning(label_names)
    return Conditioning("text", tuple(label_names), ENCODER_NAME)


def build_conditioning(run: RunConfig, labels: list[str]) -> Conditioning | None:
    """The condition a model of ``run`` takes: None, or ``labels`` (the data's,
    ``label_names(ds)``) as multi-hot vectors or as text embeddings."""
    if run.conditioning == "none":
        return None
    if not labels:
        raise ValueError(f"conditioning={run.conditioning!r} needs labels, and the data "
                         f"{run.data.source!r} has none: train with conditioning='none'")
    return label_conditioning(labels) if run.conditioning == "labels" else text_conditioning(labels)


def with_condition(ds: datasets.Dataset, conditioning: Conditioning) -> datasets.Dataset:
    """The dataset with a ``cond`` column (each clip's condition vector), which
    ``train`` conditions on."""
    import datasets
    names = data.label_names(ds)  # data.: label_names is a parameter's name in this module
    clip_labels = [[names[i] for i in ids] for ids in ds["labels"]]
    vectors = conditioning.from_labels(clip_labels)
    if "cond" in ds.column_names:
        ds = ds.remove_columns("cond")
    return ds.add_column("cond", vectors.tolist(), feature=datasets.List(datasets.Value("float32")))
