"""The codec's group-independence contract, checked bit for bit.

A small model with the real architecture (random weights) keeps these fast;
the shipped weights are checked separately at the end.
"""
from __future__ import annotations

import copy
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import OneStream, small_codec
from privcodec.codec.model import UNKNOWN_GROUP

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["gicodec-1", "gicodec-3", "gicodec-4", "gicodec-5"])
def model(request):
    """The small model of each network: gicodec-1, gicodec-3 (checkerboard context) and gicodec-4
    (gicodec-3 with residual blocks in the synthesis), that one also coding as gicodec-5 does
    (z and y in one stream)."""
    m = small_codec(checkerboard=request.param != "gicodec-1", refine=request.param in ("gicodec-4", "gicodec-5"))
    return OneStream(m) if request.param == "gicodec-5" else m


def photo(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, h // 8 + 1, w // 8 + 1, generator=g)
    img = torch.nn.functional.interpolate(base[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return (img + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def decode_subset(model, streams, grid, subset, h, w, q):
    known = grid.clone()
    known[~torch.isin(grid, torch.tensor(sorted(subset)))] = UNKNOWN_GROUP
    return model.decompress({g: streams[g] for g in subset}, known, h, w, q)


def grid_with_groups(hb, wb, n, seed=0):
    rng = np.random.default_rng(seed)
    grid = np.zeros((hb, wb), dtype=np.int64)
    for g in range(1, n):
        y, x = rng.integers(0, hb), rng.integers(0, wb)
        grid[y:y + rng.integers(1, 3), x:x + rng.integers(1, 4)] = g
    _, grid = np.unique(grid, return_inverse=True)
    return torch.from_numpy(grid.reshape(hb, wb))


def test_every_subset_of_groups_decodes_bit_exactly(model):
    h, w = 90, 118  # not multiples of 16 or 64; groups touch the right/bottom border
    grid = torch.zeros(6, 8, dtype=torch.long)
    grid[1:3, 2:5] = 1
    grid[3:, 6:] = 2          # right and bottom border
    grid[5, 0] = 3            # a single block at the bottom border
    x = photo(h, w)
    streams = model.compress(x, grid, 5.0)
    assert sorted(streams) == [0, 1, 2, 3]
    full, known_all = model.decompress(streams, grid, h, w, 5.0)
    assert known_all.all()
    for r in range(1, 5):
        for subset in itertools.combinations(range(4), r):
            part, known = decode_subset(model, streams, grid, subset, h, w, 5.0)
            assert torch.equal(full[:, known], part[:, known]), subset
            expected = torch.isin(grid, torch.tensor(subset)).repeat_interleave(16, 0).repeat_interleave(16, 1)[:h, :w]
            assert torch.equal(known, expected)


def test_changing_one_group_leaves_other_bitstreams_byte_identical(model):
    h, w = 96, 130
    grid = grid_with_groups(6, 9, 5, seed=3)
    x = photo(h, w, seed=1)
    before = model.compress(x, grid, 3.0)
    for g in range(5):
        pix = grid.repeat_interleave(16, 0).repeat_interleave(16, 1)[:h, :w] == g
        y = x.clone()
        y[:, pix] = torch.rand(3, int(pix.sum()))
        after = model.compress(y, grid, 3.0)
        assert after[g] != before[g]
        assert all(after[o] == before[o] for o in before if o != g)


def test_a_groups_stream_depends_on_its_own_mask_not_on_the_others_nor_on_its_number(model):
    h, w = 96, 130
    grid = grid_with_groups(6, 9, 5, seed=3)
    x = photo(h, w, seed=2)
    before = model.compress(x, grid, 3.0)
    kept = grid == 0
    others = grid_with_groups(6, 9, 4, seed=11) + 1            # a different layout around group 0
    moved = torch.where(kept, torch.full_like(grid, 7), others)  # group 0 renumbered 7
    after = model.compress(x, moved, 3.0)
    assert after[7] == before[0]


@pytest.mark.parametrize("n_groups", [1, 2, 7, 16])
def test_one_to_sixteen_groups_round_trip(model, n_groups):
    h, w = 112, 136
    hb, wb = math.ceil(h / 16), math.ceil(w / 16)
    grid = torch.arange(hb * wb).reshape(hb, wb) % n_groups
    x = photo(h, w, seed=n_groups)
    streams = model.compress(x, grid, 4.0)
    assert len(streams) == n_groups
    full, _ = model.decompress(streams, grid, h, w, 4.0)
    for g in range(n_groups):
        part, known = decode_subset(model, streams, grid, {g}, h, w, 4.0)
        assert torch.equal(full[:, known], part[:, known])


@pytest.mark.parametrize("size", [(16, 16), (17, 33), (64, 64), (200, 40)])
def test_sizes_that_are_not_multiples_of_64(model, size):
    h, w = size
    grid = torch.zeros(math.ceil(h / 16), math.ceil(w / 16), dtype=torch.long)
    out, known = model.decompress(model.compress(photo(h, w), grid, 2.0), grid, h, w, 2.0)
    assert out.shape == (3, h, w) and known.all()
    assert torch.isfinite(out).all()


def test_fractional_quality_sits_between_levels(model):
    x = photo(64, 64)
    grid = torch.zeros(4, 4, dtype=torch.long)
    sizes = [len(model.compress(x, grid, q)[0]) for q in (1.0, 4.5, 8.0)]
    assert sizes[0] <= sizes[1] <= sizes[2]


def test_block_map_must_fit_the_image(model):
    with pytest.raises(ValueError):
        model.compress(photo(32, 32), torch.zeros(3, 2, dtype=torch.long), 4.0)


SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from privcodec import codec
import numpy as np
rng = np.random.default_rng(7)
img = (rng.random((40, 72, 3)) * 255).astype(np.uint8)
img = np.cumsum(img, axis=1).astype(np.uint8)
grid = np.zeros((3, 5), dtype=np.int64); grid[1:, 3:] = 1
if sys.argv[2] == 'enc':
    s = codec.encode_groups(img, grid, 4.0)
    sys.stdout.write(s[0].hex() + ' ' + s[1].hex())
else:
    a, b = sys.argv[3].split()
    out, _ = codec.decode_groups({0: bytes.fromhex(a), 1: bytes.fromhex(b)}, grid, 40, 72, 4.0)
    import hashlib; sys.stdout.write(hashlib.sha256(out.tobytes()).hexdigest())
"""


def test_shipped_weights_decode_identically_in_fresh_processes_with_other_thread_counts():
    def run(threads, *args):
        env = {"PRIVCODEC_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), *args], capture_output=True, text=True,
                           env=env, check=True)
        return r.stdout

    streams = run(1, "enc")
    assert streams == run(2, "enc")
    assert run(1, "dec", streams) == run(2, "dec", streams)


def test_torch_free_constants_match_the_model():
    from privcodec import codec
    from privcodec.codec import model as m

    assert (codec.BLOCK, codec.UNKNOWN_GROUP) == (m.BLOCK, m.UNKNOWN_GROUP)


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_shipped_weights_code_identically_under_every_cpu_kernel_set(capability):
    """torch picks SIMD kernels by CPU (ATEN_CPU_CAPABILITY); the float64 entropy parameters may
    differ in their last bits between kernel sets, and the streams must not.  Encoded with one
    kernel set, a file decodes to the same pixels under every other (and re-encodes the same)."""
    def run(cap, *args):
        env = {"PRIVCODEC_THREADS": "1", "PATH": "/usr/bin:/bin", "ATEN_CPU_CAPABILITY": cap}
        return subprocess.run([sys.executable, "-c", SCRIPT, "1", *args], capture_output=True, text=True,
                              env=env, check=True, timeout=300).stdout

    streams = run("default", "enc")
    assert run(capability, "enc") == streams
    assert run(capability, "dec", streams) == run("default", "dec", streams)


def test_shipped_weights_leave_other_groups_streams_byte_identical():
    from privcodec import codec

    rng = np.random.default_rng(11)
    img = np.cumsum(rng.integers(0, 12, (96, 160, 3)), axis=1).clip(0, 255).astype(np.uint8)
    grid = np.zeros((6, 10), dtype=np.int64)
    grid[1:4, 2:5] = 1
    grid[3:, 7:] = 2
    before = codec.encode_groups(img, grid, 5.0)
    for g in range(3):
        changed = img.copy()
        changed[np.kron(grid == g, np.ones((16, 16), bool))] = 255 - changed[np.kron(grid == g, np.ones((16, 16), bool))]
        after = codec.encode_groups(changed, grid, 5.0)
        assert after[g] != before[g]
        assert all(after[o] == before[o] for o in before if o != g)


# ---------------------------------------------------------------- tiles (gicodec-2)


def _tiled(model, q, tile=2):
    """tiles.encode / decode around the small model, with 2-block tiles so small images have many."""
    from privcodec import tiles

    def compress(px, grid):
        return model.compress(torch.from_numpy(px).permute(2, 0, 1).float() / 255, torch.from_numpy(grid), q)

    def decompress(streams, grid, h, w):
        x, known = model.decompress(streams, torch.from_numpy(grid), h, w, q)
        return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy(), known.numpy()

    framing = getattr(model, "framing", tiles.U32)
    enc = lambda img, grid: tiles.encode(img, grid, compress, tile, framing)
    dec = lambda streams, grid, h, w: tiles.decode(streams, grid, h, w, decompress, tile, framing=framing)
    return enc, dec


def _pixels(h, w, seed=0):
    return (photo(h, w, seed).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_tiled_every_subset_decodes_bit_exactly_with_groups_crossing_tile_edges(model):
    enc, dec = _tiled(model, 4.0)
    h, w = 90, 118                  # 6 x 8 blocks: 3 x 4 tiles of 2 x 2 blocks, the last ones cut
    grid = np.zeros((6, 8), dtype=np.int64)
    grid[1:4, 1:6] = 1              # crosses tile edges both ways
    grid[3:, 6:] = 2                # right and bottom border, two tiles
    grid[5, 0] = 3
    img = _pixels(h, w)
    streams = enc(img, grid)
    assert sorted(streams) == [0, 1, 2, 3]
    full, known_all = dec(streams, grid, h, w)
    assert known_all.all()
    for r in range(1, 5):
        for subset in itertools.combinations(range(4), r):
            known_grid = np.where(np.isin(grid, subset), grid, UNKNOWN_GROUP)
            part, known = dec({g: streams[g] for g in subset}, known_grid, h, w)
            expected = np.kron(np.isin(grid, subset), np.ones((16, 16), bool))[:h, :w]
            assert np.array_equal(known, expected), subset
            assert np.array_equal(part[known], full[known]), subset


def test_tiled_streams_of_other_groups_are_byte_identical_when_one_group_changes(model):
    enc, _ = _tiled(model, 3.0)
    h, w = 96, 130
    grid = grid_with_groups(6, 9, 5, seed=3).numpy()
    img = _pixels(h, w, seed=1)
    before = enc(img, grid)
    rng = np.random.default_rng(0)
    for g in range(5):
        pix = np.kron(grid == g, np.ones((16, 16), bool))[:h, :w]
        changed = img.copy()
        changed[pix] = rng.integers(0, 256, (int(pix.sum()), 3))
        after = enc(changed, grid)
        assert after[g] != before[g]
        assert all(after[o] == before[o] for o in before if o != g)


def test_one_tile_is_the_whole_image_stream_with_a_length(model):
    """A photo smaller than a tile codes exactly as gicodec-1 did, plus 4 bytes per group
    (gicodec-5: nothing, the one tile's length is the stream's)."""
    import struct

    enc, _ = _tiled(model, 5.0, tile=64)
    grid = grid_with_groups(6, 8, 3, seed=2).numpy()
    img = _pixels(96, 128, seed=4)
    whole = model.compress(torch.from_numpy(img).permute(2, 0, 1).float() / 255, torch.from_numpy(grid), 5.0)
    framed = whole if isinstance(model, OneStream) else {g: struct.pack(">I", len(s)) + s for g, s in whole.items()}
    assert enc(img, grid) == framed


@pytest.mark.parametrize("bad", ["truncated", "trailing", "zero", "missing tile", "long length"])
def test_tiled_framing_must_account_for_every_byte(model, bad):
    from privcodec import varint

    enc, dec = _tiled(model, 4.0)
    grid = np.zeros((4, 4), dtype=np.int64)
    grid[1:3, 1:3] = 1              # group 1 has blocks in all four tiles
    streams = enc(_pixels(64, 64), grid)
    s = streams[1]
    if isinstance(model, OneStream):     # the last tile runs to the end: its stream must be exact
        n, pos = varint.decode(s)
        forged = {"truncated": s[:-1], "trailing": s + b"\0", "zero": b"\0" + s[pos:],
                  "missing tile": s[:pos + n], "long length": bytes([0x80 | s[0]]) + b"\0" + s[1:]}[bad]
        if bad == "long length" and pos != 1:
            forged = bytes([s[0], s[1] | 0x80]) + b"\0" + s[2:]   # a non-shortest uvarint of the same value
    else:
        forged = {"truncated": s[:-1], "trailing": s + b"\0", "zero": b"\0\0\0\0" + s[4:],
                  "missing tile": s[:4 + int.from_bytes(s[:4], "big")], "long length": b"\xff" + s[1:]}[bad]
    with pytest.raises(ValueError):
        dec({**streams, 1: forged}, grid, 64, 64)


def test_one_stream_codes_the_same_symbols_in_fewer_bytes():
    """gicodec-5 against gicodec-4, same network: the same pixels from streams shorter (one coder
    flush and one length fewer per group)."""
    model = small_codec(checkerboard=True, refine=True)
    h, w = 90, 118
    grid = grid_with_groups(6, 8, 4, seed=1)
    x = photo(h, w, seed=2)
    two, one = model.compress(x, grid, 4.0), model.compress(x, grid, 4.0, one_stream=True)
    assert sorted(one) == sorted(two) and all(len(one[g]) < len(two[g]) for g in two)
    px_two, _ = model.decompress(two, grid, h, w, 4.0)
    px_one, _ = model.decompress(one, grid, h, w, 4.0, one_stream=True)
    assert torch.equal(px_one, px_two)
    with pytest.raises(ValueError):     # one layout never reads as the other
        model.decompress(one, grid, h, w, 4.0)
    for forged in (one[1] + b"\0", one[1][:-1]):     # nothing frames the stream: every byte counts
        with pytest.raises(ValueError):
            model.decompress({**one, 1: forged}, grid, h, w, 4.0, one_stream=True)


def test_shipped_weights_tiled_across_a_tile_edge_decode_every_subset_exactly():
    from privcodec import codec

    rng = np.random.default_rng(5)
    h, w = 48, 1040                  # 65 block columns: a 1024-px tile and a 16-px one
    img = np.cumsum(rng.integers(0, 9, (h, w, 3)), axis=1).clip(0, 255).astype(np.uint8)
    grid = np.zeros((3, 65), dtype=np.int64)
    grid[1:, 60:] = 1               # crosses the tile edge at block column 64
    streams = codec.encode_groups(img, grid, 4.0)
    full, known = codec.decode_groups(streams, grid, h, w, 4.0)
    assert known.all()
    for g in (0, 1):
        part, k = codec.decode_groups({g: streams[g]}, np.where(grid == g, g, UNKNOWN_GROUP), h, w, 4.0)
        assert np.array_equal(k, np.kron(grid == g, np.ones((16, 16), bool))) and np.array_equal(part[k], full[k])


def test_the_training_path_computes_what_the_coding_path_codes(model):
    """forward() (batched, all groups at once) and per_group() (each group on its crop) are two
    implementations of one transform: they must agree, or training optimises another codec."""
    torch.manual_seed(3)
    grid = torch.zeros(4, 8, dtype=torch.long)
    grid[1:3, 2:5] = 1
    grid[:, 6:] = 2
    x = photo(64, 128, seed=4)[None]
    with torch.no_grad():
        y_train = model.g_a(x, grid[None])
        y_code = model.g_a.per_group(x, grid)
        assert torch.allclose(y_train, y_code, rtol=1e-4, atol=1e-4)
        x_train = model.g_s(y_code, grid[None])
        x_code = model.g_s.per_group(y_code, grid, {0, 1, 2})
        assert torch.allclose(x_train, x_code, rtol=1e-4, atol=1e-4)


def test_the_coding_layout_moves_pixels_by_float_rounding_only_and_streams_not_at_all():
    """for_coding() (what loading shipped weights does) runs the pixel transforms' conv stacks
    channels-last for faster kernels: latent and pixels agree with the plain layout to float32
    rounding, and the float64 entropy path is untouched: the same latent codes to the same bytes."""
    coding = small_codec(checkerboard=True, refine=True)
    plain = copy.deepcopy(coding)
    for stack in (plain.g_a.convs, plain.g_s.convs):
        stack.to(memory_format=torch.contiguous_format)
    assert coding.g_s.convs.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    grid = torch.zeros(4, 8, dtype=torch.long)
    grid[1:3, 2:5] = 1   # a rectangle inside an irregular background
    grid[:, 6:] = 2
    x = photo(64, 128, seed=5)[None]
    with torch.no_grad():
        y = plain.g_a.per_group(x, grid)
        assert torch.allclose(coding.g_a.per_group(x, grid), y, rtol=1e-5, atol=1e-5)
        assert coding._code_latent(y.double(), grid) == plain._code_latent(y.double(), grid)
        x_plain = plain.g_s.per_group(y, grid, {0, 1, 2})
        assert torch.allclose(coding.g_s.per_group(y, grid, {0, 1, 2}), x_plain, rtol=1e-5, atol=1e-5)


def _y_bytes(stream: bytes) -> int:
    from privcodec import varint

    z_len, pos = varint.decode(stream)
    return len(stream) - pos - z_len


@pytest.mark.parametrize("network", ["gicodec-1", "gicodec-3"])
def test_the_training_rate_is_the_rate_the_coder_spends(network):
    """The likelihoods training optimises (forward, eval mode: hard rounding) are those the coder
    uses: their -log2 sum is the coded y size, within the range coder's overhead.  Released
    weights give real latents (random ones live in the tails, where the coder's escape codes and
    the likelihood floor differ); gicodec-3's trained checkerboard context is active, so a
    context that differed between the two paths would show up here."""
    from privcodec import codec
    from privcodec.codec.weights_io import load_weights

    path = next(codec.WEIGHTS_DIR / p for _, (net, p, _) in reversed(list(codec.RELEASED_MODELS.items()))
                if net == network)
    model = load_weights(path)
    assert codec.network_of(model) == network
    x = photo(128, 192, seed=7)
    grid = torch.zeros(8, 12, dtype=torch.long)
    grid[2:6, 3:8] = 1
    for q in (2.0, 5.0, 8.0):
        with torch.no_grad():
            out = model(x[None], grid[None], torch.tensor([q]), 2)
        predicted = float(-torch.log2(out["y_likelihoods"]).sum()) / 8
        coded = sum(_y_bytes(s) for s in model.compress(x, grid, q).values())
        assert abs(coded - predicted) <= 0.02 * predicted + 16, (q, coded, predicted)


def test_a_grown_checkerboard_network_codes_exactly_as_its_parent():
    """gicodec-3 grown from a gicodec-1 network (train --checkerboard --init) starts with a zero
    context: until training moves it, it codes the same symbols with the same probabilities as
    its parent (only their order in the stream differs: anchors first), so it decodes to the same
    pixels at the same size."""
    from privcodec.codec.train import grow

    parent = small_codec(seed=1)
    child = grow(parent.config.to_dict(), parent.state_dict(), checkerboard=True).for_coding()
    assert child.config.checkerboard and not parent.config.checkerboard
    grid = grid_with_groups(5, 7, 3, seed=2)
    x = photo(80, 112, seed=2)
    ours, theirs = child.compress(x, grid, 3.0), parent.compress(x, grid, 3.0)
    assert ours != theirs
    assert all(abs(len(ours[g]) - len(theirs[g])) <= 4 for g in theirs)
    assert torch.equal(child.decompress(ours, grid, 80, 112, 3.0)[0], parent.decompress(theirs, grid, 80, 112, 3.0)[0])
    with pytest.raises(ValueError, match="cannot be shrunk"):
        grow(child.config.to_dict(), child.state_dict(), checkerboard=False)


def test_a_network_grown_with_synthesis_blocks_codes_and_decodes_exactly_as_its_parent():
    """gicodec-4 grown from gicodec-3 (train --refine --init): the entropy model is the parent's,
    so the streams are the same bytes, and the new residual blocks start as identities, so they
    decode to the same pixels; a gicodec-4 network cannot be shrunk back."""
    from privcodec import codec
    from privcodec.codec.train import grow

    parent = small_codec(checkerboard=True, seed=3)
    child = grow(parent.config.to_dict(), parent.state_dict(), checkerboard=True, refine=True).for_coding()
    assert codec.network_of(child) == "gicodec-4" and codec.network_of(parent) == "gicodec-3"
    assert len(child.g_s.convs.refiners) == 2
    grid = grid_with_groups(5, 7, 3, seed=4)
    x = photo(80, 112, seed=4)
    ours = child.compress(x, grid, 6.0)
    assert ours == parent.compress(x, grid, 6.0)
    assert torch.equal(child.decompress(ours, grid, 80, 112, 6.0)[0], parent.decompress(ours, grid, 80, 112, 6.0)[0])
    with pytest.raises(ValueError, match="cannot be shrunk"):
        grow(child.config.to_dict(), child.state_dict(), checkerboard=True, refine=False)


def test_scale_indexes_are_compressais_build_indexes_bit_for_bit():
    """The coder's table lookup is a faster form of compressai's: one index off and a stream
    would not decode, so it must agree everywhere, at the table's own values and around them."""
    from compressai.entropy_models import GaussianConditional

    from privcodec.codec.entropy import scale_indexes, scale_table

    rng = torch.Generator().manual_seed(0)
    # the shipped tables (64 and 256 log-spaced levels) and one that is not log-spaced
    for table in (scale_table(levels=64), scale_table(levels=256), torch.tensor([0.11, 0.2, 0.3, 5.0, 7.0, 100.0])):
        gc = GaussianConditional(table.tolist()).double()
        table = gc.scale_table
        edges = torch.cat([table, torch.nextafter(table, torch.full_like(table, 1e9)),
                           torch.nextafter(table, torch.zeros_like(table))])
        special = torch.tensor([0.0, -0.0, -1.0, 1e-300, float("inf"), float("-inf"), float("nan"), 1e30],
                               dtype=torch.float64)
        scales = torch.cat([edges, special, torch.exp(torch.randn(20000, generator=rng, dtype=torch.float64) * 3)])
        for x in (scales, scales.float()):
            assert torch.equal(scale_indexes(gc, x), gc.build_indexes(x))


def test_the_coder_tables_cut_to_length_code_exactly_as_the_padded_table(model):
    """The rANS coder gets each CDF row cut to its length (a 7x smaller copy per call): every row
    still ends with 1 << 16, and symbols code to the same bytes as with compressai's padded table."""
    from compressai.ans import BufferedRansEncoder

    from privcodec.codec.entropy import coder_tables

    gc = model._entropy64().gaussian_conditional
    rows, lengths, offsets = coder_tables(gc)
    assert [len(r) for r in rows] == lengths and all(r[-1] == 1 << 16 for r in rows)
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, len(rows), 4000).tolist()
    symbols = rng.integers(-40, 40, 4000).tolist()      # some beyond the tables: bypass-coded
    padded = (gc.quantized_cdf.tolist(), gc.cdf_length.reshape(-1).int().tolist(), gc.offset.reshape(-1).int().tolist())
    streams = []
    for tables in (padded, (rows, lengths, offsets)):
        encoder = BufferedRansEncoder()
        encoder.encode_with_indexes(symbols, indexes, *tables)
        streams.append(encoder.flush())
    assert streams[0] == streams[1]


def test_a_finer_scale_table_is_a_new_weights_file_of_the_same_network(tmp_path):
    """export-weights --scale-levels: the same network weights with coding tables for another
    Gaussian scale table.  Only the y coder's tables change (z is coded as before); the file is a
    new model (its own weights_sha256) whose streams differ but carry the same symbols, so both
    decode to the same pixels.  (That the finer table codes photos in fewer bytes is a benchmark
    number: the README's, measured on Kodak and unseen photos.)"""
    import torch

    from privcodec import codec
    from privcodec.codec.weights_io import export_checkpoint, load_weights

    source = codec.WEIGHTS_DIR / codec.RELEASED_MODELS["d62669753a486c4de6e05a6819012b509a30f524be60dfea5d66f2aa3a015fec"][1]
    out = export_checkpoint(source, tmp_path / "fine.pt", scale_levels=256)
    old, new = torch.load(source, weights_only=True), torch.load(out, weights_only=True)
    changed = {k for k in old["state"] if not torch.equal(old["state"][k], new["state"][k])}
    assert changed == {f"entropy.gaussian_conditional.{b}" for b in ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")}
    assert new["config"]["scale_levels"] == 256 and old["config"].get("scale_levels", 64) == 64
    assert new["meta"]["ema"] and new["meta"]["iterations"] == old["meta"]["iterations"]

    from conftest import make_photo

    img = torch.from_numpy(make_photo(128, 192, seed=5)).permute(2, 0, 1).float() / 255.0
    grid = torch.zeros(8, 12, dtype=torch.long)
    grid[2:6, 3:7] = 1
    coarse, fine = load_weights(source), load_weights(out)
    s_coarse, s_fine = coarse.compress(img, grid, 3.0), fine.compress(img, grid, 3.0)
    assert all(s_fine[g] != s_coarse[g] for g in s_coarse)
    x_coarse, _ = coarse.decompress(s_coarse, grid, 128, 192, 3.0)
    x_fine, _ = fine.decompress(s_fine, grid, 128, 192, 3.0)
    assert torch.equal(x_coarse, x_fine)   # the same symbols, only coded with finer tables


def test_tiles_decode_side_by_side_in_at_most_workers_threads_to_the_same_image():
    import threading
    import time

    from privcodec import tiles

    grid = np.arange(6 * 8).reshape(6, 8) % 3          # 3 x 4 tiles of 2 x 2 blocks
    streams = {g: b"".join(len(b"t").to_bytes(4, "big") + b"t" for _ in range(12)) for g in range(3)}
    running, peak, lock = [0], [0], threading.Lock()

    def decompress(tile_streams, tile_grid, h, w):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        value = int(tile_grid.sum()) + 10 * len(tile_streams)
        return np.full((h, w, 3), value, np.uint8), np.ones((h, w), bool)

    one = tiles.decode(streams, grid, 90, 118, decompress, 2)
    for workers in (2, 3):
        peak[0] = 0
        image, known = tiles.decode(streams, grid, 90, 118, decompress, 2, workers=workers)
        assert np.array_equal(image, one[0]) and np.array_equal(known, one[1])
        assert 1 < peak[0] <= workers

    def failing(tile_streams, tile_grid, h, w):
        if int(tile_grid[0, 0]) == 2:
            raise ValueError("bad tile")
        return decompress(tile_streams, tile_grid, h, w)

    with pytest.raises(ValueError, match="bad tile"):
        tiles.decode(streams, grid, 90, 118, failing, 2, workers=2)


def test_shipped_weights_decode_tiles_side_by_side_to_the_pixels_of_one_thread(monkeypatch):
    """Each tile decodes on one thread whatever the worker count, so the pixels are those of a
    single-threaded decode; the caller's thread count comes back afterwards."""
    import threading

    from privcodec import codec

    monkeypatch.setattr(codec, "TILE_BLOCKS", 2)      # 3 x 5 tiles on a small photo
    img = _pixels(90, 150, seed=4)
    grid = np.zeros((6, 10), dtype=np.int64)
    grid[1:5, 2:7] = 1
    streams = codec.encode_groups(img, grid, 4.0)
    decoders, whole = set(), codec._decode_whole

    def spy(*args):
        decoders.add(threading.get_ident())
        return whole(*args)

    monkeypatch.setattr(codec, "_decode_whole", spy)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            decoders.clear()
            results.append(codec.decode_groups(streams, grid, 90, 150, 4.0))
            assert torch.get_num_threads() == threads
            assert len(decoders) == 1 if threads == 1 else 1 < len(decoders) <= threads
    finally:
        torch.set_num_threads(before)
    for image, known in results[1:]:
        assert np.array_equal(image, results[0][0]) and np.array_equal(known, results[0][1])


def test_decodes_from_several_threads_at_once_give_the_same_pixels_and_each_its_thread_count_back(monkeypatch):
    """A threaded caller (a Dask worker) may decode several files at once: each decode takes one
    tile at a time then (memory stays a tile per caller thread), and every caller thread gets
    its own torch thread count back."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from privcodec import codec, tiles

    monkeypatch.setattr(codec, "TILE_BLOCKS", 2)
    img = _pixels(64, 96, seed=5)
    grid = np.zeros((4, 6), dtype=np.int64)
    grid[1:3, 1:4] = 1
    streams = codec.encode_groups(img, grid, 3.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = codec.decode_groups(streams, grid, 64, 96, 3.0)
        assert torch.get_num_threads() == 2
        workers, seen = [], []
        all_decoding = threading.Barrier(3)
        side_by_side = tiles.decode

        def spy(*args, **kwargs):
            workers.append(kwargs["workers"])
            all_decoding.wait()               # the three decodes are under way at once
            return side_by_side(*args, **kwargs)

        monkeypatch.setattr(tiles, "decode", spy)

        set_up = threading.Barrier(3)

        def caller(_):
            torch.get_num_threads()           # torch has run on this OS thread: its count is its own,
            torch.set_num_threads(3)          # as in a long-lived worker thread
            set_up.wait()
            result = codec.decode_groups(streams, grid, 64, 96, 3.0)
            seen.append(torch.get_num_threads())
            return result

        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(caller, range(3)))
        assert seen == [3, 3, 3] and sorted(workers) == [1, 1, 3]
    finally:
        torch.set_num_threads(before)
    for image, known in together:
        assert np.array_equal(image, alone[0]) and np.array_equal(known, alone[1])
