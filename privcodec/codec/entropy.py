"""Per-group entropy model: cell-local hyperprior + group-masked context + ChARM.

    y_g ──h_a (1x1, 2x2/2, 2x2/2)──▶ z_g ──Q──▶ EntropyBottleneck ──▶ z bits of group g
                                          │
    ẑ_g ──h_s (2x2/2ᵀ, 2x2/2ᵀ)──▶ F_g ──(Σ_g m_g F_g)──▶ masked 3x3 convs ──▶ (μ_h, σ_h)
    (μ_h, σ_h, ŷ_<i) ──1x1 ChARM slice i──▶ (μ_i, σ_i) ──▶ GaussianConditional ──▶ y bits

Why not one hyperprior for the whole image (GIT-SSIC, Feng et al. ICCV 2023):
its z mixes every group and is sent to everyone, so it leaks protected content.
Here each group has its own z, computed from its own latent only, coded only on
the 4x4-latent cells (64x64 px) it touches, and decoded by kernel==stride
layers so a cell's z only feeds that cell.  The channel-conditional part
(Minnen & Singh, ICIP 2020) is 1x1, hence per position.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import nn

from .layers import GroupMaskedConv2d

CELL = 4  # latent positions per hyperprior cell side


def scale_table(min_=0.11, max_=256.0, levels=64):
    import math
    return torch.exp(torch.linspace(math.log(min_), math.log(max_), levels))


def run_1x1(seq: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply 1x1 convs (and activations) as matrix products when coding in float64:
    torch's float64 conv2d has no fast kernel and made decoding 2x slower."""
    if x.dtype != torch.float64:
        return seq(x)
    t = x.permute(0, 2, 3, 1)
    for layer in (seq if isinstance(seq, nn.Sequential) else [seq]):
        t = F.linear(t, layer.weight[:, :, 0, 0], layer.bias) if isinstance(layer, nn.Conv2d) else layer(t)
    return t.permute(0, 3, 1, 2)


def _mlp1x1(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden // 2, 1), nn.GELU(), nn.Conv2d(hidden // 2, cout, 1)
    )


class HyperContext(nn.Module):
    """Group-masked 3x3 convs over the per-group hyper features."""

    def __init__(self, ch: int, out: int):
        super().__init__()
        self.conv1 = GroupMaskedConv2d(ch, ch, 3)
        self.conv2 = GroupMaskedConv2d(ch, ch, 3)
        self.out = nn.Conv2d(ch, out, 1)

    def forward(self, f: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        f = f + F.gelu(self.conv1(f, gid))
        f = f + F.gelu(self.conv2(f, gid))
        return run_1x1(self.out, f)


class GroupEntropyModel(nn.Module):
    def __init__(self, latent: int = 192, hyper: int = 128, z_ch: int = 64, slices: int = 6):
        super().__init__()
        assert latent % slices == 0
        self.latent, self.slices, self.slice_ch = latent, slices, latent // slices
        self.h_a = nn.Sequential(
            nn.Conv2d(latent, hyper, 1), nn.GELU(),
            nn.Conv2d(hyper, hyper, 2, stride=2), nn.GELU(),
            nn.Conv2d(hyper, z_ch, 2, stride=2),
        )
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(z_ch, hyper, 2, stride=2), nn.GELU(),
            nn.ConvTranspose2d(hyper, hyper, 2, stride=2), nn.GELU(),
        )
        self.context = HyperContext(hyper, 2 * latent)
        s = self.slice_ch
        self.cc_mean = nn.ModuleList(_mlp1x1(latent + i * s, 128, s) for i in range(slices))
        self.cc_scale = nn.ModuleList(_mlp1x1(latent + i * s, 128, s) for i in range(slices))
        self.lrp = nn.ModuleList(_mlp1x1(latent + (i + 1) * s, 128, s) for i in range(slices))
        self.entropy_bottleneck = EntropyBottleneck(z_ch)
        self.gaussian_conditional = GaussianConditional(scale_table().tolist())

    # -- pieces shared by training and coding ---------------------------------
    def slice_params(self, i: int, mu_h, sigma_h, prev):
        mean_in = torch.cat([mu_h] + prev, 1)
        scale_in = torch.cat([sigma_h] + prev, 1)
        return run_1x1(self.cc_mean[i], mean_in), run_1x1(self.cc_scale[i], scale_in)

    def refine(self, i: int, mu_h, prev, y_hat_i):
        return y_hat_i + 0.5 * torch.tanh(run_1x1(self.lrp[i], torch.cat([mu_h] + prev + [y_hat_i], 1)))

    def hyper_features(self, z_hat_per_group, masks):
        """Σ_g m_g · h_s(ẑ_g): each latent position takes its own group's features."""
        feats = self.h_s(z_hat_per_group)  # (B*K, C, h, w)
        B, K = masks.shape[:2]
        feats = feats.view(B, K, *feats.shape[1:])
        return (feats * masks[:, :, None].to(feats.dtype)).sum(1)

    # -- training ---------------------------------------------------------------
    def forward(self, y: torch.Tensor, gid: torch.Tensor, K: int):
        """y: (B,M,h,w), h and w multiples of CELL; gid: (B,h,w) in 0..K-1.

        Returns ŷ for the synthesis, y likelihoods and per-image z bits (counting
        every group's own z on the cells it touches)."""
        B, M, h, w = y.shape
        masks = F.one_hot(gid.long(), K).permute(0, 3, 1, 2).to(y.dtype)  # B,K,h,w
        y_groups = (y[:, None] * masks[:, :, None]).reshape(B * K, M, h, w)
        z = self.h_a(y_groups)
        support = F.max_pool2d(masks.reshape(B * K, 1, h, w), CELL)
        z_hat, z_lik = self.entropy_bottleneck(z)
        z_bits = (-torch.log2(z_lik) * support).reshape(B, -1).sum(1)
        z_hat = z_hat * support
        feats = self.hyper_features(z_hat, masks)
        mu_h, sigma_h = self.context(feats, gid).chunk(2, 1)

        y_hat_slices, liks = [], []
        for i, y_i in enumerate(y.chunk(self.slices, 1)):
            mu, sigma = self.slice_params(i, mu_h, sigma_h, y_hat_slices)
            _, lik = self.gaussian_conditional(y_i, sigma, mu)
            liks.append(lik)
            y_hat_i = (torch.round(y_i - mu) - (y_i - mu)).detach() + y_i  # straight-through
            y_hat_slices.append(self.refine(i, mu_h, y_hat_slices, y_hat_i))
        return torch.cat(y_hat_slices, 1), torch.cat(liks, 1), z_bits
