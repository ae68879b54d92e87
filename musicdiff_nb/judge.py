"""The judge: a small CNN that says which labels a clip carries, trained on
real clips' spectrograms. It measures whether generated clips carry the
labels they were asked for.

It sees the clip's magnitude in dB minus the clip's mean level (so loudness
alone decides nothing), convolves it, averages over time but keeps the
frequency axis (timbre lives there), and gives one logit per label: several
labels can be on at once (sigmoid + binary cross-entropy). A label is *found*
when its probability exceeds 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spectrogram import SpectrogramConfig, magnitude_db


class LabelJudge(nn.Module):
    def __init__(self, label_names, spectrogram: SpectrogramConfig, hidden: int = 128):
        super().__init__()
        self.label_names = list(label_names)
        self.spectrogram = spectrogram
        self.net = nn.Sequential(nn.Linear(2 * spectrogram.freq_bins, hidden), nn.GELU(), nn.Dropout(0.2),
                                 nn.Linear(hidden, len(self.label_names)))

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, C, F, T] model tensors -> [B, 2F]: each frequency's mean and
        spread over time of the level-free magnitude in dB, / 20."""
        db = magnitude_db(spec.float(), self.spectrogram)
        db = db - db.mean(dim=(-2, -1), keepdim=True)
        return torch.cat([db.mean(dim=-1), db.std(dim=-1)], dim=-1) / 20

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_labels]."""
        return self.net(self.features(spec))

    @torch.no_grad()
    def embedding(self, spec: torch.Tensor) -> torch.Tensor:
        """The penultimate layer [B, hidden]: what the judge knows of a clip
        before it names labels (the embedding of quality.py's Fréchet distance)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = self.net[:-1](self.features(spec.to(device))).cpu()
        self.train(was_training)
        return out

    @torch.no_grad()
    def probabilities(self, spec: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        probs = torch.cat([self(chunk.to(device)).sigmoid().cpu() for chunk in spec.split(batch_size)])
        self.train(was_training)
        return probs

    def found(self, spec: torch.Tensor) -> torch.Tensor:
        """[B, num_labels] bool: the labels the judge finds in each clip."""
        return self.probabilities(spec) > 0.5


def train_judge(specs: torch.Tensor, targets: torch.Tensor, label_names, spectrogram: SpectrogramConfig,
                steps: int = 300, batch_size: int = 32, lr: float = 3e-3, seed: int = 0) -> LabelJudge:
    """Fit a judge to real clips ``specs`` [N, C, F, T] with multi-hot ``targets`` [N, L].
    Each batch is shifted in time by a random amount, as generated clips start anywhere."""
    if specs.shape[0] != targets.shape[0] or targets.shape[1] != len(label_names):
        raise ValueError(f"{specs.shape[0]} clips need targets of shape [{specs.shape[0]}, {len(label_names)}], "
                         f"got {tuple(targets.shape)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    judge = LabelJudge(label_names, spectrogram)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-2)
    judge.train()
    for _ in range(steps):
        idx = torch.randint(0, len(specs), (min(batch_size, len(specs)),), generator=generator)
        shift = int(torch.randint(0, specs.shape[-1], (), generator=generator))
        loss = F.binary_cross_entropy_with_logits(judge(specs[idx].roll(shift, dims=-1)), targets[idx].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return judge.eval()


def split_by_song(songs, every: int = 4) -> torch.Tensor:
    """A test set for the judge: a bool mask over clips, True for every clip
    of every ``every``-th song (in order of first appearance). Clips of one
    song sound alike, so a judge tested on other clips of its training songs
    would score itself too well; here no song is on both sides."""
    songs = list(songs)
    order = {song: k for k, song in enumerate(dict.fromkeys(songs))}
    if len(order) < every:
        raise ValueError(f"{len(order)} song(s): holding out every {every}th song needs at least {every} "
                         "(load more songs or lower every=)")
    return torch.tensor([order[song] % every == every - 1 for song in songs])


def judge_scores(judge: LabelJudge, specs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """On clips with known labels: ``recall`` (share of their labels the judge
    finds) and ``false_alarms`` (share of the other labels it finds)."""
    found, targets = judge.found(specs), targets.bool()
    return {"recall": float(found[targets].float().mean()), "false_alarms": float(found[~targets].float().mean())}
