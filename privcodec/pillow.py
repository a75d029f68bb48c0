"""Pillow integration, as pillow-heif does it.

    import privcodec.pillow
    privcodec.pillow.register()                       # Image.open("photo.prvc") -> the public view
    Image.open("photo.jpg")                           # a carrier is an ordinary JPEG: the public view
    privcodec.pillow.open("photo.prvc", keys=["keys/family.key"])   # the view your keys allow
    im.save("photo.prvc", policy="policies/faces.toml", keys_dir="keys")   # privcodec.protect

``Image.open`` reads the header only (size, mode, what is protected); the pixels are decoded on
``load()``, as for any Pillow format.  Carriers need no plugin: their pixels are the public view.
``open`` decodes from the embedded container (never from a carrier's visible pixels), for .prvc
files and carriers alike.
"""
from __future__ import annotations

import os

from PIL import Image, ImageFile

FORMAT = "PRVC"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == b"PRVC"


def _pillow_limit() -> int:
    """Pillow's limit replaces privcodec's (raised or disabled by the user, as for any format)."""
    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 1 << 32


class PrvcImageFile(ImageFile.ImageFile):
    """A .prvc file read by Pillow: the keyless view (protected areas filled from public pixels)."""

    format = FORMAT
    format_description = "privcodec protected image (public view)"

    def _open(self) -> None:
        from . import api
        from .errors import PrivcodecError

        data = self.fp.read()
        try:
            info = api.inspect(data)      # the container's checks, no pixel decoded
        except PrivcodecError as e:
            raise SyntaxError(f"not a valid .prvc file: {e}") from None
        pixels = info["width"] * info["height"]
        if Image.MAX_IMAGE_PIXELS and pixels > 2 * Image.MAX_IMAGE_PIXELS:
            # Pillow's own limit and error, checked on the header before anything is decoded
            raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of "
                                               f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack.")
        self._size = (info["width"], info["height"])
        self._mode = "RGB"
        self.info["privcodec"] = {
            "missing": [g["index"] for g in info["groups"] if g["access"] == "encrypted"],
            "redacted": info["redacted_blocks"] > 0, "signer": info["signer"]}
        self._prvc = data
        self.tile = []

    def load(self):
        if self._prvc is not None:
            from . import api
            from .errors import PrivcodecError

            try:
                result = api.view(self._prvc, max_pixels=_pillow_limit())
            except PrivcodecError as e:
                raise OSError(f"cannot decode .prvc: {e}") from None   # Pillow's error for damaged data
            self._prvc = None
            self.im = result.image.im
            # everything was read in _open: the file Pillow opened can go, as after any format's load
            if self.fp is not None and self._exclusive_fp and self._close_exclusive_fp_after_loading:
                self.fp.close()
            self.fp = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    """``im.save("x.prvc", policy=..., **protect's options)``: privcodec.protect on the image's pixels.
    The file is written only once the container is made."""
    from . import api
    from .errors import PrivcodecError

    options = dict(im.encoderinfo)
    policy = options.pop("policy", None)
    if policy is None:
        raise PrivcodecError("saving a .prvc needs a policy: im.save(path, policy=\"policies/faces.toml\", "
                             "keys_dir=\"keys\")")
    fp.write(api.protect(im, policy, **options).data)


def register() -> None:
    """Let Image.open read .prvc files (the public view), and Image.save write them (protect)."""
    Image.register_open(FORMAT, PrvcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".prvc")


def open(fp, mode: str = "r", *, keys=(), passphrase: str | None = None, fill: str = "inpaint",  # noqa: A001
         require_signer=None, max_pixels: int | None = None) -> Image.Image:
    """The view that ``keys`` allow, from a .prvc file or a carrier, as a PIL image (RGB) whose
    ``format`` is "PRVC" and ``info["privcodec"]`` says what was opened.  ``fp``: a path, a binary
    file object or the file's bytes, as ``Image.open`` takes; the options are ``privcodec.view``'s."""
    from . import api

    if mode != "r":
        if not isinstance(mode, str):
            raise TypeError("keys are a keyword argument: privcodec.pillow.open(path, keys=[...])")
        raise ValueError(f"bad mode {mode!r}")
    if hasattr(fp, "read") and not isinstance(fp, (str, os.PathLike)):
        fp = fp.read()
    result = api.view(fp, keys, passphrase=passphrase, fill=fill, require_signer=require_signer,
                      max_pixels=max_pixels)
    image = result.image
    image.format = FORMAT
    image.info["privcodec"] = {"decoded": result.decoded, "missing": result.missing, "redacted": result.redacted,
                               "signer": result.signer, "authenticated": result.authenticated}
    return image
