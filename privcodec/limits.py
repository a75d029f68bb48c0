"""Shared limits: one place for every bound that protects users from hostile or mistaken input."""
from __future__ import annotations

import math

QUALITY_MIN, QUALITY_MAX = 1.0, 8.0      # codec quality in a file's header and on the command line
# Encoder effort: 0 (the default) .. 2 (slowest, fewest bits).  Only the encoder works harder:
# files decode the same way whatever the effort (each backend says what a level buys).
EFFORT_LEVELS = (0, 1, 2)
MAX_PIXELS = 64_000_000                  # largest photo protected or viewed by default (decompression bombs)
MAX_FAILED_UNWRAPS = 4096                # failed stanza trials per key per file (x25519 stanzas are anonymous)
MAX_SCRYPT_RUNS = 8                      # distinct scrypt derivations per file and read (one per passphrase)
MIN_PASSPHRASE = 8                       # characters; shorter ones are refused when protecting
# Every backend codes each group on its bounding box (within a tile), so the work is the sum of the
# boxes' areas: a file whose groups' boxes cover a tile more than this many times is refused (two
# blocks in opposite corners make a 1-block group cost a whole tile; 4096 of them, hours).
MAX_BOX_COVER = 32
# The untiled gicodec-1 keeps each decoded group's side information over the whole grid:
# groups x blocks is bounded (about 512 MiB of it).
MAX_GROUP_BLOCKS_UNTILED = 1 << 24
# A key holder gets each opened protected group's block mask over the whole grid: protected groups x
# cells is bounded (128 MiB of masks: 32 groups on the largest grid; a 12 MP photo's 47,628 cells, 2,800).
MAX_GROUP_CELLS = 1 << 27
# Regions given as pixel masks (a label image's values, a regions file's mask_rle) are held as
# full-size masks while the groups are made: regions x pixels is bounded (2 GiB of masks: 176
# regions on a 4032x3024 photo, 8,192 on a 512x512 one).
MAX_REGION_MASK_PIXELS = 1 << 31


# Codecs with levels above 8 (FORMAT.md, "Core"): the AVIF backend goes on to visually lossless.
QUALITY_MAX_BY_CODEC = {"avif-1": 10.0, "avif-2": 10.0}


def names_weights(digest: bytes, weights_id: bytes) -> bool:
    """The one rule for a header's weights id: the weights' SHA-256 ``digest`` cut to 16 bytes
    (FORMAT v4) or whole (v1-v3); no other length names anything."""
    return len(weights_id) in (16, 32) and digest.startswith(weights_id)


def quality_max(codec_id: str) -> float:
    return QUALITY_MAX_BY_CODEC.get(codec_id, QUALITY_MAX)


def valid_quality(quality: object, codec_id: str = "") -> bool:
    """The one quality rule, for writers and for readers of a header."""
    return (isinstance(quality, float) and math.isfinite(quality)
            and QUALITY_MIN <= quality <= quality_max(codec_id))
