"""Analysis and synthesis transforms of the group-independent codec.

    x ─▶ per group: [5x5/2 conv ─ GDN] x3 ─ 5x5/2 conv  (masked to the group) ─▶ Σ_g ─▶
         GI window-attention stage (16x16-px tokens, masked to the group) ─▶ y (B,M,H/16,W/16)
    ŷ ─▶ GI stage ─▶ per group: [5x5/2 deconv ─ IGDN (─ residual block*)] x3 ─ 5x5/2 deconv (masked) ─▶ Σ_g ─▶ x̂
         (*network gicodec-4, at 1/8 and 1/4 scale)

After Feng et al., *Semantically Structured Image Compression via Irregular
Group-Based Decoupling* (ICCV 2023): groups live on the 16-px block grid and
every spatial operator is restricted to the group.  Where the paper mixes only
through masked Swin attention, the high-resolution scales here are convolutions
run per group (GroupConvStack), which learn far faster on a CPU budget; the
masked attention provides long-range mixing at the latent scale.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import GroupConvStack, GIStage

BLOCK = 16


def expand_groups(gid: torch.Tensor):
    """(B,hb,wb) group ids -> (row -> image index, (R,hb,wb) block mask per (image, group) row).

    Returns masks=None when every image is a single group (nothing to mask)."""
    B = gid.shape[0]
    if bool((gid == gid[:, :1, :1]).all()):
        return torch.arange(B, device=gid.device), None
    rows, masks = [], []
    for b in range(B):
        for g in torch.unique(gid[b]):
            rows.append(b)
            masks.append(gid[b] == g)
    return torch.tensor(rows, device=gid.device), torch.stack(masks).float()


def group_boxes(gid: torch.Tensor):
    """Per group id of a (hb,wb) map: its block mask and bounding box (r0, r1, c0, c1) in blocks."""
    out = {}
    for g in torch.unique(gid).tolist():
        if g < 0:
            continue
        m = gid == g
        rs, cs = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
        out[g] = (m, (int(rs[0]), int(rs[-1]) + 1, int(cs[0]), int(cs[-1]) + 1))
    return out


def _box_mask(in_box: torch.Tensor) -> torch.Tensor | None:
    """A group's block mask over its bounding box, (1,h,w) float; None when the group fills its
    box (a rectangle, or the whole image), where masking would multiply by ones."""
    return None if bool(in_box.all()) else in_box.float()[None]


class Analysis(nn.Module):
    def __init__(self, channels, latent: int, depth: int, heads: int, window: int):
        super().__init__()
        self.convs = GroupConvStack((3,) + tuple(channels) + (latent,), transposed=False)
        self.stage = GIStage(latent, depth, heads, window)
        self.latent = latent

    def forward(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        """Training path. x: (B,3,H,W) in [0,1], H, W multiples of 16; gid: (B,H/16,W/16)."""
        rows, masks = expand_groups(gid)
        if masks is None:
            y = self.convs(x, None)
        else:
            h = x[rows] * masks.repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)[:, None]
            y = torch.zeros(x.shape[0], self.latent, *gid.shape[1:], dtype=h.dtype, device=h.device)
            y = y.index_add(0, rows, self.convs(h, masks).to(y.dtype))
        return self.mix(y, gid)

    def mix(self, y: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        # No LayerNorm on the way out: normalising each latent vector would throw away its
        # magnitude (contrast), which the first version did and paid for in washed-out colours.
        return self.stage(y.permute(0, 2, 3, 1).contiguous(), gid).permute(0, 3, 1, 2)

    def per_group(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        """Coding path: each group on the crop of its bounding box, so the cost is ~one pass over
        the image whatever the number of groups.  x: (1,3,H,W); gid: (H/16,W/16)."""
        y = torch.zeros(1, self.latent, *gid.shape, dtype=x.dtype)
        for g, (m, (r0, r1, c0, c1)) in group_boxes(gid).items():
            mb = _box_mask(m[r0:r1, c0:c1])
            crop = x[:, :, r0 * BLOCK:r1 * BLOCK, c0 * BLOCK:c1 * BLOCK]
            h = crop if mb is None else crop * mb.repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)[:, None]
            y[:, :, r0:r1, c0:c1] += self.convs(h, mb)
        return self.mix(y, gid[None])


class Synthesis(nn.Module):
    def __init__(self, channels, latent: int, depth: int, heads: int, window: int, refine: bool = False):
        super().__init__()
        self.stage = GIStage(latent, depth, heads, window, first_shifted=True)
        self.convs = GroupConvStack((latent,) + tuple(reversed(channels)) + (3,), transposed=True, refine=refine)

    def forward(self, y: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        t = self.stage(y.permute(0, 2, 3, 1).contiguous(), gid).permute(0, 3, 1, 2)
        rows, masks = expand_groups(gid)
        if masks is None:
            return self.convs(t, None, block=1)
        h = self.convs(t[rows] * masks[:, None].to(t.dtype), masks, block=1)
        out = torch.zeros(y.shape[0], 3, gid.shape[1] * BLOCK, gid.shape[2] * BLOCK, dtype=h.dtype, device=h.device)
        return out.index_add(0, rows, h)

    def per_group(self, y: torch.Tensor, gid: torch.Tensor, groups) -> torch.Tensor:
        """Coding path: decode ``groups`` (ids present in gid), each on its bounding-box crop."""
        t = self.stage(y.permute(0, 2, 3, 1).contiguous(), gid[None]).permute(0, 3, 1, 2).contiguous()
        out = torch.zeros(1, 3, gid.shape[0] * BLOCK, gid.shape[1] * BLOCK, dtype=t.dtype)
        for g, (m, (r0, r1, c0, c1)) in group_boxes(gid).items():
            if g not in groups:
                continue
            mb = _box_mask(m[r0:r1, c0:c1])
            crop = t[:, :, r0:r1, c0:c1]
            h = self.convs(crop if mb is None else crop * mb[:, None], mb, block=1)
            out[:, :, r0 * BLOCK:r1 * BLOCK, c0 * BLOCK:c1 * BLOCK] += h
        return out
