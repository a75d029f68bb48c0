"""Tiled coding: any group-independent coder run tile by tile, so memory is bounded by the tile,
not the photo, and time is linear in pixels (codec ids gicodec-2 to gicodec-5, avif-2, lossless-2).

    block grid ─▶ tiles of `tile` x `tile` blocks, raster order (the last row/column cut by the image)
    each tile ─▶ the coder on the tile alone (a tile edge is an image edge, so also a group edge)
    group stream = for each tile holding blocks of the group, in raster order:
        U32 framing:     u32 length ‖ tile stream
        UVARINT framing: uvarint length ‖ tile stream, but the last tile's stream alone (its
                         length is what is left: a one-tile photo carries no framing at all)

A group's stream still depends only on its own pixels and block mask (the tiling is fixed by the
image size), and any subset of groups decodes alone, bit for bit: each tile is an independent
image to the coder.  The decoder knows which tiles a group has blocks in (its block mask), so the
framing carries lengths only, and must account for every byte.  FORMAT.md, "Codec streams".
"""
from __future__ import annotations

import struct
from typing import Callable, Iterator

import numpy as np

from . import varint

BLOCK = 16
U32, UVARINT = "u32", "uvarint"   # framings (FORMAT.md, "Codec streams")


def tiles(rows: int, cols: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) block ranges of the tiles, in raster order."""
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            yield r0, min(rows, r0 + tile), c0, min(cols, c0 + tile)


def box_cover(grid: np.ndarray, groups=None) -> float:
    """Sum of the bounding-box areas of ``groups`` (default: every id >= 0) in ``grid``, over the
    grid's area: the work of coding them, in whole-grid passes."""
    grid = np.asarray(grid)
    rows, cols = np.indices(grid.shape)
    ids = grid.ravel()
    keep = ids >= 0 if groups is None else np.isin(ids, np.fromiter(groups, dtype=np.int64))
    ids, rows, cols = ids[keep], rows.ravel()[keep], cols.ravel()[keep]
    if ids.size == 0:
        return 0.0
    uniq, inv = np.unique(ids, return_inverse=True)
    lo_r, hi_r = np.full(uniq.size, grid.shape[0]), np.zeros(uniq.size, np.int64)
    lo_c, hi_c = np.full(uniq.size, grid.shape[1]), np.zeros(uniq.size, np.int64)
    np.minimum.at(lo_r, inv, rows)
    np.maximum.at(hi_r, inv, rows + 1)
    np.minimum.at(lo_c, inv, cols)
    np.maximum.at(hi_c, inv, cols + 1)
    return float(((hi_r - lo_r) * (hi_c - lo_c)).sum()) / grid.size


def check_work(grid: np.ndarray, groups=None, *, encoding: bool = False) -> None:
    """Refuse to code ``groups`` on this grid (one tile, or an untiled image) if it would cost more
    than limits.MAX_BOX_COVER passes over it: ValueError for a file (hostile or corrupt), a clean
    PrivcodecError for a photo being protected (the writer never makes a file readers refuse)."""
    from .errors import PrivcodecError
    from .limits import MAX_BOX_COVER

    if box_cover(grid, groups) <= MAX_BOX_COVER:
        return
    if encoding:
        raise PrivcodecError(f"the photo's groups overlap too much to code (their boxes cover one area more "
                             f"than {MAX_BOX_COVER} times): use fewer regions, or grouping = \"class\" in the policy")
    raise ValueError(f"the groups' boxes cover the image more than {MAX_BOX_COVER} times over")


def encode(image: np.ndarray, grid: np.ndarray, compress: Callable, tile: int, framing: str = U32) -> dict[int, bytes]:
    """image: uint8 (H, W, 3); grid: group ids >= 0 per block; compress(tile pixels, tile grid) ->
    {group: stream} codes one tile.  Returns {group: framed stream}."""
    from . import progress

    height, width = image.shape[:2]
    parts: dict[int, list[bytes]] = {}
    boxes = list(tiles(*grid.shape, tile))
    for r0, r1, c0, c1 in boxes:
        check_work(grid[r0:r1, c0:c1], encoding=True)   # before any coding: readers would refuse the file
    for r0, r1, c0, c1 in boxes:
        pixels = image[r0 * BLOCK:min(height, r1 * BLOCK), c0 * BLOCK:min(width, c1 * BLOCK)]
        for group, stream in compress(pixels, grid[r0:r1, c0:c1]).items():
            parts.setdefault(int(group), []).append(stream)
        progress.advance(len(boxes))
    return {g: join(p, framing) for g, p in parts.items()}


def join(parts: list[bytes], framing: str = U32) -> bytes:
    """A group's tile streams (raster order) -> its framed stream."""
    if any(not p for p in parts):
        raise ValueError("empty tile stream")
    if framing == U32:
        return b"".join(struct.pack(">I", len(p)) + p for p in parts)
    return b"".join(varint.encode(len(p)) + p for p in parts[:-1]) + parts[-1]


def split(stream: bytes, count: int, framing: str = U32) -> list[bytes]:
    """A group's framed stream -> its ``count`` tile streams; ValueError unless it is exactly that."""
    out, pos = [], 0
    for k in range(count):
        if framing == UVARINT and k == count - 1:
            n = len(stream) - pos
        elif framing == UVARINT:
            n, pos = varint.decode(stream, pos)
        else:
            if pos + 4 > len(stream):
                raise ValueError("truncated tiled stream")
            (n,) = struct.unpack_from(">I", stream, pos)
            pos += 4
        if n == 0 or pos + n > len(stream):
            raise ValueError("bad tile length")
        out.append(stream[pos:pos + n])
        pos += n
    if pos != len(stream):
        raise ValueError("trailing bytes in tiled stream")
    return out


def decode(streams: dict[int, bytes], grid: np.ndarray, height: int, width: int, decompress: Callable,
           tile: int, workers: int = 1, framing: str = U32) -> tuple[np.ndarray, np.ndarray]:
    """grid: group ids, negative where unknown; decompress(tile streams, tile grid, h, w) -> (uint8
    (h, w, 3), bool (h, w)) decodes one tile.  Returns (uint8 image, decoded-pixel mask).

    ``workers`` > 1 decodes that many tiles side by side in threads (``decompress`` must be
    thread-safe); at most ``workers`` tiles are in flight or waiting to be placed, so memory grows
    by a tile's worth per worker, not with the photo."""
    boxes = list(tiles(*grid.shape, tile))
    present = [set(np.unique(grid[r0:r1, c0:c1]).tolist()) for r0, r1, c0, c1 in boxes]   # one pass over the grid
    per_group = {}
    for g, stream in streams.items():
        holding = [i for i, groups in enumerate(present) if g in groups]
        if not holding:
            raise ValueError("group has no blocks")
        per_group[g] = dict(zip(holding, split(stream, len(holding), framing)))   # all framing checked before decoding
    for i, (r0, r1, c0, c1) in enumerate(boxes):
        check_work(grid[r0:r1, c0:c1], [g for g, parts in per_group.items() if i in parts])
    from . import progress

    image = np.zeros((height, width, 3), dtype=np.uint8)
    known = np.zeros((height, width), dtype=bool)
    jobs = []   # (y0, x0, h, w, the tile's streams, its grid)
    for i, (r0, r1, c0, c1) in enumerate(boxes):
        tile_streams = {g: parts[i] for g, parts in per_group.items() if i in parts}
        y0, x0 = r0 * BLOCK, c0 * BLOCK
        jobs.append((y0, x0, min(height, r1 * BLOCK) - y0, min(width, c1 * BLOCK) - x0, tile_streams,
                     grid[r0:r1, c0:c1]))

    def place(job, result) -> None:
        y0, x0, h, w = job[:4]
        progress.advance(len(boxes))
        if result is not None:
            pixels, decoded = result
            image[y0:y0 + h, x0:x0 + w][decoded] = pixels[decoded]
            known[y0:y0 + h, x0:x0 + w] |= decoded

    def run(job):
        _, _, h, w, tile_streams, tile_grid = job
        return decompress(tile_streams, tile_grid, h, w) if tile_streams else None

    if workers <= 1:
        for job in jobs:
            place(job, run(job))
        return image, known
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        window: deque = deque()
        for job in jobs:
            window.append((job, pool.submit(run, job)))
            if len(window) >= workers:
                head, future = window.popleft()
                place(head, future.result())
        while window:
            head, future = window.popleft()
            place(head, future.result())
    return image, known
