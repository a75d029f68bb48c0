"""Shared fixtures: a small photo-like image, key files and a policy in tmp dirs."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("PRIVCODEC_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# archive add remembers source hashes in the user's cache folder: never the real one in tests
if "PRIVCODEC_CACHE_DIR" not in os.environ:
    _test_cache = tempfile.TemporaryDirectory(prefix="privcodec-test-cache-")   # removed when the run ends
    os.environ["PRIVCODEC_CACHE_DIR"] = _test_cache.name


def make_photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus a few textured shapes: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 80 * np.sin(xx / 23 + c) * np.cos(yy / 31 - c) for c in range(3)], -1)
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 24)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def small_codec(checkerboard: bool = False, seed: int = 0, refine: bool = False):
    """The codec's real architecture at a small size, random weights, ready to code (torch)."""
    import torch

    from privcodec.codec.model import CodecConfig, GICodec

    torch.manual_seed(seed)
    cfg = CodecConfig(channels=(16, 24, 32), latent=48, attn_depth=2, heads=2, hyper=32, z_ch=16, slices=4,
                      checkerboard=checkerboard, refine=refine)
    m = GICodec(cfg).eval()
    with torch.no_grad():
        m.g_a.convs.convs[-1].weight.mul_(8)   # random weights are too smooth to exercise the coder
        if cfg.checkerboard:   # its output layer starts at zero (= no context): make the context act
            for ctx in m.entropy.cb_context:
                torch.nn.init.normal_(ctx.out.weight, std=0.2)
        for block in m.g_s.convs.refiners or []:   # gicodec-4's blocks start as identities: make them act
            torch.nn.init.normal_(block.expand.weight, std=0.2)
    m.update(force=True)
    return m.for_coding()   # the layout load_weights gives the shipped models


class OneStream:
    """A model coding as codec id gicodec-5 does: each group's z and y in one rANS stream (tiles
    framed with uvarints, privcodec.tiles.UVARINT)."""
    framing = "uvarint"

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def compress(self, *args, **kwargs):
        return self.model.compress(*args, one_stream=True, **kwargs)

    def decompress(self, *args, **kwargs):
        return self.model.decompress(*args, one_stream=True, **kwargs)

    def decompress_region(self, *args, **kwargs):
        return self.model.decompress_region(*args, one_stream=True, **kwargs)


@pytest.fixture
def photo_path(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(make_photo()).save(path)
    return path


@pytest.fixture
def keys_dir(tmp_path):
    from privcodec.keys import keygen

    d = tmp_path / "keys"
    keygen("family", d, "symmetric")
    keygen("alice", d, "x25519")
    keygen("stranger", d, "symmetric")
    return d


@pytest.fixture
def face_policy(tmp_path):
    p = tmp_path / "faces.toml"
    p.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["family", "alice"]\n\n'
                 '[[rule]]\nmatch = ["license_plate"]\naction = "redact"\n\n[default]\naction = "public"\n')
    return p
