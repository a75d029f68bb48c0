"""Group-independent building blocks.

Every layer here mixes information only between positions of the *same*
group, exactly (not approximately): cross-group attention logits are -inf, so
their softmax weights are exactly 0.0, and masked convolutions multiply
other-group inputs by exact zeros.  Everything else is per position.

    tokens (B,H,W,C) + group ids (B,H,W) -> GroupWindowAttention -> tokens
    feature map (B,C,H,W) + group ids     -> GroupMaskedConv2d    -> feature map
    one group's feature map (zeros elsewhere) -> GroupConvStack   -> next scale
                                  (optionally refined at each scale by a GroupResidualBlock)

Group id -1 is reserved for padding, so padding never aliases a real group
(one of the flaws of the reference GIT-SSIC code, Feng et al., ICCV 2023).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD_GROUP = -1


class GroupWindowAttention(nn.Module):
    """Window self-attention restricted to tokens of the same group.

    Shifted windows are made by padding ``shift`` tokens at the top/left with
    the padding id instead of the cyclic roll of Swin, so no region-id mask is
    needed and no two groups can ever share an id.
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.dim, self.heads, self.window = dim, heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rel_bias, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def forward(self, x: torch.Tensor, gid: torch.Tensor, shift: int = 0) -> torch.Tensor:
        B, H, W, C = x.shape
        w = self.window
        pad_b = (-(H + shift)) % w
        pad_r = (-(W + shift)) % w
        if shift or pad_b or pad_r:
            x = F.pad(x, (0, 0, shift, pad_r, shift, pad_b))
            gid = F.pad(gid, (shift, pad_r, shift, pad_b), value=PAD_GROUP)
        Hp, Wp = x.shape[1], x.shape[2]
        nh, nw = Hp // w, Wp // w
        xw = x.reshape(B, nh, w, nw, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)
        gw = gid.reshape(B, nh, w, nw, w).permute(0, 1, 3, 2, 4).reshape(-1, w * w)

        qkv = self.qkv(xw).reshape(xw.shape[0], w * w, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        same_group = gw[:, :, None] == gw[:, None, :]
        bias = self.rel_bias[self.rel_index].permute(2, 0, 1).to(q.dtype)  # heads,N,N
        neg_inf = torch.tensor(float("-inf"), dtype=q.dtype, device=q.device)
        attn_mask = torch.where(same_group[:, None], bias[None], neg_inf)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(-1, w * w, C)
        out = self.proj(out)
        out = out.reshape(B, nh, nw, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        return out[:, shift:shift + H, shift:shift + W]


class GIBlock(nn.Module):
    """Group-Independent Swin block: LN -> group window attention -> LN -> MLP."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GroupWindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), gid, self.shift)
        return x + self.mlp(self.norm2(x))


class GIStage(nn.Module):
    """``depth`` GI blocks alternating plain and shifted windows."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, first_shifted: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(
            GIBlock(dim, heads, window, shift=(window // 2) if (i + first_shifted) % 2 else 0)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, gid)
        return x


class GroupMaskedConv2d(nn.Module):
    """k x k convolution that only reads neighbours of the centre's group.

    Implemented with unfold so the mask is exact: other-group inputs are
    multiplied by 0 before the weighted sum.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(cout, cin * kernel * kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        k, p = self.kernel, self.kernel // 2
        cols = F.unfold(x, k, padding=p).view(B, C, k * k, H * W)
        g = F.pad(gid.to(x.dtype)[:, None], (p, p, p, p), value=float(PAD_GROUP))
        gcols = F.unfold(g, k).view(B, 1, k * k, H * W)
        same = (gcols == gid.to(x.dtype).view(B, 1, 1, H * W)).to(x.dtype)
        cols = (cols * same).view(B, C * k * k, H * W)
        out = torch.matmul(self.weight.to(x.dtype), cols) + self.bias.to(x.dtype)[:, None]
        return out.view(B, -1, H, W)


class GroupResidualBlock(nn.Module):
    """h + 1x1(GELU(3x3(GELU(1x1(h))))) at half width, on one group's features (zeros elsewhere).

    The 3x3 conv's input is re-masked to the group (the 1x1 layers' biases would otherwise put
    values outside it), and so is the block's output: the block reads and writes only the group.
    Its last layer starts at zero, so a network grown with these blocks decodes exactly as its
    parent until training moves them (a ResNet bottleneck, He et al., CVPR 2016)."""

    def __init__(self, ch: int):
        super().__init__()
        mid = ch // 2
        self.reduce = nn.Conv2d(ch, mid, 1)
        self.conv = nn.Conv2d(mid, mid, 3, padding=1)
        self.expand = nn.Conv2d(mid, ch, 1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        t = F.gelu(self.reduce(h))
        if mask is not None:
            t = t * mask
        t = self.expand(F.gelu(self.conv(t)))
        return h + (t if mask is None else t * mask)


class GroupConvStack(nn.Module):
    """Strided (transposed) convolutions with GDN, run on ONE group at a time.

    The input holds one group's features with zeros everywhere else; after every
    convolution the output is multiplied by the group's mask at that scale.  So
    each layer behaves as a convolution zero-padded at the group's boundary, and
    no value of another group is ever read — exactly, whatever the conv
    algorithm, because those values are literally not in the tensor.
    """

    def __init__(self, channels, transposed: bool, kernel: int = 5, refine: bool = False):
        super().__init__()
        from compressai.layers import GDN

        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        extra = {"output_padding": 1} if transposed else {}
        self.transposed = transposed
        self.convs = nn.ModuleList(
            conv(ci, co, kernel, stride=2, padding=kernel // 2, **extra) for ci, co in zip(channels[:-1], channels[1:])
        )
        self.gdns = nn.ModuleList(GDN(c, inverse=transposed) for c in channels[1:-1])
        # network gicodec-4: a residual block after the (I)GDNs at 1/8 and 1/4 scale, where the thin
        # stack had none.  Not at 1/2: there one costs 68 ms of a 0.6 s decode at 768x512.
        self.refiners = nn.ModuleList(GroupResidualBlock(c) for c in channels[1:-2]) if refine else None

    def forward(self, h: torch.Tensor, block_mask: torch.Tensor | None, block: int = 16) -> torch.Tensor:
        """h: (R,C,H,W) rows of one group each; block_mask: (R,H/b,W/b) float at h's scale (b = block size in
        h's pixels) or None when every row covers its whole tensor.  Runs in the memory layout of
        the weights (channels-last after GICodec.for_coding)."""
        if self.convs[0].weight.is_contiguous(memory_format=torch.channels_last):
            h = h.contiguous(memory_format=torch.channels_last)
        scale = block
        for i, conv in enumerate(self.convs):
            h = conv(h)
            scale = scale * 2 if self.transposed else scale // 2
            if i < len(self.gdns):
                h = _gdn(self.gdns[i], h)
            mask = None if block_mask is None else _mask_at(block_mask, scale, h.dtype)
            if mask is not None:
                h = h * mask
            if self.refiners is not None and i < len(self.refiners):
                h = self.refiners[i](h, mask)
        return h


def _gdn(gdn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """compressai's (I)GDN, x · (β + γ x²)^(∓1/2), with its channel mix as a matrix product on a
    channels-last x: there torch's 1x1 conv takes its slow generic kernel (most of the layer's
    time).  Same arithmetic up to float32 summation order; anything else goes to the layer."""
    if not x.is_contiguous(memory_format=torch.channels_last):
        return gdn(x)
    t = x.permute(0, 2, 3, 1)   # (N,H,W,C), contiguous
    norm = F.linear(t * t, gdn.gamma_reparam(gdn.gamma), gdn.beta_reparam(gdn.beta))
    if torch.is_grad_enabled() and (x.requires_grad or norm.requires_grad):   # adapt.py's search
        return (t * (norm.sqrt() if gdn.inverse else norm.rsqrt())).permute(0, 3, 1, 2)
    norm = norm.sqrt_() if gdn.inverse else norm.rsqrt_()   # in place: one 1/2-scale buffer fewer
    return norm.mul_(t).permute(0, 3, 1, 2)


def _mask_at(block_mask: torch.Tensor, scale: int, dtype) -> torch.Tensor:
    m = block_mask if scale == 1 else block_mask.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return m[:, None].to(dtype)
