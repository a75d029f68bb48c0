"""Group-independent codec backends, chosen by the container's codec id.

    image + block groups ─▶ backend.encode_groups ─▶ {group: stream}
    {group: stream} (any subset) ─▶ backend.decode_groups ─▶ pixels + decoded-pixel mask

A backend is a module-like object with ``codec_id``, ``model_digest()`` (the header's
``weights_sha256`` for new files), ``encode_groups`` (with an ``effort`` in limits.EFFORT_LEVELS:
more encoding time for fewer bits, never a different decoder) and ``decode_groups``.  Every stream must be
a function of its own group's pixels and block mask (and the quality) only, and decode alone,
bit for bit.  Two backends ship:

- ``gicodec`` (``gicodec-5``, ``gicodec-3`` or ``gicodec-2``, by the network of the current weights, tiled;
  ``gicodec-4`` and ``gicodec-1`` files still decode): the learned group-independent codec (privcodec.codec; needs the ``learned`` extra: torch + compressai);
- ``avif`` (``avif-2``; ``avif-1`` files still decode): each group's bounding box within each
  2048-px tile as a still AV1 image (privcodec.backends.avif; Pillow only);
- ``lossless`` (``lossless-2``; ``lossless-1`` read): the same boxes as lossless WebP, bit-exact
  (``protect --lossless``).

A third (JPEG XL, a future learned model) is one more module and one line in ``BACKENDS``.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, PrivcodecError

LEARNED_EXTRA = "pip install 'privcodec[learned]'"


class _Learned:
    """privcodec.codec behind the backend interface; torch loads only when coding."""

    name = "gicodec"

    def __init__(self, codec_id: str | None = None):
        self._file_codec_id = codec_id        # the id of the file being decoded; None: what new files get

    @property
    def codec_id(self) -> str:
        from .. import codec
        return self._file_codec_id or codec.new_codec_id()

    def _codec(self):
        from .. import codec
        import importlib

        try:
            importlib.import_module("torch")
            importlib.import_module("compressai")
        except ImportError:
            raise PrivcodecError(f"the learned codec (gicodec) needs torch and compressai: {LEARNED_EXTRA}") from None
        return codec

    def model_digest(self) -> bytes:
        return self._codec().weights_digest()

    def encode_groups(self, image: np.ndarray, block_groups: np.ndarray, quality: float,
                      effort: int = 0) -> dict[int, bytes]:
        return self._codec().encode_groups(image, block_groups, quality, codec_id=self.codec_id, effort=effort)

    def decode_groups(self, streams, block_groups, height, width, quality, digest: bytes):
        from .. import codec
        weights = codec.weights_for(self.codec_id, digest)   # a clear error for a model we never had
        return self._codec().decode_groups(streams, block_groups, height, width, quality, weights=weights,
                                           codec_id=self.codec_id)


class _ImageFormat:
    """An image-format backend module (avif.py, lossless.py) bound to one of its codec ids: new files
    get the module's CODEC_ID, a file is decoded with the id in its header (and its digest checked)."""

    def __init__(self, module, codec_id: str | None = None):
        self._module = module
        self.codec_id = codec_id or module.CODEC_ID
        self.name = module.NAME

    def model_digest(self) -> bytes:
        return self._module.model_digest(self.codec_id)

    def encode_groups(self, image: np.ndarray, block_groups: np.ndarray, quality: float,
                      effort: int = 0) -> dict[int, bytes]:
        return self._module.encode_groups(image, block_groups, quality, codec_id=self.codec_id, effort=effort)

    def decode_groups(self, streams, block_groups, height, width, quality, digest: bytes | None = None):
        return self._module.decode_groups(streams, block_groups, height, width, quality, digest, codec_id=self.codec_id)


def _avif(codec_id: str | None = None):
    from PIL import features

    if not features.check("avif"):
        raise PrivcodecError("this Pillow cannot read or write AVIF: pip install 'pillow>=11.3'")
    from . import avif
    return _ImageFormat(avif, codec_id)


def _lossless(codec_id: str | None = None):
    from . import lossless
    return _ImageFormat(lossless, codec_id)


BACKENDS = {"gicodec": _Learned, "avif": _avif, "lossless": _lossless}
# The backend with the better measured Kodak BD-rate in this release (README, "Codec backends"):
# per-group AVIF, -47.5 % vs JPEG against the learned codec's -31.6 % (Kodak, 24 images); the learned codec becomes the default
# once it beats it.
DEFAULT = "avif"


def get(name: str):
    """A backend by its name (--codec)."""
    if name not in BACKENDS:
        raise PrivcodecError(f"unknown codec {name!r} (choose {', '.join(BACKENDS)})")
    return BACKENDS[name]()


def for_codec_id(codec_id: str):
    """The backend that decodes files with this codec id."""
    from .avif import CODEC_IDS as AVIF_IDS
    from .lossless import CODEC_IDS as LOSSLESS_IDS

    if codec_id in AVIF_IDS:
        return _avif(codec_id)
    if codec_id in LOSSLESS_IDS:
        return _lossless(codec_id)
    if codec_id in ("gicodec-1", "gicodec-2", "gicodec-3", "gicodec-4", "gicodec-5"):   # codec.MODEL_OF, torch-free
        return _Learned(codec_id)
    raise FormatError(f"this file was made with a codec this privcodec does not have ({codec_id}): "
                      "it needs a newer privcodec")
