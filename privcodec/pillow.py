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

        data = self.fp.read()
        try:
            info = api.inspect(data)
            pixels = info["width"] * info["height"]
            if Image.MAX_IMAGE_PIXELS and pixels > 2 * Image.MAX_IMAGE_PIXELS:
                # Pillow's own limit and error, checked on the header before anything is decoded
                raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of "
                                                   f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.")
            # Pillow's limit replaces privcodec's (raised or disabled by the user, as for any format)
            result = api.view(data, max_pixels=2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 1 << 32)
        except PrivcodecError as e:
            raise SyntaxError(f"not a valid .prvc file: {e}") from None
        self._size = result.image.size
        self._mode = "RGB"
        self.info["privcodec"] = {"missing": result.missing, "redacted": result.redacted, "signer": result.signer}
        # the decoded pixels become a raw RGB stream for Pillow's own decoder; the file Pillow
        # opened stays in _fp, which Pillow closes with the image (as its multi-frame plugins do)
        self._fp = self.fp
        self.fp = io.BytesIO(result.pixels.tobytes())
        self.tile = [ImageFile._Tile("raw", (0, 0) + self._size, 0, ("RGB", 0, 1))]


def register() -> None:
    """Let Image.open read .prvc files (the public view)."""
    Image.register_open(FORMAT, PrvcImageFile, _accept)
    Image.register_extension(FORMAT, ".prvc")


def open(path: str | os.PathLike, keys=(), **view_options) -> Image.Image:  # noqa: A001 (as Image.open)
    """The view that ``keys`` allow, from a .prvc file or a carrier (a path; file bytes also work,
    as everywhere in privcodec's API), as a PIL image (RGB)."""
    from . import api

    return api.view(path, keys, **view_options).image
