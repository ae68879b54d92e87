"""The Diffusion Transformer (Peebles & Xie 2023) over spectrograms.

x_t [B, C, F, T] --Conv2d patch embed--> tokens [B, N, D] + 2-D sin-cos positions
t --sinusoid--> MLP --+--> c  (the conditioning vector of every block)
cond --MLP (or the learned null)--^
tokens --(adaLN-Zero transformer block) x depth--> adaLN final layer
       --ConvTranspose2d patch de-embed--> [B, C, F, T]

The patch (de-)embedding is convolutional, as in the seed; with kernel =
stride = patch size it equals DiT's linear patchify / unpatchify.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .schedule import PREDICTION_TYPES

if TYPE_CHECKING:
    from .conditioning import Conditioning


@dataclass(frozen=True)
class DiTConfig:
    """Architecture. ``input_size`` is (frequency bins, frames);
    ``cond_dim`` is the length of the conditioning vector (a multi-hot label
    vector, a text embedding...), 0 for an unconditional model.
    ``prediction_type`` says what the network outputs (see schedule.py)."""

    input_size: tuple[int, int] = (256, 256)
    patch_size: int = 16
    in_channels: int = 2
    hidden_size: int = 256
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    cond_dim: int = 0
    prediction_type: str = "sample"

    def __post_init__(self):
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        h, w = self.input_size
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"input_size={self.input_size} does not divide by patch_size={p}: choose a patch size "
                f"that divides both, or change the spectrogram's n_fft / frames")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} does not divide by num_heads={self.num_heads}")
        if self.hidden_size % 4:
            raise ValueError(f"hidden_size={self.hidden_size}: the 2-D position embedding needs a multiple of 4")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type={self.prediction_type!r}: use one of {PREDICTION_TYPES}")
        if min(self.in_channels, self.depth, self.num_heads) < 1 or self.cond_dim < 0:
            raise ValueError(f"invalid DiTConfig: {self}")

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.input_size[0] // self.patch_size, self.input_size[1] // self.patch_size)

    @property
    def num_tokens(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def middle_token(self) -> int:
        """The token at the centre of the patch grid."""
        rows, cols = self.grid_size
        return rows // 2 * cols + cols // 2

    @classmethod
    def preset(cls, name: str, **overrides) -> "DiTConfig":
        """Named sizes; ``overrides`` replace any field (e.g. ``input_size``).

        ``"seed"`` is the seed's model: 4 blocks x 4 heads at width 256 with
        16 x 16 patches of a 2 x 256 x 256 spectrogram, 5,259,522 parameters
        (the seed reports 5,388,802; 2.4 % apart, see ``parameter_counts``).
        """
        presets = {
            "tiny": dict(input_size=(128, 128), patch_size=8, hidden_size=64, depth=2, num_heads=2),
            "small": dict(input_size=(128, 128), patch_size=8, hidden_size=128, depth=4, num_heads=4),
            "seed": dict(),
            "base": dict(patch_size=8, hidden_size=384, depth=12, num_heads=6),
            "large": dict(patch_size=8, hidden_size=768, depth=12, num_heads=12),
        }
        if name not in presets:
            raise ValueError(f"unknown DiT preset {name!r}: use one of {list(presets)}")
        return cls(**{**presets[name], **overrides})

    def replace(self, **changes) -> "DiTConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def sincos_position_embedding(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding of a (rows, cols) token grid -> [rows*cols, dim]:
    half the channels encode the row (frequency), half the column (time)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    parts = []
    for pos in (rows.flatten(), cols.flatten()):
        angles = pos[:, None].double() * omega[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def deembed_patches(tokens: torch.Tensor, deembed: nn.ConvTranspose2d, grid: tuple[int, int]) -> torch.Tensor:
    """``deembed`` (kernel = stride = patch size) applied to a token grid,
    [B, N, D] -> [B, C, F, T], computed as what it is: one linear map per token,
    then the patches laid side by side. Same result as calling the module,
    several times faster on a CPU, where PyTorch's transposed convolution
    takes a slow general path."""
    B = tokens.shape[0]
    C, (p, _) = deembed.out_channels, deembed.kernel_size
    patches = (tokens @ deembed.weight.flatten(1)).view(B, *grid, C, p, p)
    image = patches.permute(0, 3, 1, 4, 2, 5).reshape(B, C, grid[0] * p, grid[1] * p)
    return image + deembed.bias.view(1, C, 1, 1)


class TimestepEmbedder(nn.Module):
    """t -> sinusoidal features -> dense network (the seed's timestep embedding)."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_features(t, self.frequency_dim))


class ConditionEmbedder(nn.Module):
    """A conditioning vector (labels, text embedding) -> D, or a learned null
    embedding for rows with no condition (classifier-free guidance)."""

    def __init__(self, cond_dim: int, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cond_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.null = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, cond: torch.Tensor | None, drop: torch.Tensor | None, batch: int) -> torch.Tensor:
        null = self.null.expand(batch, -1)
        if cond is None:
            return null
        embedded = self.mlp(cond)
        if drop is None:
            return embedded
        return torch.where(drop[:, None], null.to(embedded.dtype), embedded)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor):
        B, N, D = x.shape
        return self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(2))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention matrix softmax(q k^T / sqrt(d)), [B, heads, N, N] (for plots)."""
        q, k, _ = self._heads(x)
        return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: c sets each sub-layer's shift, scale
    and gate; the gates start at zero, so a fresh block is the identity."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_hidden, hidden_size))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))

    def attention_weights(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a = self.adaLN_modulation(c).chunk(6, dim=-1)[:2]
        return self.attn.weights(modulate(self.norm1(x), shift_a, scale_a))


class FinalLayer(nn.Module):
    """adaLN, then the convolutional patch de-embedding back to [B, C, F, T]."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.deembed = nn.ConvTranspose2d(hidden_size, out_channels, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return deembed_patches(modulate(self.norm(x), shift, scale), self.deembed, grid)


class DiT(nn.Module):
    """``conditioning`` says what a condition vector means (labels or text,
    see conditioning.py) and sets ``cond_dim``; checkpoints keep it beside the
    model's weights."""

    def __init__(self, config: DiTConfig = DiTConfig(), conditioning: Conditioning | None = None):
        super().__init__()
        if conditioning is not None:
            if config.cond_dim not in (0, conditioning.dim):
                raise ValueError(f"conditioning on {conditioning.kind} gives vectors of {conditioning.dim} numbers, "
                                 f"not {config.cond_dim}: build the DiT with cond_dim={conditioning.dim} (or 0, "
                                 "which takes it from the conditioning)")
            config = replace(config, cond_dim=conditioning.dim)
        self.config = config
        self.conditioning = conditioning
        D, p = config.hidden_size, config.patch_size
        self.patch_embed = nn.Conv2d(config.in_channels, D, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", sincos_position_embedding(config.grid_size, D)[None], persistent=False)
        self.t_embedder = TimestepEmbedder(D)
        self.cond_embedder = ConditionEmbedder(config.cond_dim, D) if config.cond_dim else None
        self.blocks = nn.ModuleList(DiTBlock(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.final_layer = FinalLayer(D, p, config.in_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT's initialisation: Xavier for linear maps, N(0, 0.02) for the
        embedding MLPs, zeros for every adaLN modulation and the output."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.out_channels, -1))
        nn.init.zeros_(self.patch_embed.bias)
        embedders = [self.t_embedder.mlp] + ([self.cond_embedder.mlp] if self.cond_embedder else [])
        for mlp in embedders:
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.deembed):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _check_input(self, x: torch.Tensor):
        expected = (self.config.in_channels, *self.config.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"DiT expects x_t of shape [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, F, T] -> the patches' values [B, N, C * p * p]: tokens in
        the model's order (rows of frequency, then time), each patch's values
        in the order ``patch_embed``'s weight reads them (channel, row,
        column), so that the patch embedding is ``patchify(x) @ W.flatten(1).T + b``."""
        self._check_input(x)
        B, C = x.shape[:2]
        (rows, cols), p = self.config.grid_size, self.config.patch_size
        return x.reshape(B, C, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(B, rows * cols, C * p * p)

    def embed(self, x: torch.Tensor, t, cond=None, drop_cond=None):
        """Tokens with positions, and the conditioning vector c."""
        self._check_input(x)
        B = x.shape[0]
        if isinstance(t, (int, float)):  # filled in on the device: copying a number there waits for the GPU
            t = torch.full((B,), t, device=x.device)
        t = torch.as_tensor(t, device=x.device).expand(B)
        # contiguous tokens keep the residual stream contiguous (else each LayerNorm copies it)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2).contiguous() + self.pos_embed
        c = self.t_embedder(t)
        if self.cond_embedder is not None:
            c = c + self.cond_embedder(cond, drop_cond, B)
        elif cond is not None:
            raise ValueError("this DiT is unconditional (cond_dim=0): pass cond=None, or build it with cond_dim > 0")
        return tokens, c

    def forward(self, x: torch.Tensor, t, cond: torch.Tensor | None = None,
                drop_cond: torch.Tensor | None = None) -> torch.Tensor:
        """x_t [B, C, F, T], t [B] or scalar, cond [B, cond_dim] or None,
        drop_cond [B] bool (rows that use the null condition) -> [B, C, F, T]."""
        tokens, c = self.embed(x, t, cond, drop_cond)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.final_layer(tokens, c, self.config.grid_size)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, t, cond=None) -> list[torch.Tensor]:
        """Each block's attention matrix, [B, heads, N, N], for one forward pass."""
        tokens, c = self.embed(x, t, cond)
        maps = []
        for block in self.blocks:
            maps.append(block.attention_weights(tokens, c))
            tokens = block(tokens, c)
        return maps

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part, in forward order."""
        parts = {"patch embed (Conv2d)": self.patch_embed, "timestep MLP": self.t_embedder}
        if self.cond_embedder is not None:
            parts["condition MLP + null"] = self.cond_embedder
        for i, block in enumerate(self.blocks):
            parts[f"block {i}"] = block
        parts["final adaLN + de-embed (ConvTranspose2d)"] = self.final_layer
        return {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
