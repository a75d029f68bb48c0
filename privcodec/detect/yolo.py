"""People and any COCO class: ultralytics YOLO segmentation (AGPL-3.0), offline only.

The weights are a local file the user gives (``yolo_weights=PATH``, CLI ``--yolo-weights``), e.g.
``yolov8n-seg.pt`` downloaded once elsewhere.  privcodec never downloads: a name that is not a
local file fails at once with a DetectorError naming the file to provide.  A ``.yaml`` model
config (e.g. ``yolov8n-seg.yaml``, shipped inside ultralytics) builds the network with random
weights: it finds nothing useful, but runs the real code path (tests, speed benchmarks).
"""
from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DetectorError
from ..labels import class_label
from ..masks import Detection

DEFAULT_WEIGHTS = "yolov8n-seg.pt"

# The 80 COCO classes of the stock YOLO models, spelt as policy labels (spaces -> underscores).
COCO_CLASSES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
    "surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange "
    "broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop "
    "mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors "
    "teddy_bear hair_drier toothbrush").split()


def label_of(name: str) -> str:
    return class_label(name)


class YoloDetector:
    """Runs one YOLO model once per image and keeps the requested classes.

    classes: policy labels to keep (None keeps every class the model knows).
    relabel: give every kept detection this label (plate models name their class freely).
    """

    def __init__(self, classes: list[str] | None, *, weights: str | os.PathLike | None = None,
                 min_score: float | None = None, relabel: str | None = None, name: str = "yolo"):
        self.classes = None if classes is None else [label_of(c) for c in classes]
        self.weights = os.path.expanduser(str(weights or DEFAULT_WEIGHTS))
        self.min_score = 0.25 if min_score is None else min_score   # ultralytics' own default
        self.relabel = relabel
        self.name = name

    def __call__(self, image: np.ndarray) -> list[Detection]:
        model = _load(self.weights)
        names = {i: label_of(n) for i, n in model.names.items()}
        if len(names) == len(COCO_CLASSES) and all(n.isdigit() for n in names.values()):
            names = dict(enumerate(COCO_CLASSES))    # a stock yaml config carries no names: it is COCO
        wanted = None
        if self.classes is not None:
            unknown = sorted(set(self.classes) - set(names.values()))
            if unknown:
                raise DetectorError(f"YOLO weights {self.weights} know no class {', '.join(unknown)}; "
                                    f"they know: {', '.join(sorted(names.values()))}")
            wanted = [i for i, n in names.items() if n in self.classes]
        bgr = np.ascontiguousarray(image[..., ::-1])   # ultralytics reads numpy images as BGR (cv2)
        with _keep_threads():
            result = model.predict(bgr, conf=self.min_score, classes=wanted, device="cpu",
                                   retina_masks=True, verbose=False)[0]
        h, w = image.shape[:2]
        boxes = result.boxes
        masks = None if result.masks is None else result.masks.data.cpu().numpy() > 0.5
        found = []
        for k in range(len(boxes)):
            x0, y0, x1, y1 = (float(v) for v in boxes.xyxy[k].tolist())
            mask = None
            if masks is not None and masks[k].shape == (h, w):
                mask = masks[k]
            label = self.relabel or names[int(boxes.cls[k])]
            found.append(Detection(label, float(boxes.conf[k]), (max(0.0, x0), max(0.0, y0), min(w, x1), min(h, y1)),
                                   mask=mask, source=self.name))
        return found


@contextlib.contextmanager
def _keep_threads():
    """ultralytics sets torch and OpenCV to 1 thread; give the caller back its own settings."""
    import cv2
    import torch

    n_torch, n_cv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        yield
    finally:
        torch.set_num_threads(n_torch)
        cv2.setNumThreads(n_cv)


def _undo_pillow_patch() -> None:
    """Importing ultralytics replaces PIL.Image.open process-wide with a wrapper that tries to
    pip-install pi-heif on any unreadable file; give the rest of privcodec plain Pillow back."""
    from PIL import Image

    try:
        from ultralytics.utils import patches
    except ImportError:
        return
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


@lru_cache(maxsize=4)
def _load(weights: str):
    is_config = weights.lower().endswith((".yaml", ".yml"))
    if not is_config and not Path(weights).is_file():
        raise DetectorError(
            f"YOLO weights file {weights!r} not found. privcodec works offline and never downloads "
            f"models: fetch {Path(weights).name} once (e.g. from the ultralytics releases) and pass "
            f"its path with --yolo-weights PATH (Python: yolo_weights=PATH).")
    # Before the first import: no network checks, no pip auto-install, no chatter.
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ["YOLO_VERBOSE"] = "False"
    with _keep_threads():
        try:
            from ultralytics import YOLO, settings
        except ImportError:
            raise DetectorError("ultralytics is not installed: pip install --no-deps ultralytics==8.4.190 "
                                "(its other needs: pip install 'privcodec[detect]')") from None
        _undo_pillow_patch()
        if settings.get("sync", False):
            settings.update(sync=False)           # no analytics / crash reports
        try:
            return YOLO(weights, task="segment" if is_config else None)
        except FileNotFoundError as e:
            raise DetectorError(f"YOLO model config {weights!r} not found: {e}") from None
        except Exception as e:                   # corrupt or foreign .pt files raise anything
            raise DetectorError(f"cannot load YOLO weights {weights}: {e}") from None
