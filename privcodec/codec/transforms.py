"""Analysis and synthesis transforms of the group-independent codec.

    x (B,3,H,W) ──PatchMerge 2x2──▶ GI stage ─▶ … 4 times … ─▶ Linear ─▶ y (B,M,H/16,W/16)
    y ──Linear─▶ GI stage ─▶ PatchSplit 2x ─▶ … 4 times … ─▶ x̂

After Feng et al., *Semantically Structured Image Compression via Irregular
Group-Based Decoupling*, ICCV 2023: patch merging never crosses a 16-px block
(kernel == stride) and all spatial mixing is group-masked window attention, so
y at a block depends only on pixels of that block's group.  Sized for CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import GIStage, PatchMerge, PatchSplit, upsample_groups


class Analysis(nn.Module):
    def __init__(self, channels, depths, heads, window: int, latent: int):
        super().__init__()
        ins = (3,) + tuple(channels[:-1])
        self.merges = nn.ModuleList(PatchMerge(ci, co, norm=i > 0) for i, (ci, co) in enumerate(zip(ins, channels)))
        self.stages = nn.ModuleList(
            GIStage(c, d, h, window, first_shifted=i % 2 == 1) for i, (c, d, h) in enumerate(zip(channels, depths, heads))
        )
        self.norm = nn.LayerNorm(channels[-1])
        self.out = nn.Linear(channels[-1], latent)

    def forward(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        """x: (B,3,H,W) in [0,1], H and W multiples of 16; gid: (B,H/16,W/16) block groups."""
        t = x.permute(0, 2, 3, 1)
        n = len(self.stages)
        for i, (merge, stage) in enumerate(zip(self.merges, self.stages)):
            t = merge(t)
            t = stage(t, upsample_groups(gid, 2 ** (n - 1 - i)))
        return self.out(self.norm(t)).permute(0, 3, 1, 2)


class Synthesis(nn.Module):
    def __init__(self, channels, depths, heads, window: int, latent: int):
        super().__init__()
        channels, depths, heads = tuple(reversed(channels)), tuple(reversed(depths)), tuple(reversed(heads))
        self.inp = nn.Linear(latent, channels[0])
        self.stages = nn.ModuleList(
            GIStage(c, d, h, window, first_shifted=i % 2 == 1) for i, (c, d, h) in enumerate(zip(channels, depths, heads))
        )
        outs = tuple(channels[1:]) + (3,)
        self.splits = nn.ModuleList(PatchSplit(ci, co, norm=True) for ci, co in zip(channels, outs))

    def forward(self, y: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        t = self.inp(y.permute(0, 2, 3, 1))
        for i, (stage, split) in enumerate(zip(self.stages, self.splits)):
            t = stage(t, upsample_groups(gid, 2 ** i))
            t = split(t)
        return t.permute(0, 3, 1, 2)
