"""GICodec: the group-independent learned image codec.

    image ─▶ Analysis ─▶ y ─▶ ×gain(q) ─▶ GroupEntropyModel ─▶ one bitstream per group
    bitstreams of any subset of groups ─▶ ŷ (others 0) ─▶ ×gain⁻¹(q) ─▶ Synthesis ─▶ pixels

Any subset of groups decodes alone and bit-exactly: every layer is per
position or exactly masked to the group, and the entropy parameters are
computed in float64 one group at a time with fixed shapes, so they do not
depend on which other groups are present, nor on the thread count.

Variable rate: one model, gain units (Cui et al., CVPR 2021) for 8 quality
levels, interpolated geometrically for fractional ``quality``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..limits import QUALITY_MAX, QUALITY_MIN  # one rule for the header and the command line
from .entropy import CELL, GroupEntropyModel
from .transforms import Analysis, Synthesis

BLOCK = 16
CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")   # compressai's integer coding tables
SIZED_BUFFERS = CDF_BUFFERS + ("scale_table",)                 # sized by the checkpoint, not the constructor
UNKNOWN_GROUP = -2  # blocks whose group is not being decoded


@dataclass
class CodecConfig:
    channels: tuple = (64, 96, 128)   # conv widths at 1/2, 1/4, 1/8 scale
    latent: int = 192                 # y channels at 1/16 scale
    attn_depth: int = 2               # GI window-attention blocks at the latent scale
    heads: int = 6
    window: int = 8
    hyper: int = 128
    z_ch: int = 64
    slices: int = 6
    checkerboard: bool = False        # network gicodec-3: a checkerboard context inside every slice
    refine: bool = False              # network gicodec-4: gicodec-3 + residual blocks in the synthesis at 1/8 and 1/4 scale
    lambdas: tuple = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
    # Gaussian scales a latent's CDF is chosen from (log-spaced 0.11..256; the coder rounds a scale up
    # to the next one).  256 codes 0.3-0.5 % fewer bits than the 64 that every file before session 12
    # was made with (a config without this field is one of those: from_dict).
    scale_levels: int = 256

    def __post_init__(self):
        self.checkerboard = self.checkerboard or self.refine   # gicodec-4 is gicodec-3 + synthesis blocks

    @property
    def network(self) -> str:
        """The network id RELEASED_MODELS and codec.MODEL_OF name this architecture by."""
        return "gicodec-4" if self.refine else "gicodec-3" if self.checkerboard else "gicodec-1"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = {"scale_levels": 64, **d}   # saved before the field existed: 64 scales
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class GICodec(nn.Module):
    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = c = config or CodecConfig()
        self.g_a = Analysis(c.channels, c.latent, c.attn_depth, c.heads, c.window)
        self.g_s = Synthesis(c.channels, c.latent, c.attn_depth, c.heads, c.window, refine=c.refine)
        self.entropy = GroupEntropyModel(c.latent, c.hyper, c.z_ch, c.slices, c.checkerboard, c.scale_levels)
        lam = torch.tensor(c.lambdas)
        init = 0.5 * torch.log(lam / lam[len(lam) // 2])  # quantiser step ~ 1/sqrt(lambda)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, c.latent))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, c.latent))
        self._coding_entropy = None

    # -- rate control -------------------------------------------------------------
    def _interp(self, table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        q = (quality.to(table.dtype).clamp(QUALITY_MIN, QUALITY_MAX) - 1).reshape(-1)
        lo = q.floor().long().clamp(max=table.shape[0] - 2)
        t = (q - lo.to(q.dtype))[:, None]
        return table[lo] * (1 - t) + table[lo + 1] * t

    def gains(self, quality: torch.Tensor):
        g = torch.exp(self._interp(self.log_gain, quality))[:, :, None, None]
        ig = torch.exp(self._interp(self.log_inv_gain, quality))[:, :, None, None]
        return g, ig

    def lmbda(self, quality: torch.Tensor) -> torch.Tensor:
        lambdas = torch.tensor(self.config.lambdas, device=quality.device)
        return torch.exp(self._interp(torch.log(lambdas)[:, None], quality))[:, 0]

    # -- training -----------------------------------------------------------------
    def forward(self, x: torch.Tensor, gid: torch.Tensor, quality: torch.Tensor, groups: int, autocast: bool = False):
        """x: (B,3,H,W) in [0,1], H, W multiples of 64; gid: (B,H/16,W/16) in 0..groups-1."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            y = self.g_a(x, gid)
        g, ig = self.gains(quality)
        y_hat, y_lik, z_bits = self.entropy(y.float() * g, gid, groups)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            x_hat = self.g_s(y_hat * ig, gid)
        return {"x_hat": x_hat.float(), "y_likelihoods": y_lik, "z_bits": z_bits}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy.entropy_bottleneck.loss()

    # -- weights --------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights, first sizing the entropy coders' CDF tables to the checkpoint's (they are
        empty until update() runs).  A checkpoint saved before any update() has no CDF tables: that
        alone is not a mismatch; anything else missing or unexpected is, with ``strict``."""
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("_coding_entropy.")}
        for name, module in self.named_modules():
            for buf in SIZED_BUFFERS:
                key = f"{name}.{buf}"
                if key in state_dict and hasattr(module, buf):
                    getattr(module, buf).resize_(state_dict[key].shape)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.endswith(CDF_BUFFERS)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"checkpoint does not fit this model: missing {missing[:3]}, "
                               f"unexpected {result.unexpected_keys[:3]}")
        self._coding_entropy = None
        return result

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "GICodec":
        """A model from a checkpoint's config dict and state (float tensors of any dtype)."""
        model = cls(CodecConfig.from_dict(config))
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
        return model

    def update(self, force: bool = True) -> None:
        self.entropy.entropy_bottleneck.update(force=force)
        self.entropy.gaussian_conditional.update_scale_table(
            self.entropy.gaussian_conditional.scale_table, force=force)
        self._coding_entropy = None

    # -- coding ---------------------------------------------------------------------
    def for_coding(self) -> "GICodec":
        """This model in eval mode, with the pixel transforms' convolution stacks in channels-last
        layout: oneDNN's CPU kernels then skip a layout reorder around every layer (measured on
        one core at 768x512: synthesis stack 18 % faster, analysis stack 22 %).  Decoded pixels
        move by float32 rounding only.  The entropy model keeps its layout: its float64 path
        must compute exactly what it always did, or an older file's streams would not decode."""
        self.g_a.convs.to(memory_format=torch.channels_last)
        self.g_s.convs.to(memory_format=torch.channels_last)
        return self.eval()

    def _entropy64(self) -> GroupEntropyModel:
        # float64 so the entropy parameters agree between encoder and decoder
        # regardless of thread count or which other groups are decoded.
        if self._coding_entropy is None:
            # a plain attribute, not a registered submodule: it must never appear in state_dict()
            # never trained: without requires_grad, torch.matmul folds the masked 3x3 convs' batched
            # product into one GEMM (with it, it takes a path 4-5x slower: about a fifth of coding time)
            coding = copy.deepcopy(self.entropy).double().eval().requires_grad_(False)
            object.__setattr__(self, "_coding_entropy", coding)
        return self._coding_entropy

    @torch.no_grad()
    def compress(self, image: torch.Tensor, block_groups: torch.Tensor, quality: float,
                 effort: int = 0, one_stream: bool = False) -> dict[int, bytes]:
        """image: (3,H,W) float in [0,1]; block_groups: (ceil(H/16), ceil(W/16)) ints 0..G-1.

        Returns {group: bitstream}.  A group's bitstream depends only on that
        group's pixels, its block mask and the quality (and ``effort``: 1 and 2 search each
        group's latent for fewer bits at the same distortion, adapt.py; same decoder).
        ``one_stream``: each group's z and y in one rANS stream (GroupEntropyModel.compress)."""
        _, H, W = image.shape
        gid = block_groups.long()
        self._check_grid(gid, H, W)
        x = F.pad(image[None].float(), (0, (-W) % BLOCK, 0, (-H) % BLOCK), mode="replicate")
        y = self.g_a.per_group(x, gid).double()
        g, _ = self.gains(torch.tensor([float(quality)]))
        y = y * g.double()
        streams = self._code_latent(y, gid, one_stream)
        if effort:
            from . import adapt

            streams = adapt.improve(self, x, gid, y, quality, H, W, effort, streams, one_stream)
        return streams

    def _code_latent(self, y: torch.Tensor, gid: torch.Tensor, one_stream: bool = False) -> dict[int, bytes]:
        y, gid_c = self._pad_cells(y, gid)
        return self._entropy64().compress(y, gid_c, one_stream)

    @torch.no_grad()
    def decompress(self, streams: dict[int, bytes], block_groups: torch.Tensor, height: int, width: int,
                   quality: float, one_stream: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode any subset of groups.

        block_groups holds the group of every block whose group is known and
        UNKNOWN_GROUP elsewhere; ``streams`` maps group -> bitstream.  Returns
        (image (3,H,W) float in [0,1], pixel mask of decoded pixels (H,W) bool).
        Raises ValueError on a malformed bitstream."""
        crop, known, (y0, x0) = self.decompress_region(streams, block_groups, height, width, quality, one_stream)
        x_hat = torch.zeros(3, height, width)
        known_px = torch.zeros(height, width, dtype=torch.bool)
        x_hat[:, y0:y0 + crop.shape[1], x0:x0 + crop.shape[2]] = crop
        known_px[y0:y0 + crop.shape[1], x0:x0 + crop.shape[2]] = known
        return x_hat, known_px

    def decoded_region(self, streams: dict, gid: torch.Tensor) -> tuple[int, int, int, int]:
        """Block rows/cols (r0, r1, c0, c1) to run the decoder on: the bounding box of the decoded
        groups, its top-left corner aligned to the attention window (and hence to the hyperprior
        cells), so plain and shifted windows, cells and raster order are exactly those of the
        whole grid.  Cost follows the decoded groups' area, not the declared image size."""
        rows, cols = torch.nonzero(torch.isin(gid, torch.tensor(sorted(streams), dtype=gid.dtype)), as_tuple=True)
        if rows.numel() == 0:
            return 0, 0, 0, 0
        align = math.lcm(self.config.window, CELL)
        r0, c0 = int(rows.min()) // align * align, int(cols.min()) // align * align
        return r0, int(rows.max()) + 1, c0, int(cols.max()) + 1

    @torch.no_grad()
    def decompress_region(self, streams: dict[int, bytes], block_groups: torch.Tensor, height: int, width: int,
                          quality: float, one_stream: bool = False) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """As decompress, but only on the decoded groups' region: returns (pixels (3,h,w) float,
        decoded-pixel mask (h,w), (top, left) of the region in the image)."""
        gid = block_groups.long()
        self._check_grid(gid, height, width)
        for grp in streams:
            if not bool((gid == grp).any()):
                raise ValueError("group has no blocks")
        r0, r1, c0, c1 = self.decoded_region(streams, gid)
        gid = gid[r0:r1, c0:c1]
        top, left = r0 * BLOCK, c0 * BLOCK
        height, width = min(height - top, (r1 - r0) * BLOCK), min(width - left, (c1 - c0) * BLOCK)
        if not streams:
            return torch.zeros(3, 0, 0), torch.zeros(0, 0, dtype=torch.bool), (0, 0)
        _, gid_c = self._pad_cells(None, gid)
        y_hat, known = self._entropy64().decompress(streams, gid_c, one_stream)
        y_hat = y_hat[:, :, :gid.shape[0], :gid.shape[1]]
        _, ig = self.gains(torch.tensor([float(quality)]))
        x_hat = self.g_s.per_group((y_hat * ig.double()).float(), gid, set(streams))
        x_hat = x_hat[0, :, :height, :width].clamp(0, 1)
        known_px = known[:gid.shape[0], :gid.shape[1]].repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
        return x_hat, known_px[:height, :width], (top, left)

    @staticmethod
    def _check_grid(gid, H, W):
        if gid.shape != (math.ceil(H / BLOCK), math.ceil(W / BLOCK)):
            raise ValueError(f"block map {tuple(gid.shape)} does not fit a {W}x{H} image")

    @staticmethod
    def _pad_cells(y, gid):
        ph, pw = (-gid.shape[0]) % CELL, (-gid.shape[1]) % CELL
        gid_c = F.pad(gid, (0, pw, 0, ph), value=-1)
        if y is not None:
            y = F.pad(y, (0, pw, 0, ph))
        return y, gid_c
