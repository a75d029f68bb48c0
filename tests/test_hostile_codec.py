"""A hostile group bitstream ends in a clean ValueError, quickly and in bounded memory.

compressai's rANS decoder accepts any bytes, so every payload is attacker-controlled input
to C++ code that holds the GIL: a hang there cannot be interrupted (not even by Ctrl-C),
which is why the random-stream checks run in a subprocess with a deadline.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import pytest
import torch

from privcodec.varint import encode as uvarint
from conftest import OneStream, small_codec
from privcodec.codec.model import UNKNOWN_GROUP

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["gicodec-1", "gicodec-3", "gicodec-4", "gicodec-5"])
def model(request):
    m = small_codec(checkerboard=request.param != "gicodec-1", refine=request.param in ("gicodec-4", "gicodec-5"))
    return OneStream(m) if request.param == "gicodec-5" else m


def test_a_group_far_from_the_origin_decodes_on_its_region_exactly(model):
    h, w = 330, 460                      # 21 x 29 blocks: several attention windows each way
    grid = torch.zeros(21, 29, dtype=torch.long)
    grid[13:19, 17:25] = 1               # starts inside a window, not on its edge
    grid[20, 28] = 2                     # single bottom-right block
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, h, w, generator=g)
    streams = model.compress(x, grid, 4.0)
    full, _ = model.decompress(streams, grid, h, w, 4.0)
    for subset in ({1}, {2}, {1, 2}):
        known_grid = torch.where(torch.isin(grid, torch.tensor(sorted(subset))), grid, UNKNOWN_GROUP)
        crop, known, (top, left) = model.decompress_region({s: streams[s] for s in subset}, known_grid, h, w, 4.0)
        r0, _, c0, _ = model.decoded_region(subset, known_grid)
        assert (top, left) == (r0 * 16, c0 * 16) and top % 128 == 0 and left % 128 == 0
        assert crop.shape[1] < h and crop.shape[2] < w          # the decoder never saw the whole canvas
        region = full[:, top:top + crop.shape[1], left:left + crop.shape[2]]
        assert torch.equal(region[:, known], crop[:, known])


def test_an_oversized_stream_is_rejected_before_anything_is_allocated_for_it(model):
    grid = torch.zeros(1, 1, dtype=torch.long)
    stream = uvarint(0) + bytes(8_000_000)           # 8 MB claimed for one 16-px block
    tracemalloc.start()
    with pytest.raises(ValueError, match="too long"):
        model.decompress({0: stream}, grid, 16, 16, 4.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000     # one copy of the stream at most; the padding (16x its size) was never built


RANDOM_STREAMS = textwrap.dedent("""
    import sys
    import numpy as np, torch
    from privcodec import codec
    from privcodec.codec import load_codec
    from privcodec import varint
    model = load_codec()
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grid = np.zeros((2, 2), np.int64)
    one = sys.argv[2] == "one"   # gicodec-5's layout: z and y in one stream
    real = model.compress(torch.from_numpy(img).permute(2, 0, 1).float() / 255, torch.from_numpy(grid), 4.0,
                          one_stream=one)[0]  # untiled
    if one:   # z's symbols take about the first third: keep a prefix so that y is reached with garbage
        zlen, pos = len(real) // 3, 0
    else:
        zlen, pos = varint.decode(real)
    z_part, y_len = real[:pos + zlen], len(real) - pos - zlen
    outcomes, seeds = {}, 0
    for seed in range(int(sys.argv[1])):
        if seed >= 150 and outcomes.get("group bitstream decodes to out-of-range symbols"):
            break   # enough: the hang class was reached (how soon depends on the model's CDFs)
        seeds += 1
        r = np.random.default_rng(seed)
        y_random = z_part + r.integers(0, 256, y_len, dtype=np.uint8).tobytes()
        z_random = (b"" if one else varint.encode(zlen)) + r.integers(0, 256, zlen, dtype=np.uint8).tobytes() \
            + real[pos + zlen:]
        for stream in (y_random, z_random):
            try:
                model.decompress({0: stream}, torch.from_numpy(grid), 32, 32, 4.0, one_stream=one)
                outcome = "decoded"
            except ValueError as e:
                outcome = str(e)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(seeds, outcomes)
""")


@pytest.mark.parametrize("layout", ["two", "one"])
def test_random_streams_end_in_a_clean_error_never_a_hang(layout):
    # On the unfixed decoder (and the 39k model), seed 57 of these decoded a symbol near 2^28 and
    # the re-encode check looped forever inside compressai; random y streams are tried until that
    # class of stream has been seen (seed 159 with the 45.75k model).  "one": gicodec-5's streams.
    proc = subprocess.run([sys.executable, "-c", RANDOM_STREAMS, "3000", layout], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seeds, outcomes = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    outcomes = eval(outcomes)
    assert sum(outcomes.values()) == 2 * int(seeds)
    assert set(outcomes) <= {"decoded", "malformed group bitstream", "group bitstream decodes to out-of-range symbols"}
    assert outcomes.get("group bitstream decodes to out-of-range symbols", 0) >= 1   # the hang class was reached


def _border_groups(n: int = 64):
    """n-2 groups of 4 border blocks each, whose boxes are all the whole n x n grid: the cost of
    a whole tile per group, from a few bytes each (the most any geometry allows is about n)."""
    import numpy as np

    grid = np.full((n, n), -2, np.int64)
    for k in range(1, n - 1):
        grid[0, k] = grid[n - 1, n - 1 - k] = grid[k, 0] = grid[n - 1 - k, n - 1] = k
    return grid


@pytest.mark.parametrize("backend", ["avif-1", "avif-2", "lossless-2", "gicodec-2", "gicodec-1", "gicodec-5"])
def test_groups_whose_boxes_cover_the_image_many_times_are_refused_before_decoding(backend):
    import struct

    import numpy as np

    from privcodec import codec, limits, tiles
    from privcodec.backends import avif, lossless

    grid = _border_groups()
    assert tiles.box_cover(grid) > limits.MAX_BOX_COVER
    tiled = backend[-1] == "2"       # u32 tile lengths (gicodec-5: one tile, no framing)
    streams = {k: (struct.pack(">I", 1) + b"x") if tiled else b"x" for k in range(1, 63)}
    size = 64 * 16
    with pytest.raises(ValueError, match="cover"):
        if backend.startswith("avif"):
            avif.decode_groups(streams, grid, size, size, 4.0, codec_id=backend)
        elif backend.startswith("lossless"):
            lossless.decode_groups(streams, grid, size, size, 4.0, codec_id=backend)
        else:
            weights = None if backend == "gicodec-5" else str(codec.WEIGHTS_DIR / "released/gicodec-1-53k75.pt")
            codec.decode_groups(streams, grid, size, size, 4.0, codec_id=backend, weights=weights)
    assert tiles.box_cover(grid, groups=range(1, 10)) < limits.MAX_BOX_COVER   # a few such groups decode


def test_protect_refuses_groups_it_could_not_hand_to_a_reader():
    import numpy as np

    from privcodec.backends import avif
    from privcodec.errors import PrivcodecError

    grid = _border_groups()
    grid[grid < 0] = 0
    with pytest.raises(PrivcodecError, match="overlap too much"):
        avif.encode_groups(np.zeros((1024, 1024, 3), np.uint8), grid, 4.0)
