"""Detections -> block groups: margin, shapes, min size, grouping, overlaps, borders, manual regions."""
import json

import numpy as np
import pytest
from PIL import Image

from privcodec.detect import (parse_regions, read_regions_json, region_from_box, region_from_polygon,
                              regions_from_json, regions_from_label_png, regions_to_json, write_regions_json)
from privcodec.errors import DetectorError, ImageError
from privcodec.masks import BACKGROUND, Detection, build_group_map, render_preview


def det(label, box, score=1.0, **kw):
    return Detection(label, score, box, **kw)


def claimed(gm, index=None):
    """Set of (row, col) blocks of one group, or of every non-background group."""
    m = gm.blocks > 0 if index is None else gm.blocks == index
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(m))}


def rect(r0, r1, c0, c1):
    return {(r, c) for r in range(r0, r1) for c in range(c0, c1)}


def test_nothing_is_all_background():
    gm = build_group_map(64, 48, [])
    assert gm.blocks.shape == (3, 4) and not gm.blocks.any()
    assert [g.label for g in gm.groups] == [BACKGROUND]


def test_margin_grows_box_before_snapping():
    d = det("face", (32, 32, 48, 48))
    assert claimed(build_group_map(128, 128, [d], margin=0)) == {(2, 2)}
    assert claimed(build_group_map(128, 128, [d], margin=8)) == rect(1, 4, 1, 4)
    assert claimed(build_group_map(128, 128, [d], margin=16)) == rect(1, 4, 1, 4)
    assert claimed(build_group_map(128, 128, [d], margin=17)) == rect(0, 5, 0, 5)
    # x1/y1 are exclusive: a box ending exactly on a block edge does not spill over.
    assert claimed(build_group_map(128, 128, [det("face", (0, 0, 16, 16))], margin=0)) == {(0, 0)}
    assert claimed(build_group_map(128, 128, [det("face", (0, 0, 16.5, 16))], margin=0)) == {(0, 0), (0, 1)}


def test_callable_margin_per_label():
    dets = [det("face", (32, 32, 48, 48)), det("plate", (96, 96, 112, 112))]
    gm = build_group_map(160, 160, dets, margin=lambda label: 8 if label == "face" else 0)
    assert claimed(gm, 1) == rect(1, 4, 1, 4) and claimed(gm, 2) == {(6, 6)}


def test_shapes_box_ellipse_exact():
    box = (0, 0, 128, 128)
    assert len(claimed(build_group_map(128, 128, [det("face", box)], margin=0, shape="box"))) == 64
    # the ellipse goes through the box's corners: it contains the whole box, rounder beyond it
    inner = (64, 64, 192, 192)
    ellipse = claimed(build_group_map(256, 256, [det("face", inner)], margin=0, shape="ellipse"))
    assert rect(4, 12, 4, 12) <= ellipse
    assert (2, 2) not in ellipse and (13, 13) not in ellipse and (2, 7) in ellipse   # its own corners cut off

    mask = np.zeros((128, 128), bool)
    mask[32:36, 32:36] = True                                    # a 4 px blob inside block (2, 2)
    exact = det("person", box, mask=mask)
    assert claimed(build_group_map(128, 128, [exact], margin=0, shape="exact")) == {(2, 2)}
    assert claimed(build_group_map(128, 128, [exact], margin=8, shape="exact")) == rect(1, 3, 1, 3)
    assert len(claimed(build_group_map(128, 128, [exact], margin=0, shape="box"))) == 64   # box ignores mask
    # exact without a mask or polygon falls back to the box
    assert len(claimed(build_group_map(128, 128, [det("face", box)], margin=0, shape="exact"))) == 64


def test_exact_polygon():
    tri = det("sign", (0, 0, 64, 64), polygon=((0, 0), (63, 0), (0, 63)))
    blocks = claimed(build_group_map(64, 64, [tri], margin=0, shape="exact"))
    assert (0, 0) in blocks and (3, 3) not in blocks and (0, 3) in blocks and (3, 0) in blocks


def test_an_object_whose_exact_mask_is_empty_claims_its_box():
    # an empty mask (a lost outline) must not make a detected object vanish, and stay public
    d = det("person", (0, 0, 32, 32), mask=np.zeros((64, 64), bool))
    gm = build_group_map(64, 64, [d], shape="exact", margin=0)
    assert len(gm.groups) == 2 and claimed(gm, 1) == rect(0, 2, 0, 2)


def test_min_size_drops_small_objects():
    dets = [det("face", (0, 0, 10, 30)), det("face", (64, 64, 96, 96))]
    gm = build_group_map(128, 128, dets, margin=0, min_size=12)
    assert len(gm.groups) == 2 and claimed(gm, 1) == rect(4, 6, 4, 6)
    assert len(build_group_map(128, 128, dets, margin=0).groups) == 3


def test_instance_vs_class_grouping():
    dets = [det("face", (0, 0, 16, 16), 0.7, source="a"), det("face", (64, 64, 80, 80), 0.9, source="b"),
            det("plate", (32, 32, 48, 48))]
    inst = build_group_map(128, 128, dets, margin=0)
    assert [g.label for g in inst.groups] == [BACKGROUND, "face", "face", "plate"]
    assert [g.score for g in inst.groups[1:3]] == [0.7, 0.9]
    cls = build_group_map(128, 128, dets, margin=0, grouping="class")
    assert [g.label for g in cls.groups] == [BACKGROUND, "face", "plate"]
    assert claimed(cls, 1) == {(0, 0), (4, 4)}
    assert cls.groups[1].score == 0.9 and cls.groups[1].source == "a+b"
    mixed = build_group_map(128, 128, dets, margin=0, grouping=lambda l: "class" if l == "face" else "instance")
    assert len(mixed.groups) == 3
    with pytest.raises(DetectorError, match="grouping"):
        build_group_map(128, 128, dets, grouping="pixel")


def test_overlap_resolved_by_rank():
    person = det("person", (0, 0, 128, 128), 0.8)
    face = det("face", (32, 32, 64, 64), 0.99)
    face_first = build_group_map(128, 128, [person, face], margin=0, rank={"face": 0, "person": 1}.__getitem__)
    assert [g.label for g in face_first.groups] == [BACKGROUND, "person", "face"]
    assert claimed(face_first, 2) == rect(2, 4, 2, 4) and len(claimed(face_first, 1)) == 64 - 4
    # The person wins every contested block: the face group loses all and disappears.
    person_first = build_group_map(128, 128, [person, face], margin=0, rank={"face": 1, "person": 0}.__getitem__)
    assert [g.label for g in person_first.groups] == [BACKGROUND, "person"]
    assert person_first.groups[1].score == 0.8 and len(claimed(person_first, 1)) == 64


def test_default_rank_first_appearance_then_smaller_area():
    person = det("person", (0, 0, 128, 128))
    face = det("face", (32, 32, 64, 64))
    assert [g.label for g in build_group_map(128, 128, [face, person], margin=0).groups] == [BACKGROUND, "face", "person"]
    assert [g.label for g in build_group_map(128, 128, [person, face], margin=0).groups] == [BACKGROUND, "person"]
    # Same label (same rank): the smaller instance keeps its blocks inside the bigger one.
    big, small = det("person", (0, 0, 128, 128)), det("person", (32, 32, 64, 64))
    gm = build_group_map(128, 128, [big, small], margin=0)
    assert claimed(gm, 2) == rect(2, 4, 2, 4) and len(claimed(gm, 1)) == 60


def test_border_blocks_of_odd_sized_image():
    gm = build_group_map(100, 50, [det("plate", (96, 48, 100, 50))], margin=0)
    assert gm.blocks.shape == (4, 7) and claimed(gm) == {(3, 6)}
    # margin spills past the edge: clipped, no error; the partial edge blocks are claimed
    gm = build_group_map(100, 50, [det("plate", (95, 45, 100, 50))], margin=30)
    assert claimed(gm) == rect(0, 4, 4, 7)
    pm = gm.pixel_mask(1)
    assert pm.shape == (50, 100) and pm[49, 99] and not pm[0, 0]
    # an ellipse centred near the corner still reaches the partial corner block
    assert (3, 6) in claimed(build_group_map(100, 50, [det("f", (92, 44, 100, 50))], margin=4, shape="ellipse"))
    # entirely outside the image: ignored
    assert len(build_group_map(100, 50, [det("face", (120, 60, 140, 80))], margin=0).groups) == 1


def test_an_object_drawn_past_the_edge_grows_from_its_part_inside_the_image():
    # a region dragged past the photo's edge is no bigger an object for it: 1.5 x the drawn
    # 300..4000 box would cover all of a 512 px photo and leave nothing public
    drawn, inside = det("face", (300, 300, 4000, 4000)), det("face", (300, 300, 512, 512))
    for shape in ("box", "ellipse"):
        gm = build_group_map(512, 512, [drawn], margin=8, scale=1.5, shape=shape)
        assert claimed(gm) == claimed(build_group_map(512, 512, [inside], margin=8, scale=1.5, shape=shape))
    assert claimed(build_group_map(512, 512, [drawn], margin=8, scale=1.5)) == rect(15, 32, 15, 32)  # 300 - 53 px
    triangle = region_from_polygon([(300, 300), (4000, 300), (300, 4000)], "sign")   # inside: the square 300..512
    square = region_from_polygon([(300, 300), (512, 300), (512, 512), (300, 512)], "sign")
    assert (claimed(build_group_map(512, 512, [triangle], margin=8, scale=1.5, shape="exact"))
            == claimed(build_group_map(512, 512, [square], margin=8, scale=1.5, shape="exact")))
    # an object with no pixel in the image claims nothing, however wide its margin
    assert len(build_group_map(100, 50, [det("face", (120, 60, 140, 80))], margin=30, scale=3).groups) == 1


def test_pixel_mask_covers_detection_with_margin():
    d = det("face", (37.5, 21.2, 71.9, 60.1))
    pm = build_group_map(200, 120, [d], margin=8).pixel_mask(1)
    assert pm[13:69, 29:80].all()


def test_bad_inputs():
    with pytest.raises(DetectorError, match="shape"):
        build_group_map(64, 64, [], shape="circle")
    with pytest.raises(DetectorError, match="mask"):
        build_group_map(64, 64, [det("p", (0, 0, 8, 8), mask=np.ones((32, 32), bool))], shape="exact")
    with pytest.raises(DetectorError, match="margin"):
        build_group_map(64, 64, [det("p", (0, 0, 8, 8))], margin=-1)


def test_render_preview_draws_groups_only():
    img = np.full((80, 100, 3), 128, np.uint8)
    gm = build_group_map(100, 80, [det("face", (40, 40, 60, 60), 0.93)], margin=0)
    out = render_preview(img, gm)
    assert out.size == (100, 80) and out.mode == "RGB"
    arr = np.asarray(out)
    assert (arr[0:32, 0:32] == 128).all() and (arr[76:, 96:] == 128).all()      # background untouched
    assert (arr[40:64, 40:64] != 128).any(axis=2).all()                          # group tinted / labelled


# ---- manual regions ----

def test_parse_regions_boxes_and_polygons():
    box, poly = parse_regions(["10,20,30,40:face", "0,0,50,0,0,50"])
    assert (box.label, box.box, box.score, box.source) == ("face", (10, 20, 30, 40), 1.0, "manual")
    assert poly.label == "region" and poly.polygon == ((0, 0), (50, 0), (0, 50)) and poly.box == (0, 0, 50, 50)
    for bad in ["1,2,3", "a,b,c,d", "30,0,10,20"]:
        with pytest.raises(DetectorError):
            parse_regions([bad])


def test_json_round_trip_same_groups(tmp_path):
    mask = np.zeros((70, 90), bool)
    mask[5:9, 60:88] = True
    mask[40, 3] = True
    dets = [det("face", (10.5, 20, 30, 40.25), 0.875, source="face:mtcnn"),
            det("person", (3, 5, 88, 41), 0.5, mask=mask, source="yolo"),
            parse_regions(["0,69,45,40,89,69:sign"])[0]]
    path = tmp_path / "regions.json"
    write_regions_json(path, dets, 90, 70)
    doc = json.loads(path.read_text())
    assert doc["format"] == "privcodec-regions" and (doc["width"], doc["height"]) == (90, 70)
    back = read_regions_json(path, 90, 70)
    assert [(d.label, d.score, d.source, d.box) for d in back] == [(d.label, d.score, d.source, d.box) for d in dets]
    assert np.array_equal(back[1].mask, mask) and back[0].mask is None and back[2].polygon == dets[2].polygon
    for shape in ("box", "ellipse", "exact"):
        a = build_group_map(90, 70, dets, shape=shape, margin=2)
        b = build_group_map(90, 70, back, shape=shape, margin=2)
        assert np.array_equal(a.blocks, b.blocks) and a.groups == b.groups
    assert regions_to_json(back, 90, 70) == path.read_text()


def test_json_errors(tmp_path):
    good = regions_to_json([det("face", (0, 0, 4, 4))], 10, 10)
    with pytest.raises(DetectorError, match="10x10 image"):
        regions_from_json(good, 20, 10)
    with pytest.raises(DetectorError, match="not valid JSON"):
        regions_from_json("{")
    with pytest.raises(DetectorError, match="not a regions file"):
        regions_from_json('{"regions": []}')
    doc = json.loads(good)
    doc["regions"][0]["box"] = [1, 2]
    with pytest.raises(DetectorError, match="region 1"):
        regions_from_json(json.dumps(doc))
    doc["regions"][0] = {"box": [0, 0, 4, 4], "mask_rle": [5, 5]}
    with pytest.raises(DetectorError, match="mask_rle"):
        regions_from_json(json.dumps(doc))
    with pytest.raises(DetectorError, match="cannot read"):
        read_regions_json(tmp_path / "missing.json")
    doc = json.loads(good)
    doc["width"] = True
    with pytest.raises(DetectorError, match="positive integer width"):
        regions_from_json(json.dumps(doc))
    doc = json.loads(good)
    doc["regions"][0]["label"] = {"a": 1}
    with pytest.raises(DetectorError, match="region 1: \"label\" must be a string"):
        regions_from_json(json.dumps(doc))


def test_label_png(tmp_path):
    labels = np.zeros((40, 60), np.uint8)
    labels[2:10, 3:20] = 1
    labels[30:38, 50:60] = 7
    Image.fromarray(labels).save(tmp_path / "labels.png")
    regions = regions_from_label_png(tmp_path / "labels.png", 60, 40, labels={7: "plate"})
    assert [(r.label, r.box) for r in regions] == [("region", (3, 2, 20, 10)), ("plate", (50, 30, 60, 38))]
    assert np.array_equal(regions[1].mask, labels == 7)
    gm = build_group_map(60, 40, regions, margin=0, shape="exact")
    assert claimed(gm, 1) == {(0, 0), (0, 1)} and claimed(gm, 2) == {(1, 3), (2, 3)}
    with pytest.raises(ImageError, match="60x40"):
        regions_from_label_png(tmp_path / "labels.png", 64, 40)
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageError, match="single-channel"):
        regions_from_label_png(tmp_path / "rgb.png", 60, 40)
    with pytest.raises(ImageError, match="cannot read"):
        regions_from_label_png(tmp_path / "nope.png", 60, 40)


def test_regions_given_as_masks_are_bounded_before_they_are_allocated(monkeypatch):
    """Every label value (every mask_rle region) is held as a full-size mask: a 16-bit label image
    with 65,535 values would take 17 GB for a 512x512 photo.  Refused by count, before any mask."""
    import privcodec.limits

    monkeypatch.setattr(privcodec.limits, "MAX_REGION_MASK_PIXELS", 3 * 60 * 40)
    labels = np.zeros((40, 60), np.uint16)
    labels[0, :3] = (1, 2, 3)
    assert len(regions_from_label_png(labels, 60, 40)) == 3
    labels[0, 3] = 65535
    with pytest.raises(DetectorError, match=r"too many label image values \(4\).* at most 3"):
        regions_from_label_png(labels, 60, 40)
    doc = json.loads(regions_to_json([det("face", (0, 0, 4, 4))], 60, 40))
    doc["regions"] = [{"box": [0, 0, 4, 4], "mask_rle": [0, 16, 2384]}] * 4
    with pytest.raises(DetectorError, match="too many regions with a mask_rle"):
        regions_from_json(json.dumps(doc))
    doc["regions"] = [{"polygon": [[1, 1], [50, 1], [50, 30]], "box": [60, 60, 10, 10]}]
    with pytest.raises(DetectorError, match="region 1"):      # a polygon's box is checked as a lone box is
        regions_from_json(json.dumps(doc))


def one_line_error(exc_type, fn, *args, match=None, **kwargs):
    with pytest.raises(exc_type, match=match) as exc:
        fn(*args, **kwargs)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_regions_reject_non_finite_coordinates():
    for bad in ["0,0,inf,20", "nan,0,10,10", "0,0,1e999,5", "0,0,10,0,-inf,10:sign"]:
        one_line_error(DetectorError, parse_regions, [bad], match="non-finite")
    one_line_error(DetectorError, region_from_box, (0, 0, float("inf"), 1), match="non-finite")
    one_line_error(DetectorError, region_from_polygon, [(0, 0), (1, float("nan")), (2, 2)], match="non-finite")
    one_line_error(DetectorError, parse_regions, [(0, 0, 1)], match="4 numbers")     # API tuples too
    one_line_error(DetectorError, parse_regions, [(0, 0, 10**400, 5)], match="numbers")
    one_line_error(DetectorError, region_from_polygon, [(0, 0), 5, (2, 2)], match="polygon")


def test_api_region_tuples_are_the_cli_form_with_an_optional_label():
    # (x0, y0, x1, y1, label) is --region x0,y0,x1,y1:label: corners, not a width and height
    tup, text = parse_regions([(10, 20, 30, 40, "face"), "10,20,30,40:face"])
    assert (tup.label, tup.box) == (text.label, text.box) == ("face", (10, 20, 30, 40))
    assert parse_regions([[10, 20, 30, 40]])[0].label == "region"          # no label: "region", as the CLI
    one_line_error(DetectorError, parse_regions, [(10, 20, 30, 40, 7)], match="label must be text")
    one_line_error(DetectorError, parse_regions, [(10, 20, 30, 40, "fаce")], match="not allowed")   # Cyrillic а
    one_line_error(DetectorError, parse_regions, [30, 40], match="a region is")   # one region not in a list


def test_json_rejects_bad_scores_values_and_shapes():
    doc = json.loads(regions_to_json([det("face", (0, 0, 4, 4))], 10, 10))

    def bad(region=None, regions=None, match=None):
        d = dict(doc, regions=[dict(doc["regions"][0], **region)] if regions is None else regions)
        return one_line_error(DetectorError, regions_from_json, json.dumps(d), match=match)

    for score in [float("nan"), float("inf"), -0.1, 1.5, "high", True, None, 10**400]:
        bad({"score": score}, match=r"region 1: score must be a number from 0 to 1")
    bad({"box": [0, 0, float("inf"), 4]}, match="region 1: .*non-finite")
    bad({"polygon": [[0, 0], [4, 0], [0, 4]], "box": [0, float("nan"), 4, 4]}, match="region 1: .*non-finite")
    bad({"polygon": [[0, 0], [4, float("inf")], [0, 4]]}, match="region 1: .*non-finite")
    bad({"box": [0, 0, 10**400, 4]}, match="region 1")
    bad({"mask_rle": [2**62, 2**62, 2**62, 2**62 + 100]}, match="mask_rle")          # int64 sum would wrap to 100
    bad({"mask_rle": [[1], "x"]}, match="mask_rle")
    bad(regions={"box": [0, 0, 4, 4]}, match='"regions" must be a list')
    bad(regions=[5], match="region 1: must be an object")
    bad(regions=[doc["regions"][0], ["box", [0, 0, 4, 4]]], match="region 2: must be an object")
    assert regions_from_json(json.dumps(dict(doc, regions=[dict(doc["regions"][0], score=0)])))[0].score == 0.0


def test_label_png_size_limits_and_damage(tmp_path, monkeypatch):
    import privcodec.imageio

    path = tmp_path / "labels.png"
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(path)
    with monkeypatch.context() as m:
        m.setattr(privcodec.imageio, "MAX_PIXELS", 2_399)
        one_line_error(ImageError, regions_from_label_png, path, 60, 40, match=r"too large \(60x40 pixels")
    for pillow_limit in (2_000, 1_000):   # Pillow warns above 1x its limit and refuses above 2x
        with monkeypatch.context() as m:
            m.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
            one_line_error(ImageError, regions_from_label_png, path, 60, 40, match="too large")
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    (tmp_path / "cut.png").write_bytes(bytes(data[:idat + 10]))
    one_line_error(ImageError, regions_from_label_png, tmp_path / "cut.png", 60, 40, match="cannot decode label image")
    data[idat + 4: idat + 12] = b"\xff" * 8
    (tmp_path / "bad.png").write_bytes(bytes(data))
    one_line_error(ImageError, regions_from_label_png, tmp_path / "bad.png", 60, 40, match="cannot decode label image")
    (tmp_path / "text.png").write_text("not an image")
    one_line_error(ImageError, regions_from_label_png, tmp_path / "text.png", 60, 40, match="not a supported image")


def test_too_many_groups():
    from privcodec.container import MAX_GROUPS

    # One 1-block detection per cell of a 64 x 65 grid; with background, MAX_GROUPS groups fit exactly.
    boxes = [det("region", (16 * (k % 64), 16 * (k // 64), 16 * (k % 64) + 1, 16 * (k // 64) + 1))
             for k in range(MAX_GROUPS)]
    assert len(build_group_map(1024, 1040, boxes[:-1], margin=0).groups) == MAX_GROUPS
    msg = one_line_error(DetectorError, build_group_map, 1024, 1040, boxes, margin=0, match="too many groups")
    assert msg == f"too many groups ({MAX_GROUPS + 1}); the container holds at most {MAX_GROUPS}"
