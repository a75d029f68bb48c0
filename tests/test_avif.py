"""The AVIF backend: the same exactness battery as the learned codec, and a torch-free install."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from privcodec.backends import avif

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = -2


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([127 + 100 * np.sin(xx / (9 + 4 * c) + yy / 13) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def subset(grid, groups):
    return np.where(np.isin(grid, list(groups)), grid, UNKNOWN)


@pytest.fixture(params=["avif-1", "avif-2 whole", "avif-2 tiled"])
def codec_id(request, monkeypatch):
    """Each test below runs on the untiled avif-1, on avif-2 with one tile, and on avif-2 with 2-block
    tiles so that groups cross tile edges."""
    if request.param == "avif-2 tiled":
        monkeypatch.setattr(avif, "TILE_BLOCKS", 2)
    return request.param.split()[0]


def test_every_subset_of_groups_decodes_bit_exactly(codec_id):
    h, w = 90, 118                          # not multiples of 16; groups on the right and bottom border
    grid = np.zeros((6, 8), np.int64)
    grid[1:3, 2:5] = 1
    grid[3:, 6:] = 2
    grid[5, 0] = 3                          # a single block
    streams = avif.encode_groups(photo(h, w), grid, 5.0, codec_id=codec_id)
    full, known_all = avif.decode_groups(streams, grid, h, w, 5.0, codec_id=codec_id)
    assert known_all.all()
    for r in range(1, 5):
        for groups in itertools.combinations(range(4), r):
            part, known = avif.decode_groups({g: streams[g] for g in groups}, subset(grid, groups), h, w, 5.0,
                                             codec_id=codec_id)
            assert np.array_equal(part[known], full[known])
            expected = np.kron(np.isin(grid, groups), np.ones((16, 16), bool))[:h, :w]
            assert np.array_equal(known, expected)


def test_changing_one_group_leaves_every_other_stream_byte_identical(codec_id):
    h, w = 96, 130
    rng = np.random.default_rng(3)
    grid = np.zeros((6, 9), np.int64)
    for g in range(1, 5):
        y, x = rng.integers(0, 6), rng.integers(0, 9)
        grid[y:y + 2, x:x + 3] = g
    _, grid = np.unique(grid, return_inverse=True)
    grid = grid.reshape(6, 9)
    x = photo(h, w, seed=1)
    before = avif.encode_groups(x, grid, 3.0, codec_id=codec_id)
    for g in before:
        pix = np.kron(grid == g, np.ones((16, 16), bool))[:h, :w]
        y = x.copy()
        y[pix] = 255 - y[pix]
        after = avif.encode_groups(y, grid, 3.0, codec_id=codec_id)
        assert after[g] != before[g]
        assert all(after[o] == before[o] for o in before if o != g)


@pytest.mark.parametrize("n_groups", [1, 2, 7, 16])
def test_one_to_sixteen_groups_round_trip(n_groups, codec_id):
    h, w = 112, 136
    grid = np.arange(math.ceil(h / 16) * math.ceil(w / 16)).reshape(math.ceil(h / 16), -1) % n_groups
    streams = avif.encode_groups(photo(h, w, seed=n_groups), grid, 4.0, codec_id=codec_id)
    assert len(streams) == n_groups
    full, known = avif.decode_groups(streams, grid, h, w, 4.0, codec_id=codec_id)
    assert known.all()
    for g in range(n_groups):
        part, k = avif.decode_groups({g: streams[g]}, subset(grid, {g}), h, w, 4.0, codec_id=codec_id)
        assert np.array_equal(part[k], full[k])


def test_a_stream_that_does_not_fit_its_group_is_rejected():
    grid = np.zeros((2, 2), np.int64)
    grid[1, 1] = 1
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(photo(512, 512)).save(buf, "AVIF", quality=20)
    big = avif._compact(buf.getvalue())
    assert avif.av1_max_frame_size(big[2 + big[1]:]) == (512, 512)
    framed = lambda s: len(s).to_bytes(4, "big") + s           # avif-2: one tile
    with pytest.raises(ValueError, match="does not fit"):    # a 512 x 512 frame for a 16 x 16 group
        avif.decode_groups({1: big}, subset(grid, {1}), 32, 32, 4.0, codec_id="avif-1")
    with pytest.raises(ValueError, match="does not fit"):
        avif.decode_groups({1: framed(big)}, subset(grid, {1}), 32, 32, 4.0)
    for codec_id, wrap in (("avif-1", lambda s: s), ("avif-2", framed)):
        with pytest.raises(ValueError):
            avif.decode_groups({1: wrap(b"\x00" + buf.getvalue())}, subset(grid, {1}), 32, 32, 4.0, codec_id=codec_id)
        for junk in (b"\x00" * 100, b"\x01\x05abcde" + bytes(50), b"\x07", b""):
            with pytest.raises(ValueError):
                avif.decode_groups({0: wrap(junk)}, grid, 32, 32, 4.0, codec_id=codec_id)


def _obus(payload: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(payload):
        start = pos
        pos += 1 + bool(payload[pos] & 0x04)
        size, pos = avif._leb128(payload, pos)
        pos += size
        out.append(payload[start:pos])
    return out


def test_a_second_sequence_header_cannot_smuggle_a_larger_frame():
    """A correct 16 x 16 sequence header in front of a whole 512 x 512 stream passed the size
    check, and libavif decoded the big frame and scaled it into the group: pixels that are not the
    group's, and memory the group's size does not bound."""
    import io

    from PIL import Image

    grid = np.zeros((2, 2), np.int64)
    grid[1, 1] = 1

    def compact(size):
        buf = io.BytesIO()
        Image.fromarray(photo(size, size)).save(buf, "AVIF", quality=20)
        return avif._compact(buf.getvalue())

    small, big = compact(16), compact(512)
    small_seq = next(o for o in _obus(small[2 + small[1]:]) if (o[0] >> 3) & 0x0F == 1)
    hostile = small[:2 + small[1]] + small_seq + big[2 + big[1]:]
    with pytest.raises(ValueError, match="sequence header"):
        avif.av1_max_frame_size(hostile[2 + hostile[1]:])
    for codec_id, wrap in (("avif-1", lambda s: s), ("avif-2", lambda s: len(s).to_bytes(4, "big") + s)):
        with pytest.raises(ValueError):
            avif.decode_groups({1: wrap(hostile)}, subset(grid, {1}), 32, 32, 4.0, codec_id=codec_id)


def test_quality_levels_are_monotonic():
    x = photo(64, 64)
    grid = np.zeros((4, 4), np.int64)
    sizes = [len(avif.encode_groups(x, grid, q)[0]) for q in (1, 4, 8)]
    assert sizes[0] < sizes[1] < sizes[2]


TORCHLESS = """
import sys
sys.modules["torch"] = None          # importing torch now fails, as on a base install
sys.modules["compressai"] = None
sys.argv = ["privcodec"] + sys.argv[1:]
from privcodec import cli
try:
    cli.main()
except SystemExit as e:
    sys.exit(e.code)
"""


def test_keygen_protect_view_inspect_strip_and_grant_need_no_torch_with_the_avif_backend(tmp_path, photo_path):
    def run(*args, ok=True):
        r = subprocess.run([sys.executable, "-c", TORCHLESS, *map(str, args)], capture_output=True, text=True,
                           timeout=300)
        assert (r.returncode == 0) == ok, r.stderr
        return r

    run("keygen", "family", "--dir", tmp_path / "keys")
    run("keygen", "bob", "--dir", tmp_path / "keys", "--type", "x25519")
    out = tmp_path / "p.prvc"
    run("protect", photo_path, "-o", out, "--policy", ROOT / "policies/faces.toml", "--keys-dir", tmp_path / "keys",
        "--codec", "avif", "--region", "10,10,50,50:face", "--no-detect")
    run("view", out, "-o", tmp_path / "public.png")
    run("view", out, "-o", tmp_path / "full.png", "--key", tmp_path / "keys/family.key")
    run("inspect", out)
    run("grant", out, "-o", tmp_path / "g.prvc", "--key", tmp_path / "keys/family.key", "--to", "bob",
        "--keys-dir", tmp_path / "keys")
    run("strip", tmp_path / "g.prvc", "-o", tmp_path / "s.prvc", "--key", tmp_path / "keys/bob.key")
    # a learned-codec file without torch: one clear line naming the extra
    learned = ROOT / "tests/fuzz/corpus/public-only.prvc"
    r = run("view", learned, "-o", tmp_path / "x.png", ok=False)
    assert r.stderr.strip().splitlines() == ["Error: the learned codec (gicodec) needs torch and compressai: "
                                             "pip install 'privcodec[learned]'"]


def test_compact_streams_keep_only_what_the_decoder_cannot_rebuild():
    import io

    from PIL import Image

    for (h, w), q in (((48, 64), 20), ((33, 17), 60), ((128, 96), 90)):
        x = photo(h, w)
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, "AVIF", quality=q, speed=avif.SPEED[0], subsampling=avif.SUBSAMPLING, max_threads=1)
        full = buf.getvalue()
        compact = avif._compact(full)
        assert compact[0] == 1 and len(full) - len(compact) > 200          # the HEIF boxes are gone
        same = np.asarray(Image.open(io.BytesIO(avif._expand(compact, w, h))).convert("RGB"))
        assert np.array_equal(same, np.asarray(Image.open(io.BytesIO(full)).convert("RGB")))


def test_the_lossless_backend_gives_key_holders_the_exact_pixels_and_keeps_groups_independent():
    from privcodec.backends import lossless

    h, w = 90, 118
    grid = np.zeros((6, 8), np.int64)
    grid[1:3, 2:5] = 1
    grid[3:, 6:] = 2
    x = photo(h, w, seed=5)
    streams = lossless.encode_groups(x, grid, 4.0)
    out, known = lossless.decode_groups(streams, grid, h, w, 4.0)
    assert known.all() and np.array_equal(out, x)
    part, k = lossless.decode_groups({1: streams[1]}, subset(grid, {1}), h, w, 4.0)
    assert np.array_equal(part[k], x[k])
    y = x.copy()
    y[np.kron(grid == 1, np.ones((16, 16), bool))[:h, :w]] = 0
    after = lossless.encode_groups(y, grid, 4.0)
    assert after[1] != streams[1] and after[0] == streams[0] and after[2] == streams[2]


def test_protect_lossless_and_avif_quality_ten_through_the_api(tmp_path):
    import privcodec
    from privcodec.keys import keygen

    keygen("family", tmp_path, "symmetric")
    x = photo(64, 80, seed=2)
    for codec, quality in (("lossless", 4.0), ("avif", 10.0)):
        res = privcodec.protect(x, ROOT / "policies/faces.toml", keys_dir=tmp_path, detect=[], codec=codec,
                                quality=quality, regions=["0,0,32,32:face"])
        full = privcodec.view(res.data, keys=[tmp_path / "family.key"]).pixels
        if codec == "lossless":
            assert np.array_equal(full, x)
        else:
            assert 10 * np.log10(255 ** 2 / np.mean((full.astype(float) - x) ** 2)) > 38
    with pytest.raises(privcodec.PrivcodecError, match="between 1 and 8"):
        privcodec.protect(x, ROOT / "policies/faces.toml", keys_dir=tmp_path, detect=[], codec="gicodec", quality=10)
