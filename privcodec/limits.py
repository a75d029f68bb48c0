"""Shared limits: one place for every bound that protects users from hostile or mistaken input."""
from __future__ import annotations

import math

QUALITY_MIN, QUALITY_MAX = 1.0, 8.0      # codec quality in a file's header and on the command line
MAX_PIXELS = 64_000_000                  # largest photo protected or viewed by default (decompression bombs)
MAX_FAILED_UNWRAPS = 4096                # failed stanza trials per key per file (x25519 stanzas are anonymous)
MAX_SCRYPT_RUNS = 8                      # distinct scrypt derivations per file and read (one per passphrase)
MIN_PASSPHRASE = 8                       # characters; shorter ones are refused when protecting


def valid_quality(quality: object) -> bool:
    """The one quality rule, for writers and for readers of a header."""
    return isinstance(quality, float) and math.isfinite(quality) and QUALITY_MIN <= quality <= QUALITY_MAX
