"""Pillow integration, as pillow-heif does it.

    import privcodec.pillow
    privcodec.pillow.register()                       # Image.open("photo.prvc") -> the public view
    Image.open("photo.jpg")                           # a carrier is an ordinary JPEG: the public view
    privcodec.pillow.open("photo.prvc", keys=["keys/family.key"])   # the view your keys allow

Carriers need no plugin: their pixels are the public view.  ``open`` decodes from the embedded
container (never from a carrier's visible pixels), for .prvc files and carriers alike.
"""
from __future__ import annotations

import io
import os

from PIL import Image, ImageFile

FORMAT = "PRVC"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == b"PRVC"


class PrvcImageFile(ImageFile.ImageFile):
    """A .prvc file read by Pillow: the keyless view (protected areas filled from public pixels)."""

    format = FORMAT
    format_description = "privcodec protected image (public view)"

    def _open(self) -> None:
        from . import api
        from .errors import PrivcodecError

        try:
            # Pillow's own pixel limit applies, before anything is decoded
            result = api.view(self.fp.read(), max_pixels=Image.MAX_IMAGE_PIXELS or None)
        except PrivcodecError as e:
            raise SyntaxError(f"not a valid .prvc file: {e}") from None
        self._size = result.image.size
        self._mode = "RGB"
        self.info["privcodec"] = {"missing": result.missing, "redacted": result.redacted, "signer": result.signer}
        # the decoded pixels become a raw RGB stream for Pillow's own decoder
        self.fp = io.BytesIO(result.pixels.tobytes())
        self.tile = [ImageFile._Tile("raw", (0, 0) + self._size, 0, ("RGB", 0, 1))]


def register() -> None:
    """Let Image.open read .prvc files (the public view)."""
    Image.register_open(FORMAT, PrvcImageFile, _accept)
    Image.register_extension(FORMAT, ".prvc")


def open(path: str | os.PathLike | bytes, keys=(), **view_options) -> Image.Image:  # noqa: A001 (as Image.open)
    """The view that ``keys`` allow, from a .prvc file or a carrier, as a PIL image (RGB)."""
    from . import api

    return api.view(path, keys, **view_options).image
