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

from . import boxes

CODEC_ID = "lossless-1"
NAME = "lossless"
codec_id, name = CODEC_ID, NAME
WEBP_MAX_SIDE = 16383


def model_digest() -> bytes:
    return hashlib.sha256(b"privcodec lossless-1").digest()


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float) -> dict[int, bytes]:
    from PIL import Image

    def encode_crop(crop: np.ndarray) -> bytes:
        buf = io.BytesIO()
        if max(crop.shape[:2]) <= WEBP_MAX_SIDE:
            Image.fromarray(crop).save(buf, "WEBP", lossless=True, quality=100, method=4, exact=True)
            return b"\x02" + buf.getvalue()
        Image.fromarray(crop).save(buf, "PNG", compress_level=9)
        return b"\x03" + buf.getvalue()

    return boxes.encode(image, block_groups, "solid", encode_crop)   # other groups' pixels: grey


def _open_stream(stream: bytes, width: int, height: int) -> tuple[bytes, str]:
    fmt = {b"\x02": "WEBP", b"\x03": "PNG"}.get(stream[:1])
    if fmt is None:
        raise ValueError("malformed group stream")
    return stream[1:], fmt


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  digest: bytes | None = None):
    if digest is not None and digest != model_digest():
        raise ValueError("not a lossless-1 stream set")
    return boxes.decode(streams, block_groups, height, width, _open_stream)
