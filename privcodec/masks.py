"""Semantic groups on the codec's 16-px block grid.

    detections / regions / label PNG ─▶ build_group_map ─▶ GroupMap
    (pixel masks or boxes)               (margin, shape,     (block → group index,
                                          overlaps by rank)   group class + score)

Group 0 is always the background: every block not claimed by a detection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
