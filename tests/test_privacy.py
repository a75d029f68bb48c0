"""What others see: margins that cover whole faces, nothing public by accident, unlinkable files,
hidden lengths and order, and keys that cannot be misused into losing access."""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import privcodec
from privcodec import api, masks
from privcodec.container import open_container
from privcodec.container import crypto
from privcodec.container import format as fmt
from privcodec.errors import DetectorError, KeyFileError, PolicyError, PrivcodecError
from privcodec.keys import KeyPermissionWarning, keygen, load_identity, load_recipient
from privcodec.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
FACES = load_policy(ROOT / "policies/faces.toml")


def _face_photos():
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    photos = {"astronaut": data.astronaut(),
              "grace_hopper": np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg",
                                                                                    asfileobj=False)).convert("RGB"))}
    out = []
    for name, img in photos.items():
        for scale in (0.5, 1.0, 2.5):           # a small face, a portrait, a close-up
            im = Image.fromarray(img).resize((round(img.shape[1] * scale), round(img.shape[0] * scale)), Image.BICUBIC)
            out.append((f"{name}@{scale}", np.asarray(im)))
    return out


@pytest.mark.parametrize("name,photo", _face_photos(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_shipped_face_policy_covers_every_face_with_a_margin_that_scales(name, photo):
    from privcodec.detect import detect

    faces = detect(photo, ["face"])
    assert faces, f"no face found in {name}"
    planned = api.plan(photo, FACES, detect=["face"])
    h, w = photo.shape[:2]
    protected = np.zeros((h, w), bool)
    for i, d in enumerate(planned.decisions):
        if d.action == "encrypt":
            protected |= planned.group_map.pixel_mask(i)
    rule = FACES.rules[0]
    for f in faces:
        x0, y0, x1, y1 = f.box
        gx, gy = max(rule.margin, (rule.scale - 1) / 2 * (x1 - x0)), max(rule.margin, (rule.scale - 1) / 2 * (y1 - y0))
        box = (max(0, math.floor(x0 - gx)), max(0, math.floor(y0 - gy)), min(w, math.ceil(x1 + gx)), min(h, math.ceil(y1 + gy)))
        assert protected[box[1]:box[3], box[0]:box[2]].all(), f"{name}: part of the scaled face box stays public"
    assert rule.scale >= 1.3                     # at least deface's default


def test_an_ellipse_contains_the_whole_grown_box():
    det = masks.Detection("face", 0.9, (100.0, 80.0, 180.0, 190.0))
    for scale, margin in ((1.0, 0), (1.3, 4), (1.5, 8)):
        box = masks._footprint(det, 400, 400, margin, "box", scale)
        ellipse = masks._footprint(det, 400, 400, margin, "ellipse", scale)
        assert (ellipse | box).sum() == ellipse.sum(), "a block of the grown box is outside the ellipse"


def test_margins_follow_the_object_size():
    small = masks.Detection("face", 1, (0, 0, 32, 32))
    big = masks.Detection("face", 1, (0, 0, 320, 320))
    for det, expected in ((small, 8), (big, 80)):     # scale 1.5: a quarter of the size on each side
        fp = masks._footprint(det, 1000, 1000, 8, "box", 1.5)
        assert fp.sum(1).max() * 16 >= det.box[2] + expected


def test_a_region_adds_to_detection_instead_of_replacing_it():
    from skimage import data

    photo = data.astronaut()
    planned = api.plan(photo, FACES, regions=["400,400,460,460:face"])   # "the face the detector missed"
    sources = {g.source for g in planned.group_map.groups}
    assert "manual" in sources and any(s.startswith("face") for s in sources)
    assert api.plan(photo, FACES, regions=["400,400,460,460:face"], detect=[]).detectors == []   # --no-detect


def test_rules_that_nothing_can_produce_or_nothing_matched_are_warned_about(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["family"]\n'
                      '[[rule]]\nmatch = ["person"]\naction = "encrypt"\nrecipients = ["family"]\n'
                      '[[rule]]\nmatch = ["tattoo"]\naction = "redact"\n')
    photo = np.full((64, 64, 3), 128, np.uint8)
    planned = api.plan(photo, policy, detect=["face"], regions=["0,0,20,20:tatoo"])
    text = "\n".join(planned.warnings)
    assert "rule 2 (person → encrypt): no detector or region can produce person" in text
    assert "rule 1 (face → encrypt) matched nothing" in text
    assert "region label 'tatoo' matches no rule (did you mean 'tattoo'?)" in text


def test_the_unproducible_warning_names_each_label_whatever_the_rules_look_like(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nmatch = ["face", "person"]\naction = "redact"\n')
    planned = api.plan(np.full((64, 64, 3), 128, np.uint8), policy, regions=["0,0,20,20:face"], detect=[])
    assert any("no detector or region can produce person:" in w for w in planned.warnings), planned.warnings


def _face_blocks(planned) -> int:
    return sum(int(planned.group_map.block_mask(i).sum()) for i, g in enumerate(planned.group_map.groups)
               if g.label == "face")


def test_a_region_with_an_empty_exact_mask_keeps_its_box(tmp_path):
    import json

    regions = tmp_path / "r.json"
    regions.write_text(json.dumps({"format": "privcodec-regions", "version": 1, "width": 64, "height": 64, "regions": [
        {"label": "face", "box": [0, 0, 32, 32], "mask_rle": [64 * 64]}]}))
    planned = api.plan(np.full((64, 64, 3), 128, np.uint8), FACES, regions_file=regions, shape="exact", detect=[])
    assert _face_blocks(planned) >= 4


def test_min_size_never_drops_a_region_the_user_gave():
    planned = api.plan(np.full((64, 64, 3), 128, np.uint8), FACES, regions=["0,0,10,10:face"], detect=[],
                       min_size=20)
    assert _face_blocks(planned) >= 1


def test_a_regions_file_region_outside_the_photo_is_refused(tmp_path):
    import json

    regions = tmp_path / "r.json"
    regions.write_text(json.dumps({"format": "privcodec-regions", "version": 1, "width": 64, "height": 64, "regions": [{"label": "face", "box": [80, 80, 90, 90]}]}))
    with pytest.raises(DetectorError, match="outside"):
        api.plan(np.full((64, 64, 3), 128, np.uint8), FACES, regions_file=regions, detect=[])


def test_two_word_classes_match_however_they_are_spelt(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nmatch = ["traffic light"]\naction = "redact"\n')   # as YOLO names it
    planned = api.plan(np.full((64, 64, 3), 128, np.uint8), policy, regions=["0,0,32,32:traffic_light"],
                       detect=[])
    assert [planned.decisions[i].action for i, g in enumerate(planned.group_map.groups)
            if g.label == "traffic_light"] == ["redact"]
    assert not planned.warnings, planned.warnings


def test_a_background_rule_is_never_warned_as_unproducible(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nmatch = ["background"]\naction = "redact"\n')
    planned = api.plan(np.full((64, 64, 3), 128, np.uint8), policy, regions=["0,0,20,20:sign"], detect=[])
    assert not any("background" in w for w in planned.warnings), planned.warnings


@pytest.mark.parametrize("label", ["fаce", "ｆａｃｅ"])     # Cyrillic а; full-width letters
def test_class_names_are_ascii(tmp_path, label):
    policy = tmp_path / "p.toml"
    policy.write_text(f'[[rule]]\nmatch = ["{label}"]\naction = "redact"\n')
    with pytest.raises(PolicyError, match="not ASCII"):
        load_policy(policy)
    with pytest.raises(DetectorError, match="printable ASCII"):
        api.plan(np.zeros((32, 32, 3), np.uint8), FACES, regions=[f"0,0,10,10:{label}"], detect=[])


def test_dry_run_shows_each_rule_and_writes_nothing(tmp_path):
    from test_cli import run

    from PIL import Image

    Image.fromarray(np.full((64, 96, 3), 90, np.uint8)).save(tmp_path / "p.png")
    r = run("protect", tmp_path / "p.png", "--policy", ROOT / "policies/plates.toml", "--dry-run",
            "--region", "10,10,40,30:license_plate", "--no-detect", cwd=tmp_path)
    assert "license_plate" in r.stdout and "redact" in r.stdout and "nothing written" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


# ---------------------------------------------------------------- lengths and order


def test_chunk_lengths_are_padded_by_default():
    assert [fmt.padme(n) for n in (88, 464, 556, 1052, 5000)] == [88, 464, 576, 1088, 5120]
    for n in range(2, 5000, 37):
        assert n <= fmt.padme(n) <= n * 1.125


def test_group_numbers_are_random_and_leave_no_gap_for_redacted_groups(tmp_path):
    keygen("family", tmp_path, "symmetric")
    policy = ROOT / "policies/archive.toml"
    for name in ("admin", "staff"):
        keygen(name, tmp_path, "symmetric")
    photo = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    orders = set()
    for _ in range(6):
        res = privcodec.protect(photo, policy, keys_dir=tmp_path, detect=[],
                                regions=["0,0,30,30:license_plate", "40,0,70,30:face", "80,0,120,60:person"])
        c = open_container(res.data)
        indices = sorted([g.index for g in c.public_groups] + [ch.index for ch in c.protected_chunks])
        assert indices == list(range(len(indices))) == [0, 1, 2]     # the redacted plate leaves no gap
        orders.add(tuple(res.file_index[i] for i in sorted(res.file_index)))
    assert len(orders) > 1


# ---------------------------------------------------------------- keys and files


def test_a_non_canonical_x25519_public_key_is_refused(tmp_path):
    keygen("alice", tmp_path, "x25519")
    text = (tmp_path / "alice.pub").read_text()
    import base64
    prefix, b64 = text.strip().splitlines()[-1].split(":", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[31] |= 0x80
    (tmp_path / "bad.pub").write_text(f"{prefix}:{base64.b64encode(bytes(raw)).decode()}\n")
    with pytest.raises(KeyFileError, match="invalid X25519 public key"):
        load_recipient(str(tmp_path / "bad.pub"), tmp_path)


def test_a_fifo_given_as_a_key_is_refused_at_once(tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_identity(fifo)


def test_a_secret_key_others_can_read_is_warned_about(tmp_path):
    keygen("k", tmp_path, "symmetric")
    os.chmod(tmp_path / "k.key", 0o644)
    with pytest.warns(KeyPermissionWarning, match="chmod 600"):
        load_identity(tmp_path / "k.key")


def test_outputs_never_replace_a_key_file(tmp_path, photo_path):
    from test_cli import fails_cleanly, run

    keygen("family", tmp_path / "keys", "symmetric")
    key = tmp_path / "keys/family.key"
    before = key.read_bytes()
    r = run("protect", photo_path, "-o", key, "--policy", ROOT / "policies/faces.toml", "--keys-dir", tmp_path / "keys",
            "--region", "0,0,20,20:face", "--no-detect", "--force", ok=False)
    fails_cleanly(r, "key file")
    assert key.read_bytes() == before


def test_keyed_views_are_private_and_the_wrong_key_message_says_no(tmp_path, photo_path):
    from test_cli import fails_cleanly, run

    keygen("family", tmp_path / "keys", "symmetric")
    keygen("stranger", tmp_path / "keys", "symmetric")
    out = tmp_path / "f.prvc"
    run("protect", photo_path, "-o", out, "--policy", ROOT / "policies/faces.toml", "--keys-dir", tmp_path / "keys",
        "--region", "0,0,40,40:face", "--no-detect")
    run("view", out, "-o", tmp_path / "keyed.png", "--key", tmp_path / "keys/family.key")
    assert stat.S_IMODE((tmp_path / "keyed.png").stat().st_mode) == 0o600
    r = run("view", out, "-o", tmp_path / "x.png", "--key", tmp_path / "keys/stranger.key", ok=False)
    fails_cleanly(r, "this key opens no protected group")


def test_grant_on_a_file_with_nothing_to_grant_is_a_note_not_an_error(tmp_path):
    from test_cli import run

    keygen("family", tmp_path, "symmetric")
    data = (ROOT / "tests/fuzz/corpus/public-only.prvc").read_bytes()
    assert privcodec.grant(data, tmp_path / "family.key", "family", keys_dir=tmp_path) == data
    (tmp_path / "p.prvc").write_bytes(data)
    r = run("grant", tmp_path / "p.prvc", "-o", tmp_path / "g.prvc", "--key", tmp_path / "family.key", "--to", "family",
            "--keys-dir", tmp_path)
    assert "nothing to grant" in r.stderr


# ---------------------------------------------------------------- passphrases


@pytest.fixture
def cheap_scrypt(monkeypatch):
    monkeypatch.setattr(crypto, "SCRYPT_LOG_N", 10)      # real files use 2^18; the format carries N


def test_a_passphrase_recipient_opens_its_groups_and_nothing_else(tmp_path, cheap_scrypt):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["passphrase"]\n')
    photo = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    res = privcodec.protect(photo, policy, detect=[], regions=["0,0,30,30:face", "34,0,64,30:face"],
                            passphrase="correct horse battery")
    c = open_container(res.data)
    assert all(r.kind == "passphrase" for ch in c.protected_chunks for r in ch.recipients)
    salts = {s.arg[:16] for ch in c._chunks for s in ch.stanzas}
    assert len(salts) == 1                               # one scrypt run per file, not per group
    view = privcodec.view(res.data, passphrase="correct horse battery")
    assert len(view.decoded) == 2 and view.authenticated == "key"
    with pytest.raises(PrivcodecError):
        privcodec.view(res.data, passphrase="wrong horse battery")
    with pytest.raises(KeyFileError, match="too short"):
        privcodec.protect(photo, policy, detect=[], regions=["0,0,30,30:face"], passphrase="short")
    with pytest.raises(KeyFileError, match="needs a passphrase"):
        privcodec.protect(photo, policy, detect=[], regions=["0,0,30,30:face"])
    privcodec.keys.keygen("mine", tmp_path)
    with pytest.raises(KeyFileError, match="needs the passphrase"):   # not "no key named 'passphrase'"
        privcodec.grant(res.data, tmp_path / "mine.key", "passphrase", keys_dir=tmp_path)


def test_a_hostile_scrypt_work_factor_is_refused(cheap_scrypt):
    stanza = crypto.Stanza("passphrase", b"", os.urandom(16) + bytes([40]), os.urandom(48))
    assert crypto.unwrap("passphrase", b"pw", stanza, b"aad", file_id=bytes(16)) is None   # no 2^40 work
