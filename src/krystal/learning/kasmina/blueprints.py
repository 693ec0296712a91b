"""Blueprints: the modules a dormant seed slot can germinate into.

Each maps the host's activations (batch, width) to a correction of the same shape and starts as the
zero function (its last layer zero-initialised), so germination alone never changes the host. `mlp`,
`adapter` and `head` also take token activations (batch, tokens, width), as in the seeded policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class MLPBlock(nn.Module):
    """width -> hidden (ReLU) -> width: extra depth and width where the host is short of both."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(h)))  # type: ignore[no-any-return]


class ResidualAdapter(nn.Module):
    """A low-rank bottleneck (width -> rank -> width, tanh): cheap, a gentle correction."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, rank, bias=False)
        self.up = nn.Linear(rank, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(torch.tanh(self.down(h)))  # type: ignore[no-any-return]


class AttentionHead(nn.Module):
    """One self-attention head over the host's features as tokens (each feature a value times a
    learned embedding plus its position): lets features gate one another."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.randn(width, dim) / math.sqrt(dim))
        self.position = nn.Parameter(torch.randn(width, dim) * 0.1)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dim = dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tokens = h[:, :, None] * self.embed + self.position  # (batch, width, dim)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.dim), dim=-1)
        return self.out(weights @ v).squeeze(-1)  # type: ignore[no-any-return]


class TokenHead(nn.Module):
    """One extra (pre-norm) self-attention head over the host's tokens, the window's frames; a 2-D
    input is one token. Its output projection starts at zero."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * dim, bias=False)
        self.out = nn.Linear(dim, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tokens = h if h.dim() == 3 else h[:, None]
        q, k, v = self.qkv(self.ln(tokens)).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        out = self.out(weights @ v)
        return out if h.dim() == 3 else out[:, 0]  # type: ignore[no-any-return]


# name -> (width -> module); the sizes are the blueprint's, not the host's.
BLUEPRINTS: dict[str, Callable[[int], nn.Module]] = {
    "mlp": lambda width: MLPBlock(width, 4 * width),
    "adapter": lambda width: ResidualAdapter(width, max(2, width // 4)),
    "attention": lambda width: AttentionHead(width, 8),
    "head": lambda width: TokenHead(width, max(4, width // 2)),
}


def build(name: str, width: int) -> nn.Module:
    """A fresh module of blueprint `name` for a slot of `width` features."""
    if name not in BLUEPRINTS:
        raise ValueError(f"unknown blueprint {name!r}: one of {', '.join(BLUEPRINTS)}")
    return BLUEPRINTS[name](width)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
