"""Encoder effort: more encoding time for fewer bits, and nothing else changes.

effort 1 and 2 search each group's latent (privcodec/codec/adapt.py); the streams stay those of
the same network for the same decoder, each still a function of its own group only.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import OneStream, small_codec
from privcodec.errors import PrivcodecError
from test_codec import decode_subset, grid_with_groups, photo

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["gicodec-1", "gicodec-4", "gicodec-5"])
def model(request):
    m = small_codec(checkerboard=request.param != "gicodec-1", refine=request.param != "gicodec-1")
    return OneStream(m) if request.param == "gicodec-5" else m   # gicodec-5: one stream a group


def test_with_effort_changing_one_group_leaves_other_streams_byte_identical(model):
    h, w = 96, 130
    grid = grid_with_groups(6, 9, 4, seed=3)
    x = photo(h, w, seed=1)
    before = model.compress(x, grid, 3.0, effort=1)
    for g in range(4):
        pix = grid.repeat_interleave(16, 0).repeat_interleave(16, 1)[:h, :w] == g
        y = x.clone()
        y[:, pix] = torch.rand(3, int(pix.sum()), generator=torch.Generator().manual_seed(g))
        after = model.compress(y, grid, 3.0, effort=1)
        assert after[g] != before[g]
        assert all(after[o] == before[o] for o in before if o != g)


def test_with_effort_a_stream_depends_on_its_own_mask_not_the_others_nor_its_number(model):
    h, w = 96, 130
    grid = grid_with_groups(6, 9, 4, seed=3)
    x = photo(h, w, seed=2)
    before = model.compress(x, grid, 3.0, effort=1)
    others = grid_with_groups(6, 9, 3, seed=11) + 1
    moved = torch.where(grid == 0, torch.full_like(grid, 7), others)
    assert model.compress(x, moved, 3.0, effort=1)[7] == before[0]


def test_with_effort_every_subset_decodes_bit_exactly(model):
    h, w = 90, 118
    grid = torch.zeros(6, 8, dtype=torch.long)
    grid[1:3, 2:5] = 1
    grid[3:, 6:] = 2
    x = photo(h, w, seed=4)
    streams = model.compress(x, grid, 5.0, effort=1)
    full, _ = model.decompress(streams, grid, h, w, 5.0)
    for subset in ([0], [1], [2], [0, 2], [1, 2]):
        part, known = decode_subset(model, streams, grid, subset, h, w, 5.0)
        assert torch.equal(full[:, known], part[:, known]), subset


def test_with_effort_the_same_photo_gives_the_same_bytes(model):
    x, grid = photo(80, 96, seed=5), grid_with_groups(5, 6, 3, seed=1)
    assert model.compress(x, grid, 4.0, effort=1) == model.compress(x, grid, 4.0, effort=1)


def _natural(h=128, w=192, seed=11):
    rng = np.random.default_rng(seed)
    img = np.cumsum(rng.integers(-6, 7, (h, w, 3)), axis=1) + np.cumsum(rng.integers(-4, 5, (h, 1, 3)), axis=0)
    return (img - img.min() + 40).clip(0, 255).astype(np.uint8)


def test_with_the_shipped_weights_effort_never_codes_a_group_worse_and_helps_overall():
    from privcodec import codec

    img = _natural()
    grid = np.zeros((8, 12), dtype=np.int64)
    grid[2:5, 3:7] = 1
    lmbda = float(codec.load_codec().lmbda(torch.tensor([4.0])))
    pixels = {g: np.kron(grid == g, np.ones((16, 16), bool))[:img.shape[0], :img.shape[1]] for g in (0, 1)}
    costs = {}
    for effort in (0, 1):
        streams = codec.encode_groups(img, grid, 4.0, effort=effort)
        decoded, _ = codec.decode_groups(streams, grid, *img.shape[:2], 4.0)
        err = (decoded.astype(float) - img) ** 2
        # R + lambda * D per pixel, as the codec was trained (D: mean squared error over channels)
        costs[effort] = {g: (8 * len(streams[g]) + lmbda * err[pixels[g]].sum() / 3) / pixels[g].sum() for g in (0, 1)}
    assert all(costs[1][g] <= costs[0][g] for g in (0, 1))
    assert sum(costs[1].values()) < sum(costs[0].values())


def test_with_the_shipped_weights_effort_streams_decode_with_the_ordinary_decoder():
    from privcodec import codec

    img = _natural(96, 128, seed=3)
    grid = np.zeros((6, 8), dtype=np.int64)
    grid[1:3, 1:4] = 1
    plain, _ = codec.decode_groups(codec.encode_groups(img, grid, 2.0), grid, 96, 128, 2.0)
    streams = codec.encode_groups(img, grid, 2.0, effort=1)
    decoded, known = codec.decode_groups(streams, grid, 96, 128, 2.0)
    assert known.all()
    assert np.abs(decoded.astype(int) - img).mean() < 1.1 * np.abs(plain.astype(int) - img).mean()
    alone, known1 = codec.decode_groups({1: streams[1]}, np.where(grid == 1, 1, -2), 96, 128, 2.0)
    assert np.array_equal(alone[known1], decoded[known1])


@pytest.mark.parametrize("effort", [-1, 3, 1.5, True, "1"])
def test_protect_refuses_an_effort_it_does_not_have(effort, tmp_path):
    from privcodec import api

    img = np.full((32, 32, 3), 128, np.uint8)
    policy = tmp_path / "p.toml"
    policy.write_text('[default]\naction = "public"\n')
    with pytest.raises(PrivcodecError, match="effort must be one of 0, 1, 2"):
        api.protect(img, policy, effort=effort, detect=[])


def test_avif_effort_uses_a_slower_libavif_speed_and_decodes_the_same_way(monkeypatch):
    from PIL import Image

    from privcodec import backends

    speeds = []
    save = Image.Image.save

    def spy(self, fp, format=None, **params):
        speeds.append(params.get("speed"))
        return save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", spy)
    avif = backends.get("avif")
    img = _natural(64, 96, seed=5)
    grid = np.zeros((4, 6), dtype=np.int64)
    grid[1:3, 2:4] = 1
    errors = []
    for effort in (0, 1):
        speeds.clear()
        streams = avif.encode_groups(img, grid, 4.0, effort)
        assert set(speeds) == {(6, 4)[effort]}
        decoded, known = avif.decode_groups(streams, grid, 64, 96, 4.0, avif.model_digest())
        assert known.all()
        errors.append(np.abs(decoded.astype(int) - img).mean())
    assert errors[1] < 1.1 * errors[0]
