"""Manual regions: boxes, polygons, a label PNG, and the regions JSON file.

The JSON schema is what ``privcodec detect --json`` writes and what ``--regions`` reads back::

    {"format": "privcodec-regions", "version": 1, "width": 512, "height": 512,
     "regions": [
       {"label": "face", "score": 0.99, "source": "face:mediapipe", "box": [x0, y0, x1, y1]},
       {"label": "person", "score": 0.8, "source": "yolo", "box": [...], "mask_rle": [0, 5, 3, ...]},
       {"label": "sign", "polygon": [[x, y], [x, y], [x, y]]}
     ]}

``box`` is in pixels, x1/y1 exclusive.  ``mask_rle`` is an exact pixel mask: run lengths over the
image's pixels in row-major order, alternating off/on and starting with an "off" run (possibly 0).
A region needs a box or a polygon (its box is then the polygon's bounds); score and source are
optional (1.0, "manual").
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DetectorError, ImageError
from ..masks import Detection

FORMAT = "privcodec-regions"
VERSION = 1


def _numbers(values, count: int | None, what: str, label: str) -> tuple[float, ...]:
    """Finite floats from ``values`` (exactly ``count`` of them when given), else DetectorError."""
    try:
        nums = tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        raise DetectorError(f"region {label!r}: {what} must be numbers") from None
    if count is not None and len(nums) != count:
        raise DetectorError(f"region {label!r}: {what} needs {count} numbers, got {len(nums)}")
    if not all(math.isfinite(v) for v in nums):
        raise DetectorError(f"region {label!r}: {what} has a non-finite coordinate (inf or nan)")
    return nums


def region_from_box(box, label: str = "region") -> Detection:
    x0, y0, x1, y1 = _numbers(box, 4, "box", label)
    if not (x1 > x0 and y1 > y0):
        raise DetectorError(f"region {label!r}: box {x0:g},{y0:g},{x1:g},{y1:g} is empty (need x0<x1, y0<y1)")
    return Detection(label, 1.0, (x0, y0, x1, y1))


def region_from_polygon(points, label: str = "region") -> Detection:
    try:
        pts = tuple(_numbers(p, 2, "polygon point", label) for p in points)
    except TypeError:
        raise DetectorError(f"region {label!r}: a polygon is a list of [x, y] points") from None
    if len(pts) < 3:
        raise DetectorError(f"region {label!r}: a polygon needs at least 3 points, got {len(pts)}")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    # shoelace: a polygon whose points lie on one line covers nothing, so it would protect nothing
    area = abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(pts)))) / 2
    if area == 0:
        raise DetectorError(f"region {label!r}: the polygon has zero area (its points lie on one line)")
    return Detection(label, 1.0, (min(xs), min(ys), max(xs), max(ys)), polygon=pts)


def parse_regions(specs: Iterable) -> list[Detection]:
    """CLI regions: "x0,y0,x1,y1[:label]" (a box) or "x,y,x,y,x,y,...[:label]" (a polygon).

    The API's form of a box is a tuple (x0, y0, x1, y1) or (x0, y0, x1, y1, label): corners as on
    the command line, not a width and height; the label defaults to "region" as there.
    Detections pass through unchanged.
    """
    found = []
    for spec in specs:
        if isinstance(spec, Detection):
            found.append(spec)
            continue
        if not isinstance(spec, str):
            found.append(_region_from_tuple(spec))
            continue
        coords, _, label = spec.partition(":")
        label = label.strip() or "region"
        try:
            nums = [float(v) for v in coords.split(",")]
        except ValueError:
            raise DetectorError(f"bad region {spec!r}: expected x0,y0,x1,y1[:label] in pixels") from None
        if len(nums) == 4:
            found.append(region_from_box(nums, label))
        elif len(nums) >= 6 and len(nums) % 2 == 0:
            found.append(region_from_polygon(zip(nums[0::2], nums[1::2]), label))
        else:
            raise DetectorError(f"bad region {spec!r}: give 4 numbers (a box) or 3+ x,y pairs (a polygon)")
    return found


def _region_from_tuple(spec) -> Detection:
    """(x0, y0, x1, y1) or (x0, y0, x1, y1, label): --region x0,y0,x1,y1[:label] as a tuple."""
    if isinstance(spec, (bytes, bytearray, memoryview)) or not isinstance(spec, Iterable):
        raise DetectorError(f"a region is \"x0,y0,x1,y1[:label]\", (x0, y0, x1, y1[, label]) or a Detection, "
                            f"not {type(spec).__name__} (regions= takes a list of them)")
    values = list(spec)
    label = "region"
    if len(values) == 5:
        label = values.pop()
        if not isinstance(label, str):
            raise DetectorError(f"a region's label must be text (the class the policy matches), "
                                f"not {type(label).__name__}")
        label = label.strip() or "region"     # as the CLI reads "x0,y0,x1,y1:"
    return region_from_box(values, label)


def regions_from_label_png(source, width: int, height: int, labels: dict[int, str] | None = None) -> list[Detection]:
    """Each non-zero value of a single-channel label image (path or array) becomes one region.

    ``labels`` maps values to class labels; unmapped values are labelled "region".
    """
    if isinstance(source, np.ndarray):
        arr = source
    else:
        arr = _read_label_image(source, width, height)
    if arr.ndim != 2:
        raise ImageError(f"label image must be single-channel, got shape {arr.shape}")
    if arr.shape != (height, width):
        raise ImageError(f"label image is {arr.shape[1]}x{arr.shape[0]}, the photo is {width}x{height}")
    values = [v for v in np.unique(arr) if v != 0]
    _check_mask_memory(len(values), width, height, "label image values")
    found = []
    for value in values:
        mask = arr == value
        ys, xs = np.nonzero(mask)
        label = (labels or {}).get(int(value), "region")
        found.append(Detection(label, 1.0, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                               mask=mask))
    return found


def _check_mask_memory(n_masks: int, width: int, height: int, what: str) -> None:
    from ..limits import MAX_REGION_MASK_PIXELS

    if n_masks * width * height > MAX_REGION_MASK_PIXELS:
        raise DetectorError(f"too many {what} ({n_masks}): a {width}x{height} photo takes at most "
                            f"{MAX_REGION_MASK_PIXELS // (width * height)} regions given as masks")


def _read_label_image(source, width: int, height: int) -> np.ndarray:
    from ..imageio import open_untrusted

    with open_untrusted(source, str(source), what="label image") as im:
        if im.mode not in ("1", "L", "P", "I", "I;16"):
            raise ImageError(f"{source}: a label PNG must be single-channel (L or P), not {im.mode}")
        if im.size != (width, height):
            raise ImageError(f"label image is {im.width}x{im.height}, the photo is {width}x{height}")
        return np.asarray(im)


def _rle_encode(mask: np.ndarray) -> list[int]:
    flat = np.concatenate([[False], mask.ravel(), [not mask.ravel()[-1]]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    return np.diff(np.concatenate([[0], changes])).tolist()


def _rle_decode(counts, width: int, height: int) -> np.ndarray:
    cells = width * height
    try:
        counts = np.asarray(counts, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DetectorError("mask_rle must be a list of whole numbers") from None
    # Each count is checked on its own before the sum, so huge counts cannot wrap the int64 sum around.
    if counts.ndim != 1 or (counts < 0).any() or (counts > cells).any() or counts.sum() != cells:
        raise DetectorError(f"mask_rle does not add up to {width}x{height} pixels")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(height, width)


def regions_to_json(detections: Iterable[Detection], width: int, height: int) -> str:
    regions = []
    for d in detections:
        r = {"label": d.label, "score": round(float(d.score), 4), "source": d.source,
             "box": [round(float(v), 2) for v in d.box]}
        if d.polygon is not None:
            r["polygon"] = [[float(x), float(y)] for x, y in d.polygon]
        if d.mask is not None:
            r["mask_rle"] = _rle_encode(d.mask)
        regions.append(r)
    head = json.dumps({"format": FORMAT, "version": VERSION, "width": int(width), "height": int(height)})
    # One region per line: readable and diffable, even with long mask run lengths.
    body = ",\n".join("  " + json.dumps(r) for r in regions)
    return head[:-1] + ', "regions": [\n' + body + ("\n" if regions else "") + "]}\n"


def regions_from_json(text: str, width: int | None = None, height: int | None = None) -> list[Detection]:
    """Parse a regions document; with width/height given, check it was made for that image size."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DetectorError(f"regions file is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DetectorError(f"not a regions file (expected \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise DetectorError(f"regions file version {doc.get('version')!r} is not supported (expected {VERSION})")
    w, h = doc.get("width"), doc.get("height")
    if not (type(w) is int and type(h) is int and w > 0 and h > 0):   # not bool: true is not a width
        raise DetectorError("regions file needs positive integer width and height")
    if width is not None and (w, h) != (width, height):
        raise DetectorError(f"regions file is for a {w}x{h} image, this one is {width}x{height}")
    regions = doc.get("regions", [])
    if not isinstance(regions, list):
        raise DetectorError(f"\"regions\" must be a list of region objects, not {type(regions).__name__}")
    _check_mask_memory(sum(isinstance(r, dict) and "mask_rle" in r for r in regions), w, h, "regions with a mask_rle")
    found = []
    for n, r in enumerate(regions, start=1):
        if not isinstance(r, dict):
            raise DetectorError(f"region {n}: must be an object like {{\"box\": [x0, y0, x1, y1]}}, "
                                f"not {type(r).__name__}")
        try:
            label = r.get("label", "region")
            if not isinstance(label, str):
                raise DetectorError(f"\"label\" must be a string, not {type(label).__name__}")
            if "polygon" in r:
                d = region_from_polygon(r["polygon"], label)
                if "box" in r:   # checked as a lone box is
                    d.box = region_from_box(r["box"], label).box
            else:
                d = region_from_box(r["box"], label)
            d.score = _score(r.get("score", 1.0))
            d.source = str(r.get("source", "manual"))
            if "mask_rle" in r:
                d.mask = _rle_decode(r["mask_rle"], w, h)
        except DetectorError as e:
            raise DetectorError(f"region {n}: {e}") from None
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            raise DetectorError(f"region {n}: needs \"box\": [x0, y0, x1, y1] or \"polygon\": [[x, y], ...]") from None
        found.append(d)
    return found


def _score(value) -> float:
    score = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            score = float(value)
        except OverflowError:            # an integer too large for a float
            pass
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        shown = repr(value) if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else type(value).__name__
        raise DetectorError(f"score must be a number from 0 to 1, not {shown}")
    return score


def write_regions_json(path, detections: Iterable[Detection], width: int, height: int) -> None:
    Path(path).write_text(regions_to_json(detections, width, height), encoding="utf-8")


def read_regions_json(path, width: int | None = None, height: int | None = None) -> list[Detection]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise DetectorError(f"{path}: cannot read regions file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DetectorError(f"{path}: a regions file must be UTF-8 JSON text") from None
    try:
        return regions_from_json(text, width, height)
    except DetectorError as e:
        raise DetectorError(f"{path}: {e}") from None


def load_regions(path, width: int, height: int) -> list[Detection]:
    """A regions file by extension: .json (regions JSON) or an image (label PNG)."""
    if str(path).lower().endswith(".json"):
        return read_regions_json(path, width, height)
    return regions_from_label_png(path, width, height)
