"""Encoder-side latent adaptation (``effort`` 1 and 2): a few gradient steps on each group's latent.

    y₀ = g_a(x) ─▶ per group, on its own box (every other block masked as another group):
        Adam on y for R + λ·D through the entropy model's training path (uniform noise for
        the rate, straight-through rounding for the synthesis) and the group-masked synthesis
    ─▶ y* ─▶ GroupEntropyModel.compress ─▶ per group, the stream (of y₀ or y*) with the lower
       true R + λ·D, measured by decoding it

The analysis transform is a compromise over every photo it was trained on; optimising the
latent for this photo closes part of that "amortisation gap" (Campos et al., *Content Adaptive
Optimization for Neural Image Compression*, CVPRW 2019; Yang et al., *Improving Inference for
Neural Image Compression*, NeurIPS 2020).  Only the encoder works harder: the streams, the
format and the decoder are unchanged, so any privcodec that reads the network's files reads
these.  A group's search sees its own pixels and block mask only (its noise comes from a
generator seeded by nothing else), so its stream still depends on nothing else.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .entropy import CELL
from .model import BLOCK

OTHER = 1                             # the local id of every block not in the group being adapted
# effort -> (Adam steps, peak learning rate); measured on training photos (1 group, q1/3/5/7,
# BD-rate against effort 0): 10 steps at 0.01 -3.0 %, 40 at 0.005 -4.6 % (40 at 0.01 was worse
# than 0.005, 10 at 0.02 worse than 0.01).  Each step costs about one synthesis forward + backward.
EFFORT_STEPS = {1: (10, 0.01), 2: (40, 0.005)}
NOISE_SEED = 0


def adapt_group(model, x: torch.Tensor, gid: torch.Tensor, y: torch.Tensor, group: int, quality: float,
                height: int, width: int, steps: int, lr: float) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The group's latent after ``steps`` Adam steps, on the group's box: the region the decoder
    runs on when it decodes the group alone (same attention windows and hyperprior cells).

    x: (1,3,16·hb,16·wb) the padded image; gid: (hb,wb); y: (1,M,hb,wb) gain-scaled latent of the
    whole tile; height/width: the real pixels within x.  Returns (1,M,r1-r0,c1-c0) float32 latent
    (zeros off the group) and its box."""
    r0, r1, c0, c1 = model.decoded_region({group: b""}, gid)
    mine = gid[r0:r1, c0:c1] == group
    local = torch.where(mine, 0, OTHER)
    # the entropy model works on whole hyperprior cells: pad with blocks of the other group
    ph, pw = (-local.shape[0]) % CELL, (-local.shape[1]) % CELL
    local_cells = F.pad(local, (0, pw, 0, ph), value=OTHER)[None]
    latent_mask = F.pad(mine, (0, pw, 0, ph))[None, None].float()

    target = x[:, :, r0 * BLOCK:r1 * BLOCK, c0 * BLOCK:c1 * BLOCK].float()
    pixels = mine.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
    pixels[max(0, height - r0 * BLOCK):] = False          # replicate padding below / right of the photo
    pixels[:, max(0, width - c0 * BLOCK):] = False
    pixels = pixels[None, None].float()
    n_pixels = float(pixels.sum())

    quality_t = torch.tensor([float(quality)])
    _, inv_gain = (t.detach() for t in model.gains(quality_t))
    lmbda = float(model.lmbda(quality_t))
    y_var = F.pad(y[:, :, r0:r1, c0:c1].float(), (0, pw, 0, ph)) * latent_mask
    y_var.requires_grad_(True)
    optimiser = torch.optim.Adam([y_var], lr=lr)
    generator = torch.Generator().manual_seed(NOISE_SEED)
    with torch.enable_grad():
        for step in range(steps):
            for pg in optimiser.param_groups:
                pg["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            y_hat, y_lik, z_bits = model.entropy(y_var * latent_mask, local_cells, 2, generator)
            # the coding path's synthesis, differentiable: the group's convolutions only
            x_hat = model.g_s.per_group(y_hat[:, :, :local.shape[0], :local.shape[1]] * inv_gain, local, {0})
            sse = (((x_hat - target) ** 2) * pixels).sum()
            bits = (-torch.log2(y_lik) * latent_mask).sum() + z_bits.sum()
            loss = (lmbda * 255 ** 2 * sse / 3 + bits) / n_pixels
            (y_var.grad,) = torch.autograd.grad(loss, [y_var])   # no gradients for the weights
            optimiser.step()
    return (y_var.detach() * latent_mask)[:, :, :local.shape[0], :local.shape[1]], (r0, r1, c0, c1)


def rd_costs(model, streams: dict[int, bytes], x: torch.Tensor, gid: torch.Tensor, quality: float,
             height: int, width: int, one_stream: bool = False) -> dict[int, float]:
    """Each group's true R + λ·D (bits and squared error of its uint8 pixels) per pixel."""
    decoded, _ = model.decompress(streams, gid, height, width, quality, one_stream)
    err = ((decoded * 255).round() - (x[0, :, :height, :width] * 255).round()) ** 2
    lmbda = float(model.lmbda(torch.tensor([float(quality)])))
    costs = {}
    for group, stream in streams.items():
        pixels = (gid == group).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:height, :width]
        n = float(pixels.sum())
        sse = float(err[:, pixels].sum()) / 3
        costs[group] = (8 * len(stream) + lmbda * sse) / n
    return costs


def improve(model, x: torch.Tensor, gid: torch.Tensor, y: torch.Tensor, quality: float, height: int, width: int,
            effort: int, streams: dict[int, bytes], one_stream: bool = False) -> dict[int, bytes]:
    """``streams`` (coded from ``y``) with each group's stream replaced by that of its adapted
    latent where that codes the group with a lower true R + λ·D."""
    steps, lr = EFFORT_STEPS[effort]
    adapted = y.clone()
    for group in streams:
        y_group, (r0, r1, c0, c1) = adapt_group(model, x, gid, y, group, quality, height, width, steps, lr)
        mine = gid[r0:r1, c0:c1] == group
        adapted[:, :, r0:r1, c0:c1] = torch.where(mine, y_group.to(y.dtype), adapted[:, :, r0:r1, c0:c1])
    try:
        candidate = model._code_latent(adapted, gid, one_stream)
    except ValueError:      # a latent the coder cannot take (out of its range): keep the analysis' one
        return streams
    before = rd_costs(model, streams, x, gid, quality, height, width, one_stream)
    after = rd_costs(model, candidate, x, gid, quality, height, width, one_stream)
    return {g: candidate[g] if after[g] < before[g] else streams[g] for g in streams}
