"""Licence plates with OpenCV's Haar cascade (ships in opencv-python-headless; BSD/Apache-2.0).

It was trained on Russian plates and finds frontal, fairly large, high-contrast plates; it misses
many others.  With plate weights, ``plate:yolo`` (see yolo.py) is the better choice.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import DetectorError
from ..masks import Detection

CASCADE = "haarcascade_russian_plate_number.xml"


class PlateCascade:
    name = "plate:cascade"

    def __init__(self, min_neighbors: int = 4):
        self.min_neighbors = min_neighbors

    def __call__(self, image: np.ndarray) -> list[Detection]:
        import cv2

        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(40, 12))
        # A cascade gives no confidence, only yes/no: score 1.0.
        return [Detection("license_plate", 1.0, (float(x), float(y), float(x + w), float(y + h)), source=self.name)
                for x, y, w, h in np.reshape(boxes, (-1, 4))]


@lru_cache(maxsize=1)
def _cascade():
    import cv2

    path = cv2.data.haarcascades + CASCADE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise DetectorError(f"OpenCV plate cascade {path} is missing: reinstall opencv-python-headless")
    return cascade
