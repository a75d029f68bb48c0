"""Per-group entropy model: cell-local hyperprior + group-masked context + ChARM (+ checkerboard).

    y_g ──h_a (1x1, 2x2/2, 2x2/2)──▶ z_g ──Q──▶ EntropyBottleneck ──▶ z bits of group g
                                          │
    ẑ_g ──h_s (2x2/2ᵀ, 2x2/2ᵀ)──▶ F_g ──(Σ_g m_g F_g)──▶ masked 3x3 convs ──▶ (μ_h, σ_h)
    (μ_h, σ_h, ŷ_<i) ──1x1 ChARM slice i──▶ (μ_i, σ_i) ──▶ GaussianConditional ──▶ y bits
    with ``checkerboard`` (network gicodec-3), inside each slice:
      anchors ((row + col) even) coded with (μ_i, σ_i);  ŷ_i on anchors ──group-masked 3x3 conv,
      GELU, 1x1──▶ (Δμ, Δlog σ) ──▶ the other half coded with (μ_i + Δμ, σ_i·e^Δlog σ)

The checkerboard context is He et al., *Checkerboard Context Model for Efficient Learned Image
Compression* (CVPR 2021), as ELIC uses it inside channel slices (He et al., CVPR 2022); here its
conv only reads anchors of the centre's own group, so groups stay independent.  Its last layer
starts at zero: a model grown from a gicodec-1 network codes exactly as that network did.

Why not one hyperprior for the whole image (GIT-SSIC, Feng et al. ICCV 2023):
its z mixes every group and is sent to everyone, so it leaks protected content.
Here each group has its own z, computed from its own latent only, coded only on
the 4x4-latent cells (64x64 px) it touches, and decoded by kernel==stride
layers so a cell's z only feeds that cell.  The channel-conditional part
(Minnen & Singh, ICIP 2020) is 1x1, hence per position.

As CompressAI's latent codecs, the model owns its three paths: ``forward`` (training:
likelihoods, straight-through ŷ), ``compress`` and ``decompress`` (per group a z and a y rANS
stream, or with ``one_stream`` one rANS stream holding both; run on a float64 copy so encoder
and decoder agree bit for bit).
"""
from __future__ import annotations

import array
import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import nn

from .. import varint
from .layers import GroupMaskedConv2d

CELL = 4  # latent positions per hyperprior cell side


def scale_table(min_=0.11, max_=256.0, levels=64):
    import math
    return torch.exp(torch.linspace(math.log(min_), math.log(max_), levels))


def scale_indexes(gc: GaussianConditional, scales: torch.Tensor) -> torch.Tensor:
    """``gc.build_indexes(scales)``, bit for bit, in one binary search per value: compressai's
    loop makes one full pass per table entry (63), ~10 % of coding time.  The index is the number
    of table entries (all but the last) below the lower-bounded scale; NaN gets the last, as there."""
    scales = gc.lower_bound_scale(scales)
    bounds = gc.scale_table[:-1].to(scales.dtype)
    idx = _log_spaced_search(scales, bounds)
    if idx is None:
        idx = torch.bucketize(scales.contiguous(), bounds)
    return torch.where(torch.isnan(scales), len(gc.scale_table) - 1, idx).int()


def _log_spaced_search(values: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor | None:
    """torch.bucketize(values, bounds) for a log-spaced table (every shipped one), in a third of
    its time: the index is guessed from the logarithm, moved by one where a neighbour says so, and
    returned only if every index then checks out (bounds[i-1] < v <= bounds[i]); else None."""
    n = bounds.numel()
    if n < 2 or not bool(bounds[0] > 0):
        return None
    log_lo = math.log(float(bounds[0]))
    step = (math.log(float(bounds[-1])) - log_lo) / (n - 1)
    v = torch.nan_to_num(values, nan=1.0)    # NaN's index is set by the caller
    guess = ((v.log() - log_lo) / step).floor_().add_(1).clamp_(0, n).long()
    inf = torch.tensor([math.inf], dtype=bounds.dtype)
    edges = torch.cat([-inf, bounds, inf])   # edges[i] = bounds[i-1], edges[i+1] = bounds[i]
    guess -= (edges[guess] >= v).long()
    guess += (edges[guess + 1] < v).long()
    if not bool(((edges[guess] < v) & (v <= edges[guess + 1])).all()):
        return None
    return guess


def coder_tables(gc: GaussianConditional):
    """(CDF rows, lengths, offsets) as the rANS coder takes them, each row cut to its length.
    pybind11 copies the whole table into C++ on every coder call: the padded table (64 x 3133)
    cost 3 ms a call, ~20 % of coding time; cut rows are 7x smaller.  The coder never reads past
    a row's length (every row ends with 1 << precision, which stops its search).  Kept on the
    coding copy of the model (its tables never change): converting 256 rows to lists costs more
    than a group's coding at small sizes."""
    # keyed by the buffers and their version counters: load_state_dict copies into them in place
    key = tuple((t, t._version) for t in (gc.quantized_cdf, gc.cdf_length, gc.offset))
    cached = getattr(gc, "_privcodec_coder_tables", None)
    if cached is not None and all(a is b and v == w for (a, v), (b, w) in zip(cached[0], key)):
        return cached[1]
    lengths = gc.cdf_length.reshape(-1).int().tolist()
    rows = [row[:n] for row, n in zip(gc.quantized_cdf.tolist(), lengths)]
    tables = rows, lengths, gc.offset.reshape(-1).int().tolist()
    object.__setattr__(gc, "_privcodec_coder_tables", (key, tables))
    return tables


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


# A hostile stream must fail cheaply.  Real streams use well under 1 byte per latent symbol
# (white noise at q8: 0.44), so a longer stream is rejected before anything is allocated for
# it; decoded symbols beyond ±2^20 cannot come from a real latent and are rejected before the
# re-encode check (compressai's bypass coder loops forever on values near ±2^28).
MAX_STREAM_BYTES_PER_SYMBOL = 2
MAX_ABS_SYMBOL = 1 << 20


def _check_stream_length(n_bytes: int, n_symbols: int) -> None:
    if n_bytes > MAX_STREAM_BYTES_PER_SYMBOL * n_symbols + 256:
        raise ValueError("group bitstream too long for its blocks")


def _check_symbols(values) -> None:
    if len(values) and (max(values) > MAX_ABS_SYMBOL or min(values) < -MAX_ABS_SYMBOL):
        raise ValueError("group bitstream decodes to out-of-range symbols")


def _as_tensor(symbols: list) -> torch.Tensor:
    """The coder's decoded symbols (a list of ints, checked to lie within ±MAX_ABS_SYMBOL) as a
    float64 tensor: through an int32 buffer, 3x faster than torch.tensor on a list."""
    if not symbols:   # a group with no position in this half of the checkerboard
        return torch.zeros(0, dtype=torch.float64)
    return torch.frombuffer(array.array("i", symbols), dtype=torch.int32).double()


def _padded(stream: bytes, n_symbols: int) -> bytes:
    """compressai's rANS decoder reads 32-bit words without bounds checks.  Zero padding
    bounds what a hostile stream can make it read: at most one word per symbol, plus
    bypass codes whose length is bounded by the stream's own bits."""
    return stream + bytes(4 * (n_symbols + 16) + 16 * len(stream) + 1024)


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


MAX_LOG_SCALE_STEP = 6.0


def _uniform_noise(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U(-1/2, 1/2) noise, the training proxy of rounding, drawn from ``generator``."""
    return torch.rand(t.shape, generator=generator, dtype=t.dtype, device=t.device) - 0.5


def anchors(h: int, w: int) -> torch.Tensor:
    """(h, w) bool: the checkerboard's first half, (row + col) even.  Tiles and decoded regions
    start on even latent rows and columns, so this is the same set as on the whole image."""
    r = torch.arange(h)[:, None]
    c = torch.arange(w)[None, :]
    return (r + c) % 2 == 0


class CheckerboardContext(nn.Module):
    """(ŷ_i on the anchors, zeros elsewhere) ─▶ (Δμ, Δlog σ) for the other half of slice i."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = GroupMaskedConv2d(ch, ch, 3)
        self.out = nn.Conv2d(ch, 2 * ch, 1)
        nn.init.zeros_(self.out.weight)   # starts as "no context": the parent network's exact codes
        nn.init.zeros_(self.out.bias)

    def forward(self, y_hat_anchors: torch.Tensor, gid: torch.Tensor):
        return run_1x1(self.out, F.gelu(self.conv(y_hat_anchors, gid))).chunk(2, 1)


class GroupEntropyModel(nn.Module):
    def __init__(self, latent: int = 192, hyper: int = 128, z_ch: int = 64, slices: int = 6,
                 checkerboard: bool = False, scale_levels: int = 256):
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
        self.checkerboard = checkerboard
        if checkerboard:
            self.cb_context = nn.ModuleList(CheckerboardContext(s) for _ in range(slices))
        self.entropy_bottleneck = EntropyBottleneck(z_ch)
        self.gaussian_conditional = GaussianConditional(scale_table(levels=scale_levels).tolist())

    # -- pieces shared by training and coding ---------------------------------
    def slice_params(self, i: int, mu_h, sigma_h, prev):
        mean_in = torch.cat([mu_h] + prev, 1)
        scale_in = torch.cat([sigma_h] + prev, 1)
        return run_1x1(self.cc_mean[i], mean_in), run_1x1(self.cc_scale[i], scale_in)

    def second_half(self, i: int, mu, sigma, y_hat_i, gid, first):
        """Slice i's parameters once its anchors are known: (μ, σ) unchanged on the anchors
        (``first``), refined from the neighbouring anchors of the same group on the rest."""
        d_mu, d_log_sigma = self.cb_context[i](y_hat_i * first, gid)
        rest = ~first
        # bounded: a scale moves at most e^6 either way, and never overflows (hostile symbols too)
        return mu + d_mu * rest, sigma * torch.exp(d_log_sigma.clamp(-MAX_LOG_SCALE_STEP, MAX_LOG_SCALE_STEP) * rest)

    def refine(self, i: int, mu_h, prev, y_hat_i):
        return y_hat_i + 0.5 * torch.tanh(run_1x1(self.lrp[i], torch.cat([mu_h] + prev + [y_hat_i], 1)))

    def hyper_features(self, z_hat_per_group, masks):
        """Σ_g m_g · h_s(ẑ_g): each latent position takes its own group's features."""
        feats = self.h_s(z_hat_per_group)  # (B*K, C, h, w)
        B, K = masks.shape[:2]
        feats = feats.view(B, K, *feats.shape[1:])
        return (feats * masks[:, :, None].to(feats.dtype)).sum(1)

    # -- training ---------------------------------------------------------------
    def forward(self, y: torch.Tensor, gid: torch.Tensor, K: int, generator: torch.Generator | None = None):
        """y: (B,M,h,w), h and w multiples of CELL; gid: (B,h,w) in 0..K-1.

        Returns ŷ for the synthesis, y likelihoods and per-image z bits (counting
        every group's own z on the cells it touches).  The likelihoods are of the latents
        plus uniform noise (in training mode, compressai's; or drawn from ``generator``
        whatever the mode, for a reproducible encoder-side search: adapt.py)."""
        B, M, h, w = y.shape
        masks = F.one_hot(gid.long(), K).permute(0, 3, 1, 2).to(y.dtype)  # B,K,h,w
        y_groups = (y[:, None] * masks[:, :, None]).reshape(B * K, M, h, w)
        z = self.h_a(y_groups)
        support = F.max_pool2d(masks.reshape(B * K, 1, h, w), CELL)
        z_hat, z_lik = self._z_likelihoods(z, generator)
        z_bits = (-torch.log2(z_lik) * support).reshape(B, -1).sum(1)
        z_hat = z_hat * support
        feats = self.hyper_features(z_hat, masks)
        mu_h, sigma_h = self.context(feats, gid).chunk(2, 1)

        first = anchors(h, w).to(y.device) if self.checkerboard else None
        y_hat_slices, liks = [], []
        for i, y_i in enumerate(y.chunk(self.slices, 1)):
            mu, sigma = self.slice_params(i, mu_h, sigma_h, y_hat_slices)
            if self.checkerboard:
                y_hat_a = (torch.round(y_i - mu) - (y_i - mu)).detach() + y_i
                mu, sigma = self.second_half(i, mu, sigma, y_hat_a, gid, first)
            lik = self._y_likelihoods(y_i, sigma, mu, generator)
            liks.append(lik)
            y_hat_i = (torch.round(y_i - mu) - (y_i - mu)).detach() + y_i  # straight-through
            y_hat_slices.append(self.refine(i, mu_h, y_hat_slices, y_hat_i))
        return torch.cat(y_hat_slices, 1), torch.cat(liks, 1), z_bits

    def _z_likelihoods(self, z: torch.Tensor, generator: torch.Generator | None):
        eb = self.entropy_bottleneck
        if generator is None:
            return eb(z)
        z_noisy = z + _uniform_noise(z, generator)
        C = z.shape[1]
        lik = eb._likelihood(z_noisy.transpose(0, 1).reshape(C, 1, -1))[0]
        return z_noisy, eb.likelihood_lower_bound(lik).reshape(C, z.shape[0], *z.shape[2:]).transpose(0, 1)

    def _y_likelihoods(self, y_i, sigma, mu, generator: torch.Generator | None):
        gc = self.gaussian_conditional
        if generator is None:
            return gc(y_i, sigma, mu)[1]
        return gc.likelihood_lower_bound(gc._likelihood(y_i + _uniform_noise(y_i, generator), sigma, mu))

    # -- coding (float64 copy; see GICodec._entropy64) -------------------------------
    def hyper_params(self, z_hat_by_group: dict, gid: torch.Tensor):
        """(μ_h, σ_h) from each group's own ẑ: every latent position takes its own group's
        features (the coding form of hyper_features: one group at a time, fixed shapes)."""
        h, w = gid.shape
        feats = torch.zeros(1, self.h_s[0].out_channels, h, w, dtype=torch.float64)
        for g, z_hat in z_hat_by_group.items():
            feats += self.h_s(z_hat) * (gid == g).to(torch.float64)
        return self.context(feats, gid[None]).chunk(2, 1)

    def _halves(self, gid_c: torch.Tensor):
        """(anchor mask or None, the position sets coded one after the other within a slice)."""
        if not self.checkerboard:
            return None, [torch.ones(gid_c.shape, dtype=torch.bool)]
        first = anchors(*gid_c.shape)
        return first, [first, ~first]

    @torch.no_grad()
    def compress(self, y: torch.Tensor, gid_c: torch.Tensor, one_stream: bool = False) -> dict[int, bytes]:
        """y: (1,M,h,w) gain-scaled latent, h and w multiples of CELL; gid_c: (h,w) group ids, -1 padding.

            per group: y·m ─h_a─▶ z ─▶ EntropyBottleneck ─▶ z symbols
            ẑ of all groups ─▶ hyper_params ─▶ ChARM slices ─▶ y symbols, one rANS coder per group

        Returns {group: uvarint(len(z bytes)) || z bytes || y bytes}, or with ``one_stream``
        (codec id gicodec-5) {group: one rANS stream of its z symbols, then its y symbols}: one
        coder flush (8 bytes) and one length fewer per group and tile."""
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        groups = [int(v) for v in torch.unique(gid_c) if v >= 0]

        z_coded, z_hat = {}, {}
        medians = eb._get_medians().double()
        for grp in groups:
            m = (gid_c == grp)
            support = F.max_pool2d(m[None, None].double(), CELL)[0, 0] > 0
            z = self.h_a(y * m.double())
            z_q = eb.quantize(z, "dequantize", medians)
            z_hat[grp] = z_q * support.double()
            z_coded[grp] = z[:, :, support][:, :, None, :]   # the cells the group touches
            if not bool((z_q - medians)[:, :, support].abs().le(MAX_ABS_SYMBOL).all()):
                raise ValueError("latent out of the coder's range")   # its reader would refuse it
        mu_h, sigma_h = self.hyper_params(z_hat, gid_c)
        from compressai.ans import BufferedRansEncoder

        # each group's symbols in coding order, handed to the coder once (one table copy per group)
        symbols = {grp: ([], []) for grp in groups}
        positions = {grp: gid_c == grp for grp in groups}
        first, halves = self._halves(gid_c)
        prev = []
        for i, y_i in enumerate(y.chunk(self.slices, 1)):
            mu, sigma = self.slice_params(i, mu_h, sigma_h, prev)
            sym = torch.round(y_i - mu)
            for k, half in enumerate(halves):
                if k:   # the anchors are coded: their ŷ sharpens the rest of the slice
                    mu, sigma = self.second_half(i, mu, sigma, sym + mu, gid_c[None], first)
                    sym = torch.round(y_i - mu)
                idx = scale_indexes(gc, sigma)
                if not bool(sym.abs().le(MAX_ABS_SYMBOL).all()):
                    raise ValueError("latent out of the coder's range")
                for grp in groups:
                    p = positions[grp] & half
                    symbols[grp][0].extend(sym[0][:, p].reshape(-1).int().tolist())
                    symbols[grp][1].extend(idx[0][:, p].reshape(-1).tolist())
            prev.append(self.refine(i, mu_h, prev, sym + mu))
        tables = coder_tables(gc)
        streams = {}
        for grp in groups:
            encoder = BufferedRansEncoder()
            if one_stream:
                encoder.encode_with_indexes(*self._z_symbols(z_coded[grp]), *coder_tables(eb))
                encoder.encode_with_indexes(*symbols[grp], *tables)
                streams[grp] = encoder.flush()
            else:
                z_bytes = eb.compress(z_coded[grp])[0]
                encoder.encode_with_indexes(*symbols[grp], *tables)
                streams[grp] = varint.encode(len(z_bytes)) + z_bytes + encoder.flush()
        return streams

    def _z_symbols(self, z_sel: torch.Tensor) -> tuple[list, list]:
        """(symbols, table indexes) of the selected cells' z (1,C,1,n), channel-major, as
        EntropyBottleneck.compress codes them."""
        eb = self.entropy_bottleneck
        medians = eb._get_medians().double().reshape(1, -1, 1, 1)
        sym = eb.quantize(z_sel, "symbols", medians)
        return sym.reshape(-1).tolist(), self._z_indexes(z_sel.shape[-1])

    def _z_indexes(self, n_cells: int) -> list:
        return torch.arange(self.entropy_bottleneck.channels).repeat_interleave(n_cells).tolist()

    @torch.no_grad()
    def decompress(self, streams: dict[int, bytes], gid_c: torch.Tensor,
                   one_stream: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of compress (same ``one_stream``) for any subset of groups: (ŷ (1,M,h,w) with zeros
        outside the decoded groups, decoded-cell mask (h,w)).  ValueError on a malformed or hostile stream."""
        hc, wc = gid_c.shape
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        from compressai.ans import BufferedRansEncoder, RansDecoder

        medians = eb._get_medians().double()
        z_hat, decoders, positions, checks = {}, {}, {}, {}
        for grp, stream in streams.items():
            m = gid_c == grp
            support = F.max_pool2d(m[None, None].double(), CELL)[0, 0] > 0
            n_cells, n_y = int(support.sum()), int(m.sum()) * self.latent
            dec = RansDecoder()
            if one_stream:
                _check_stream_length(len(stream), n_cells * eb.channels + n_y)
                dec.set_stream(_padded(stream, n_cells * eb.channels + n_y))
                z_idx = self._z_indexes(n_cells)
                z_vals = dec.decode_stream(z_idx, *coder_tables(eb))
                _check_symbols(z_vals)
                z_sel = _as_tensor(z_vals).reshape(1, -1, 1, n_cells) \
                    + medians.reshape(1, -1, 1, 1)
                checks[grp] = (stream, (z_vals, z_idx), [], [])
            else:
                zlen, pos = varint.decode(stream)
                if pos + zlen > len(stream):
                    raise ValueError("truncated group bitstream")
                z_bytes, y_bytes = stream[pos:pos + zlen], stream[pos + zlen:]
                _check_stream_length(len(z_bytes), n_cells * eb.channels)
                _check_stream_length(len(y_bytes), n_y)
                z_sel = eb.decompress([_padded(z_bytes, n_cells * eb.channels)], (1, n_cells)).double()
                if not bool(((z_sel - medians.reshape(1, -1, 1, 1)).abs() <= MAX_ABS_SYMBOL).all()):
                    raise ValueError("group bitstream decodes to out-of-range symbols")
                if eb.compress(z_sel)[0] != z_bytes:
                    raise ValueError("malformed group bitstream")
                dec.set_stream(_padded(y_bytes, n_y))
                checks[grp] = (y_bytes, None, [], [])
            z = torch.zeros(1, z_sel.shape[1], hc // CELL, wc // CELL, dtype=torch.float64)
            z[:, :, support] = z_sel[:, :, 0, :]
            z_hat[grp] = z
            decoders[grp], positions[grp] = dec, m

        mu_h, sigma_h = self.hyper_params(z_hat, gid_c)
        known = torch.zeros(hc, wc, dtype=torch.bool)
        for m in positions.values():
            known |= m
        tables = coder_tables(gc)
        first, halves = self._halves(gid_c)
        prev = []
        for i in range(self.slices):
            mu, sigma = self.slice_params(i, mu_h, sigma_h, prev)
            sym = torch.zeros_like(mu)
            for k, half in enumerate(halves):
                if k:
                    mu, sigma = self.second_half(i, mu, sigma, sym + mu, gid_c[None], first)
                idx = scale_indexes(gc, sigma)
                for grp, dec in decoders.items():
                    p = positions[grp] & half
                    indexes = idx[0][:, p].reshape(-1).tolist()
                    vals = dec.decode_stream(indexes, *tables)
                    _check_symbols(vals)
                    checks[grp][2].extend(vals)
                    checks[grp][3].extend(indexes)
                    sym[0][:, p] = _as_tensor(vals).reshape(self.slice_ch, -1)
            prev.append(self.refine(i, mu_h, prev, sym + mu) * known.double())
        # The rANS decoder accepts any bytes; a stream is valid only if it is exactly what
        # encoding its own symbols gives back (catches corrupted or forged public payloads).
        for coded, z_part, vals, indexes in checks.values():
            enc = BufferedRansEncoder()
            if z_part is not None:
                enc.encode_with_indexes(*z_part, *coder_tables(eb))
            enc.encode_with_indexes(vals, indexes, *tables)
            if enc.flush() != coded:
                raise ValueError("malformed group bitstream")
        return torch.cat(prev, 1), known
