"""Shared limits: one place for every bound that protects users from hostile or mistaken input."""
from __future__ import annotations

import math

QUALITY_MIN, QUALITY_MAX = 1.0, 8.0      # codec quality in a file's header and on the command line
MAX_PIXELS = 64_000_000                  # largest photo protected or viewed by default (decompression bombs)
MAX_FAILED_UNWRAPS = 4096                # failed stanza trials per key per file (x25519 stanzas are anonymous)
MAX_SCRYPT_RUNS = 8                      # distinct scrypt derivations per file and read (one per passphrase)
MIN_PASSPHRASE = 8                       # characters; shorter ones are refused when protecting


# Codecs with levels above 8 (FORMAT.md, "Core"): the AVIF backend goes on to visually lossless.
QUALITY_MAX_BY_CODEC = {"avif-1": 10.0, "avif-2": 10.0}


def quality_max(codec_id: str) -> float:
    return QUALITY_MAX_BY_CODEC.get(codec_id, QUALITY_MAX)


def valid_quality(quality: object, codec_id: str = "") -> bool:
    """The one quality rule, for writers and for readers of a header."""
    return (isinstance(quality, float) and math.isfinite(quality)
            and QUALITY_MIN <= quality <= quality_max(codec_id))
