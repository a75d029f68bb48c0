"""Semantic groups on the codec's 16-px block grid.

    detections / regions / label PNG ─▶ build_group_map ─▶ GroupMap
    (pixel masks or boxes)               (margin, shape,     (block → group index,
                                          overlaps by rank)   group class + score)

Group 0 is always the background: every block not claimed by a detection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .errors import DetectorError

BLOCK = 16
BACKGROUND = "background"


@dataclass(frozen=True)
class Group:
    label: str                 # class the policy matches: background, face, person, license_plate, COCO name, region label
    score: float = 1.0         # detector confidence; 1.0 for manual regions and background
    source: str = "manual"     # detector name, "manual" or "background"


@dataclass
class Detection:
    """One object found in the image, in input pixel coordinates."""
    label: str
    score: float
    box: tuple[float, float, float, float]      # x0, y0, x1, y1 (x1, y1 exclusive)
    mask: np.ndarray | None = None              # optional (H, W) bool pixel mask
    source: str = "manual"
    polygon: tuple[tuple[float, float], ...] | None = None   # optional outline (manual regions)

    def __post_init__(self):
        if not valid_class_name(self.label):
            # a look-alike ("fаce" with a Cyrillic а) would silently miss its rule and stay public
            raise DetectorError(f"class name {self.label!r} is not allowed: use 1..64 printable ASCII characters")


def valid_class_name(label: object) -> bool:
    return isinstance(label, str) and 1 <= len(label) <= 64 and label.isascii() and label.isprintable()


@dataclass
class GroupMap:
    width: int
    height: int
    blocks: np.ndarray                           # (ceil(H/16), ceil(W/16)) int32 group index per block
    groups: list[Group] = field(default_factory=lambda: [Group(BACKGROUND, 1.0, BACKGROUND)])

    @property
    def grid_shape(self) -> tuple[int, int]:
        return math.ceil(self.height / BLOCK), math.ceil(self.width / BLOCK)

    def block_mask(self, index: int) -> np.ndarray:
        return self.blocks == index

    def pixel_mask(self, index: int) -> np.ndarray:
        m = np.kron(self.block_mask(index), np.ones((BLOCK, BLOCK), dtype=bool))
        return m[: self.height, : self.width]


def background_map(width: int, height: int) -> GroupMap:
    return GroupMap(width, height, np.zeros((math.ceil(height / BLOCK), math.ceil(width / BLOCK)), dtype=np.int32))


SHAPES = ("box", "ellipse", "exact")
GROUPINGS = ("instance", "class")


def build_group_map(width: int, height: int, detections: Iterable[Detection], *,
                    margin: int | Callable[[str], int] = 8, shape: str = "box", min_size: float = 0,
                    grouping: str | Callable[[str], str] = "instance",
                    rank: Callable[[str], int] | None = None,
                    scale: float | Callable[[str], float] = 1.0) -> GroupMap:
    """Snap detections to the block grid and give every block to exactly one group.

    scale     the object's box is grown about its centre to ``scale`` times its width and height
              (or label -> scale), so the margin follows the object's size: a close-up face and
              a face in a crowd both get hair, ears and chin.  deface's default is 1.3.  The box
              is first clipped to the image (a region drawn past the edge is no bigger an object);
              an object wholly beyond the image's edge claims nothing.
    margin    a minimum, in pixels, added on every side (or label -> pixels): each side grows by
              max(margin, (scale - 1) / 2 x the clipped box's width or height).
    shape     "box": the grown box; "ellipse": the ellipse through the grown box's corners (it
              contains the whole box); "exact": the pixel mask (or polygon) dilated by the
              side growth for its shorter side, the grown box if it has neither.
    min_size  objects whose box is narrower or shorter than this many pixels are ignored.
    grouping  "instance": one group per object; "class": one group per label (or label -> either).
    rank      label -> int, lower wins a block two groups claim.  Default: labels rank in the order
              they first appear in ``detections``.  Ties (equal rank) go to the group with the smaller
              footprint in blocks, so a small object inside a big one of the same rank keeps its
              blocks; then to the earlier group.  ``rank`` must accept every label present.

    A block claimed by nobody is background (group 0); a group that loses every block disappears.
    Groups keep the order of their first detection.  A class group's score is its best score.
    More groups (background included) than a .prvc container holds is a DetectorError.
    """
    if width <= 0 or height <= 0:
        raise DetectorError(f"image size must be positive, got {width}x{height}")
    if shape not in SHAPES:
        raise DetectorError(f"shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    margin_of = margin if callable(margin) else (lambda _label: margin)
    scale_of = scale if callable(scale) else (lambda _label: scale)
    grouping_of = grouping if callable(grouping) else (lambda _label: grouping)

    groups: list[Group] = []              # candidate groups, in order of first detection
    footprints: list[np.ndarray] = []     # their claimed blocks before overlaps are resolved
    class_slot: dict[str, int] = {}
    for det in detections:
        x0, y0, x1, y1 = det.box
        if min(x1 - x0, y1 - y0) < min_size:
            continue
        how = grouping_of(det.label)
        if how not in GROUPINGS:
            raise DetectorError(f"grouping must be 'instance' or 'class', not {how!r}")
        m, k = margin_of(det.label), scale_of(det.label)
        if m < 0:
            raise DetectorError(f"margin must be >= 0 pixels, not {m}")
        if not k >= 1:
            raise DetectorError(f"scale must be >= 1, not {k}")
        fp = _footprint(det, width, height, m, shape, k)
        if not fp.any():
            continue
        # a confidence is in [0, 1] (FORMAT v4 stores it so); a detector's float rounding may not be
        group = Group(det.label, min(max(float(det.score), 0.0), 1.0), det.source)
        if how == "class" and det.label in class_slot:
            i = class_slot[det.label]
            old = groups[i]
            sources = old.source.split("+")
            source = old.source if det.source in sources else f"{old.source}+{det.source}"
            groups[i] = Group(det.label, max(old.score, group.score), source)
            footprints[i] |= fp
            continue
        if how == "class":
            class_slot[det.label] = len(groups)
        groups.append(group)
        footprints.append(fp)

    if rank is None:
        first: dict[str, int] = {}
        for g in groups:
            first.setdefault(g.label, len(first))
        rank = first.__getitem__
    order = sorted(range(len(groups)), key=lambda i: (rank(groups[i].label), int(footprints[i].sum()), i))
    owner = np.zeros(footprints[0].shape if footprints else (0, 0), dtype=np.int32)
    for i in reversed(order):             # paint the weakest first so the strongest ends on top
        owner[footprints[i]] = i + 1

    gm = background_map(width, height)
    for i, g in enumerate(groups):
        won = owner == i + 1
        if won.any():
            gm.groups.append(g)
            gm.blocks[won] = len(gm.groups) - 1
    _check_group_count(len(gm.groups))
    return gm


def _check_group_count(n: int) -> None:
    from .container import MAX_GROUPS   # here, not at the top: importing masks stays cheap

    if n > MAX_GROUPS:
        raise DetectorError(f"too many groups ({n}); the container holds at most {MAX_GROUPS}")


def _footprint(det: Detection, width: int, height: int, margin: int, shape: str, scale: float = 1.0) -> np.ndarray:
    """(grid_h, grid_w) bool: blocks that hold at least one pixel of the grown shape inside the image."""
    grid = np.zeros((math.ceil(height / BLOCK), math.ceil(width / BLOCK)), dtype=bool)
    exact_mask = shape == "exact" and det.mask is not None
    exact_poly = shape == "exact" and det.mask is None and det.polygon is not None
    if exact_mask:
        if det.mask.shape != (height, width):
            raise DetectorError(f"{det.label} mask is {det.mask.shape[1]}x{det.mask.shape[0]}, "
                                f"image is {width}x{height}")
        ys, xs = np.nonzero(det.mask)
        if len(xs) == 0:
            # an empty mask says nothing about where the object is, but its box does: an object
            # must never vanish (and stay public) because its outline was lost
            exact_mask, box = False, det.box
        else:
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    elif exact_poly:
        pts = np.asarray(det.polygon, dtype=np.float64)
        box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    else:
        box = det.box
    # The object's size is that of its box inside the image: a region drawn past the photo's edge
    # (300,300,4000,4000 on a 512 px photo) is no bigger an object for it, and growing the drawn box
    # would claim the whole photo.  Detectors clip their boxes already.  Wholly beyond the edge: nothing.
    if box[2] < 0 or box[3] < 0 or box[0] > width or box[1] > height:
        return grid
    box = (min(max(box[0], 0), width), min(max(box[1], 0), height),
           min(max(box[2], 0), width), min(max(box[3], 0), height))
    grow_x = max(margin, (scale - 1) / 2 * (box[2] - box[0]))
    grow_y = max(margin, (scale - 1) / 2 * (box[3] - box[1]))
    if shape == "ellipse":   # the ellipse through the grown box's corners: sqrt(2) times its half-axes
        hx, hy = ((box[2] - box[0]) / 2 + grow_x) * math.sqrt(2), ((box[3] - box[1]) / 2 + grow_y) * math.sqrt(2)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        gx0, gy0, gx1, gy1 = cx - hx, cy - hy, cx + hx, cy + hy
    else:
        gx0, gy0, gx1, gy1 = box[0] - grow_x, box[1] - grow_y, box[2] + grow_x, box[3] + grow_y
    margin = min(grow_x, grow_y)           # the dilation of exact masks and polygons
    px0, py0 = max(0, math.floor(gx0)), max(0, math.floor(gy0))
    px1, py1 = min(width, math.ceil(gx1)), min(height, math.ceil(gy1))
    if px1 <= px0 or py1 <= py0:
        return grid                       # entirely outside the image (or empty)
    bx0, by0, bx1, by1 = px0 // BLOCK, py0 // BLOCK, math.ceil(px1 / BLOCK), math.ceil(py1 / BLOCK)
    if shape == "box" or (shape == "exact" and not (exact_mask or exact_poly)):
        grid[by0:by1, bx0:bx1] = True
        return grid

    # Rasterise the shape on the pixels of the block window only (cheap on large photos).
    ox, oy = bx0 * BLOCK, by0 * BLOCK
    win_w, win_h = (bx1 - bx0) * BLOCK, (by1 - by0) * BLOCK
    if shape == "ellipse":
        cx, cy = (gx0 + gx1) / 2 - ox, (gy0 + gy1) / 2 - oy
        rx, ry = max((gx1 - gx0) / 2, 0.5), max((gy1 - gy0) / 2, 0.5)
        xs = (np.arange(win_w) + 0.5 - cx) / rx
        ys = (np.arange(win_h) + 0.5 - cy) / ry
        pix = xs[None, :] ** 2 + ys[:, None] ** 2 <= 1.0
    else:
        import cv2

        pix = np.zeros((win_h, win_w), dtype=np.uint8)
        if exact_mask:
            h, w = min(win_h, height - oy), min(win_w, width - ox)
            pix[:h, :w] = det.mask[oy:oy + h, ox:ox + w]
        else:
            pts = np.round(np.asarray(det.polygon, dtype=np.float64) - (ox, oy)).astype(np.int32)
            cv2.fillPoly(pix, [pts], 1)
        if margin > 0:
            k = 2 * math.ceil(margin) + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            pix = cv2.dilate(pix, kernel)
        pix = pix.astype(bool)
    pix[max(0, height - oy):, :] = False  # pixels past the image edge claim nothing
    pix[:, max(0, width - ox):] = False
    blocks = pix.reshape(by1 - by0, BLOCK, bx1 - bx0, BLOCK).any(axis=(1, 3))
    grid[by0:by1, bx0:bx1] = blocks
    return grid


_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def render_preview(image: np.ndarray, group_map: GroupMap):
    """The photo with each group's blocks tinted and outlined and its class written on it."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = group_map.height, group_map.width
    if image.shape[:2] != (h, w):
        raise DetectorError(f"image is {image.shape[1]}x{image.shape[0]}, group map is {w}x{h}")
    rgb = np.asarray(image, dtype=np.float32)
    rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
    idx = np.kron(group_map.blocks, np.ones((BLOCK, BLOCK), dtype=np.int32))[:h, :w]
    colours = np.array([(0, 0, 0)] + [_PALETTE[(i - 1) % len(_PALETTE)]
                                      for i in range(1, len(group_map.groups))], dtype=np.float32)
    tint = idx > 0
    rgb[tint] = 0.6 * rgb[tint] + 0.4 * colours[idx[tint]]
    # Outline: a pixel whose neighbour (2 px away) belongs to another group.
    pad = np.pad(idx, 2, mode="edge")
    edge = np.zeros_like(tint)
    for dy, dx in ((-2, 0), (2, 0), (0, -2), (0, 2)):
        edge |= pad[2 + dy:2 + dy + h, 2 + dx:2 + dx + w] != idx
    edge &= tint
    rgb[edge] = colours[idx[edge]]
    out = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(out)
    try:
        font = ImageFont.load_default(size=max(11, min(w, h) // 40))
    except TypeError:                     # Pillow without FreeType: fixed bitmap font
        font = ImageFont.load_default()
    for i, g in enumerate(group_map.groups[1:], start=1):
        rows, cols = np.nonzero(group_map.blocks == i)
        x, y = int(cols[rows == rows.min()].min()) * BLOCK, int(rows.min()) * BLOCK
        text = f"{i} {g.label} {g.score:.2f}"
        l, t, r, b = draw.textbbox((x + 2, y + 2), text, font=font)
        draw.rectangle((l - 2, t - 2, r + 2, b + 2), fill=tuple(int(c) for c in colours[i]))
        draw.text((x + 2, y + 2), text, fill=(0, 0, 0), font=font)
    return out
