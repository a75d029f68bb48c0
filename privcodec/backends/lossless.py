"""The lossless backend: every group's bounding box as a lossless WebP (PNG past WebP's size limit).

    group g: box crop, other groups' pixels filled from g's own pixels only ─▶ lossless image
    stream ─▶ decode ─▶ g's blocks, bit-exact: key holders get the original pixels back

For archives that need the original (``protect --lossless``).  Pillow's AVIF writer cannot make
lossless (identity-matrix 4:4:4) AV1, so lossless groups are WebP, whose lossless mode is exact by
definition; a stream is again a function of its group's pixels and mask only.

    stream = 0x02 || WebP file   or   0x03 || PNG file (a box side over 16383 px)
"""
from __future__ import annotations

import hashlib
import io

import numpy as np

from ..limits import names_weights
from . import boxes

# lossless-1: one image per group box (still read); lossless-2: the same per 2048-px tile (privcodec/tiles.py)
CODEC_ID = "lossless-2"
CODEC_IDS = ("lossless-1", "lossless-2")
TILE_BLOCKS = 128
NAME = "lossless"
codec_id, name = CODEC_ID, NAME
WEBP_MAX_SIDE = 16383
WEBP_METHOD = {0: 4, 1: 5, 2: 6}   # libwebp method by effort (0 fastest .. 6 smallest)


def model_digest(codec_id: str = CODEC_ID) -> bytes:
    return hashlib.sha256(f"privcodec {codec_id}".encode()).digest()


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float, codec_id: str = CODEC_ID,
                  effort: int = 0) -> dict[int, bytes]:
    from PIL import Image

    from .. import tiles

    def encode_crop(crop: np.ndarray) -> bytes:
        buf = io.BytesIO()
        if max(crop.shape[:2]) <= WEBP_MAX_SIDE:
            Image.fromarray(crop).save(buf, "WEBP", lossless=True, quality=100, method=WEBP_METHOD[effort],
                                       exact=True)
            return b"\x02" + buf.getvalue()
        Image.fromarray(crop).save(buf, "PNG", compress_level=9)
        return b"\x03" + buf.getvalue()

    def encode_boxes(pixels: np.ndarray, grid: np.ndarray) -> dict[int, bytes]:
        return boxes.encode(pixels, grid, "solid", encode_crop)   # other groups' pixels: grey

    _check_id(codec_id)
    if codec_id == "lossless-1":
        tiles.check_work(block_groups, encoding=True)
        return encode_boxes(image, block_groups)
    return tiles.encode(image, np.asarray(block_groups), encode_boxes, TILE_BLOCKS)


def _open_stream(stream: bytes, width: int, height: int) -> tuple[bytes, str]:
    fmt = {b"\x02": "WEBP", b"\x03": "PNG"}.get(stream[:1])
    if fmt is None:
        raise ValueError("malformed group stream")
    return stream[1:], fmt


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  digest: bytes | None = None, codec_id: str = CODEC_ID):
    from .. import tiles

    _check_id(codec_id)
    if digest is not None and not names_weights(model_digest(codec_id), digest):
        raise ValueError(f"not a {codec_id} stream set")

    def decode_boxes(parts, grid, h, w):
        return boxes.decode(parts, grid, h, w, _open_stream)

    if codec_id == "lossless-1":
        tiles.check_work(block_groups, streams)
        return decode_boxes(streams, block_groups, height, width)
    return tiles.decode(streams, np.asarray(block_groups), height, width, decode_boxes, TILE_BLOCKS)


def _check_id(codec_id: str) -> None:
    if codec_id not in CODEC_IDS:
        raise ValueError(f"unknown codec id {codec_id!r}")
