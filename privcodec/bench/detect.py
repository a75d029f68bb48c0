"""Detector benchmark: time per image per detector, and face recall / false positives.

    python -m privcodec.bench.detect [--detect face:mtcnn,plate] [--repeat 3] [--yolo-weights W] [--threads N]

Photos come from installed packages (public domain): scikit-image's astronaut, camera, coffee,
chelsea, rocket and hubble_deep_field, matplotlib's grace_hopper.jpg.  The face boxes below were
drawn by hand (eyebrows to chin, cheek to cheek).  The "crowd" image pastes the three portraits at
three sizes onto the rocket photo (faces 17-117 px high); "dark" and "tilted" are the portraits
darkened to 35 % and rotated 20 degrees.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

FACES = {  # hand-drawn face boxes x0, y0, x1, y1
    "astronaut": [(182, 68, 268, 172)],
    "grace_hopper": [(178, 135, 356, 330)],
    "camera": [(196, 112, 256, 196)],
}
NEGATIVES = ("coffee", "chelsea", "rocket", "hubble")
FACE_DETECTORS = ("face:centerface", "face:mtcnn", "face:mediapipe")


def photo(name: str) -> np.ndarray:
    """One of the sample photos as RGB uint8."""
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
            return np.asarray(im.convert("RGB"))
    import skimage.data

    img = getattr(skimage.data, "hubble_deep_field" if name == "hubble" else name)()
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def face_set() -> dict[str, tuple[np.ndarray, list]]:
    """name -> (image, face boxes): portraits, harder variants and negatives (no faces)."""
    import cv2

    out = {n: (photo(n), boxes) for n, boxes in FACES.items()}
    for n, (img, boxes) in list(out.items()):
        out[f"{n}-dark"] = ((img * 0.35).astype(np.uint8), boxes)
        h, w = img.shape[:2]
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)
        tilted = cv2.warpAffine(img, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
        out[f"{n}-tilted"] = (tilted, [_rotate_box(b, rot) for b in boxes])
    out["crowd"] = _crowd()
    for n in NEGATIVES:
        out[n] = (photo(n), [])
    return out


def _rotate_box(box, rot):
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ rot.T
    # The rotated rectangle's bounds overstate the face: shrink them to the same area.
    cx, cy = pts.mean(axis=0)
    hw, hh = (x1 - x0) / 2, (y1 - y0) / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def _crowd():
    import cv2

    canvas = cv2.resize(photo("rocket"), (1280, 853), interpolation=cv2.INTER_AREA)
    boxes = []
    y = 10
    for scale in (0.6, 0.35, 0.2):
        x = 10
        for n, faces in FACES.items():
            img = photo(n)
            small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            h, w = small.shape[:2]
            canvas[y:y + h, x:x + w] = small
            boxes += [tuple(v * scale + o for v, o in zip(b, (x, y, x, y))) for b in faces]
            x += 426
        y += int(600 * scale) + 8
    return canvas, boxes


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _time(detector, image, repeat: int) -> tuple[float, list]:
    times, found = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        found = detector(image)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, found


def face_accuracy(names=FACE_DETECTORS, repeat: int = 1) -> list[dict]:
    """Per face detector: faces found (IoU >= 0.3), false positives, mean ms per image."""
    from ..detect import get_detector

    images = face_set()
    rows = []
    for name in names:
        det = get_detector(name)
        det(images["coffee"][0])                        # load the model outside the timing
        hit = total = false_pos = fp_negatives = 0
        ms = []
        missed = []
        for img_name, (img, faces) in images.items():
            t, found = _time(det, img, repeat)
            ms.append(t)
            matched = [any(_iou(f.box, g) >= 0.3 for f in found) for g in faces]
            hit += sum(matched)
            total += len(faces)
            missed += [img_name] * (len(faces) - sum(matched))
            fp = sum(not any(_iou(f.box, g) >= 0.3 for g in faces) for f in found)
            false_pos += fp
            fp_negatives += fp if not faces else 0
        rows.append({"detector": name, "found": hit, "faces": total, "false_pos": false_pos,
                     "fp_on_negatives": fp_negatives, "mean_ms": statistics.mean(ms), "missed": missed})
    return rows


def detection_times(names, images: dict[str, np.ndarray], repeat: int = 3, **options) -> list[dict]:
    """Per detector: load time and median ms per image (or the error that stopped it)."""
    from ..detect import get_detector
    from ..errors import DetectorError

    rows = []
    for name in names:
        row = {"detector": name, "load_ms": None, "ms": {}, "found": {}, "error": None}
        try:
            det = get_detector(name, **options)
            t = time.perf_counter()
            det(next(iter(images.values())))            # first call loads the model
            row["load_ms"] = (time.perf_counter() - t) * 1000
            for img_name, img in images.items():
                row["ms"][img_name], found = _time(det, img, repeat)
                row["found"][img_name] = len(found)
        except DetectorError as e:
            row["error"] = str(e)
        rows.append(row)
    return rows


def main(argv=()) -> None:
    """Print the tables.  ``argv`` defaults to no options (``privcodec bench detect`` calls main())."""
    import cv2
    import torch

    p = argparse.ArgumentParser(prog="privcodec bench detect", description=__doc__.splitlines()[0])
    p.add_argument("--detect", default="face:centerface,face:mtcnn,face:mediapipe,plate,person")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--yolo-weights", default="yolov8n-seg.yaml",
                   help="default: the yaml config, random weights (speed only)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the face recall table")
    p.add_argument("--threads", type=int, help="torch and OpenCV threads (default: as set)")
    args = p.parse_args(list(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)

    names = [n.strip() for n in args.detect.split(",") if n.strip()]
    images = {n: photo(n) for n in ("astronaut", "grace_hopper", "coffee", "chelsea")}
    print(f"Detection time, median of {args.repeat} runs, ms per image (objects found); "
          f"CPU, torch threads {torch.get_num_threads()}, OpenCV threads {cv2.getNumThreads()}")
    head = f"{'detector':<16} {'load':>7}" + "".join(f" {n:>14}" for n in images)
    print(head + "\n" + "-" * len(head))
    for r in detection_times(names, images, args.repeat, yolo_weights=args.yolo_weights):
        if r["error"]:
            print(f"{r['detector']:<16} unavailable: {r['error']}")
            continue
        cells = "".join(f" {r['ms'][n]:>9.1f} ({r['found'][n]})" for n in images)
        print(f"{r['detector']:<16} {r['load_ms']:>7.0f}{cells}")
    if "person" in names and args.yolo_weights.endswith(".yaml"):
        print("(person: random weights from the yaml config, so timing only)")

    if not args.no_accuracy:
        faces = [n for n in names if n.startswith("face")] or list(FACE_DETECTORS)
        print("\nFace recall: portraits, dark, tilted and a crowd (faces 17-195 px); negatives: "
              + ", ".join(NEGATIVES))
        head = f"{'detector':<16} {'found':>8} {'false pos':>10} {'on negatives':>13} {'mean ms':>8}  missed"
        print(head + "\n" + "-" * len(head))
        for r in face_accuracy(faces):
            print(f"{r['detector']:<16} {r['found']:>3}/{r['faces']:<4} {r['false_pos']:>10} "
                  f"{r['fp_on_negatives']:>13} {r['mean_ms']:>8.1f}  {', '.join(r['missed']) or '-'}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
