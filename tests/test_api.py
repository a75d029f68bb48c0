"""End-to-end behaviour of protect / view / inspect / strip / grant through the Python API."""
from __future__ import annotations

import numpy as np
import pytest

import privcodec
from privcodec import container
from privcodec.policy import load_policy
from privcodec.errors import DecryptionError, FormatError, KeyFileError, PolicyError, PrivcodecError

from conftest import make_photo

FACE = "16,16,48,64:face"        # blocks (1..3, 1..3)
PLATE = "80,64,128,96:license_plate"     # bottom-right corner blocks: redacted


def pixel_mask(grid, value, h, w):
    return np.kron(grid == value, np.ones((16, 16), bool))[:h, :w]


def test_keyed_view_decodes_everything_and_keyless_view_matches_it_on_public_pixels(photo_path, keys_dir, face_policy):
    res = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE])
    keyless = privcodec.view(res.data)
    keyed = privcodec.view(res.data, [keys_dir / "family.key"])
    assert keyless.missing and not keyed.missing
    c = container.open_container(res.data)
    public = np.kron(c.block_map >= 0, np.ones((16, 16), bool))[:96, :128]
    assert np.array_equal(keyless.pixels[public], keyed.pixels[public])
    assert not np.array_equal(keyless.pixels[~public], keyed.pixels[~public])
    original = make_photo()
    psnr = 10 * np.log10(255 ** 2 / np.mean((keyed.pixels.astype(float) - original) ** 2))
    assert psnr > 20


@pytest.mark.parametrize("key", ["family.key", "alice.key"])  # symmetric and X25519
def test_round_trip_with_either_kind_of_key(photo_path, keys_dir, face_policy, key):
    res = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE])
    full = privcodec.view(res.data, [keys_dir / key])
    face = next(res.file_index[i] for i, a in enumerate(res.actions) if a == "encrypt")
    assert full.decoded == [face] and full.missing == []


@pytest.mark.parametrize("codec", ["avif", "gicodec"])
def test_public_bytes_and_the_keyless_view_are_a_function_of_public_pixels_only(tmp_path, keys_dir,
                                                                              face_policy, codec):
    from PIL import Image

    a = make_photo()
    b = a.copy()
    b[16:64, 16:48] = 255 - b[16:64, 16:48]          # change only the face's pixels
    paths = []
    for name, img in (("a.png", a), ("b.png", b)):
        Image.fromarray(img).save(tmp_path / name)
        paths.append(tmp_path / name)
    da, db = (privcodec.protect(p, face_policy, keys_dir=keys_dir, regions=[FACE], codec=codec).data for p in paths)
    ca, cb = container.open_container(da), container.open_container(db)
    assert sorted((g.label, g.payload) for g in ca.public_groups) == sorted((g.label, g.payload) for g in cb.public_groups)
    assert np.array_equal(privcodec.view(da).pixels, privcodec.view(db).pixels)     # the keyless view too
    # group numbers are fresh randomness per file (so their order reveals nothing): compare the
    # maps with each public index replaced by its group's label
    def by_label(c):
        names = {g.index: g.label for g in c.public_groups}
        return [[names.get(int(v), int(v)) for v in row] for row in c.block_map]
    assert by_label(ca) == by_label(cb)


def test_redacted_groups_leave_no_ciphertext(photo_path, keys_dir, face_policy):
    res = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE, PLATE])
    info = privcodec.inspect(res.data, [keys_dir / "family.key"])
    assert info["redacted_blocks"] == 6
    assert len([g for g in info["groups"] if g["access"] == "encrypted"]) == 1
    assert sorted(g["index"] for g in info["groups"]) == [0, 1]     # no gap where the plate was
    full = privcodec.view(res.data, [keys_dir / "family.key"])
    assert full.redacted


def test_keyless_inspect_hides_classes_of_protected_groups(photo_path, keys_dir, face_policy):
    res = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE])
    locked = [g for g in privcodec.inspect(res.data)["groups"] if g["access"] == "encrypted"]
    assert locked and all("class" not in g for g in locked)
    opened = [g for g in privcodec.inspect(res.data, [keys_dir / "family.key"])["groups"] if g["access"] == "encrypted"]
    assert opened[0]["class"] == "face"


def test_strip_then_grant(photo_path, keys_dir, face_policy):
    res = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE])
    granted = privcodec.grant(res.data, keys_dir / "alice.key", "stranger", keys_dir=keys_dir)
    assert len(privcodec.view(granted, [keys_dir / "stranger.key"]).decoded) == 1
    stripped = privcodec.strip(res.data, [])
    assert len(privcodec.view(stripped).missing) == 1
    with pytest.raises(DecryptionError):                 # the face chunk is gone: the key opens nothing
        privcodec.view(stripped, [keys_dir / "family.key"])
    kept = privcodec.strip(res.data, [keys_dir / "family.key"])
    assert len(privcodec.view(kept, [keys_dir / "alice.key"]).decoded) == 1
    with pytest.raises(DecryptionError):
        privcodec.grant(res.data, keys_dir / "stranger.key", "family", keys_dir=keys_dir)


def test_a_key_that_opens_nothing_is_an_error_but_missing_keys_are_not(photo_path, tmp_path, keys_dir):
    policy = tmp_path / "two.toml"
    policy.write_text('[[rule]]\nmatch = ["a"]\naction = "encrypt"\nrecipients = ["family"]\n'
                      '[[rule]]\nmatch = ["b"]\naction = "encrypt"\nrecipients = ["alice"]\n')
    res = privcodec.protect(photo_path, policy, keys_dir=keys_dir, regions=["0,0,40,40:a", "64,32,128,96:b"])
    data = res.data
    a, b = (res.file_index[i] for i, g in enumerate(res.group_map.groups) if g.label in ("a", "b"))
    some = privcodec.view(data, [keys_dir / "family.key"])
    assert some.decoded == [a] and some.missing == [b]
    for verb in (privcodec.view, privcodec.inspect, privcodec.strip):
        with pytest.raises(DecryptionError, match="stranger.key"):
            verb(data, [keys_dir / "stranger.key"])


@pytest.mark.parametrize("forged", [b"", b"\x00", b"\x01\x00", bytes(300), b"\x05" + bytes(range(256)) * 4])
def test_forged_public_payload_is_rejected_not_decoded(forged):
    """Anyone can re-checksum a file, so public payloads are untrusted input to the decoder."""
    from privcodec import codec

    h, w = 1024, 1024   # large enough that an unchecked decoder would read far past the stream
    grid = np.zeros((h // 16, w // 16), dtype=np.int32)
    blob = container.seal(width=w, height=h, block=16, codec_id=codec.new_codec_id(),
                          weights_sha256=codec.weights_digest(), quality=4.0, block_map=grid,
                          public=[container.PublicGroup(0, "background", 1.0, forged)], protected=[])
    with pytest.raises(FormatError):
        privcodec.view(blob)


def test_a_view_is_identical_whichever_other_groups_were_decoded(photo_path, tmp_path, keys_dir):
    policy = tmp_path / "two.toml"
    policy.write_text('[[rule]]\nmatch = ["a"]\naction = "encrypt"\nrecipients = ["family"]\n'
                      '[[rule]]\nmatch = ["b"]\naction = "encrypt"\nrecipients = ["alice"]\n')
    res = privcodec.protect(photo_path, policy, keys_dir=keys_dir, regions=["0,0,40,40:a", "64,32,128,96:b"])
    only_a = privcodec.view(res.data, [keys_dir / "family.key"])
    both = privcodec.view(res.data, [keys_dir / "family.key", keys_dir / "alice.key"])
    grid = res.group_map.blocks
    for g in (0, 1):
        m = pixel_mask(grid, g, 96, 128)
        assert np.array_equal(only_a.pixels[m], both.pixels[m])


def test_bad_inputs_raise_clean_errors(photo_path, keys_dir, face_policy, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\n')
    with pytest.raises(PolicyError, match="bad.toml"):
        privcodec.protect(photo_path, bad, keys_dir=keys_dir)
    with pytest.raises(KeyFileError):
        privcodec.protect(photo_path, face_policy, keys_dir=tmp_path / "nokeys", regions=[FACE])
    data = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE]).data
    with pytest.raises(FormatError):
        privcodec.view(data[:-1])
    with pytest.raises(privcodec.PrivcodecError, match="quality"):
        privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, quality=11)
    with pytest.raises(privcodec.PrivcodecError, match="pad"):
        privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, pad=10**9)
    with pytest.raises(privcodec.PrivcodecError, match="uint8"):
        privcodec.protect(np.zeros((8, 8), np.float32), face_policy, keys_dir=keys_dir)


def test_paths_and_single_keys_are_accepted_where_bytes_and_lists_are(photo_path, keys_dir, face_policy, tmp_path):
    path = tmp_path / "photo.prvc"
    path.write_bytes(privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=FACE, detect=[]).data)
    for data in (path, str(path)):
        assert len(privcodec.view(data, keys_dir / "family.key").decoded) == 1
        assert len(privcodec.view(data, str(keys_dir / "family.key")).decoded) == 1
        assert sorted(g["access"] for g in privcodec.inspect(data)["groups"]) == ["encrypted", "public"]


def test_several_keys_work_when_one_opens_something(photo_path, keys_dir, face_policy):
    data = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE]).data
    assert len(privcodec.view(data, [keys_dir / "stranger.key", keys_dir / "family.key"]).decoded) == 1
    with pytest.raises(DecryptionError, match="none of these keys"):
        privcodec.view(data, [keys_dir / "stranger.key", keys_dir / "stranger.key"])


def test_a_key_on_a_file_with_nothing_protected_is_not_an_error(photo_path, keys_dir, face_policy):
    data = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, detect=[]).data
    assert privcodec.view(data, [keys_dir / "family.key"]).decoded == []


def test_every_recipient_of_the_policy_is_checked_before_any_work(photo_path, keys_dir, tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["family"]\n'
                      '[[rule]]\nmatch = ["person"]\naction = "encrypt"\nrecipients = ["ghost"]\n')
    with pytest.raises(KeyFileError, match=r"p\.toml: rule 2: recipient 'ghost'"):   # no person in the photo
        privcodec.protect(photo_path, policy, keys_dir=keys_dir, regions=[FACE])


def test_without_regions_or_detectors_the_policy_picks_the_detectors(keys_dir, face_policy, tmp_path):
    from privcodec.api import policy_detectors
    from privcodec.policy import load_policy

    assert policy_detectors(load_policy(face_policy)) == ["face", "plate"]
    astronaut = privcodec.__file__.replace("__init__.py", "data/astronaut.jpg")
    auto = privcodec.protect(astronaut, face_policy, keys_dir=keys_dir, quality=1)
    assert auto.counts().get("encrypt") == 1                          # her face, found by itself
    none = privcodec.protect(astronaut, face_policy, keys_dir=keys_dir, quality=1, detect=[])
    assert none.counts() == {"public": 1}


def test_regions_that_miss_the_photo_are_errors(photo_path, keys_dir, face_policy):
    for region in ("200,200,300,300", "10,10,10,50,10,90"):           # outside a 128x96 photo; a flat polygon
        with pytest.raises(privcodec.PrivcodecError, match="outside|zero area"):
            privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[region])


def test_a_region_drawn_past_the_edge_protects_its_part_of_the_photo_not_all_of_it(photo_path, tmp_path):
    policy = tmp_path / "grow.toml"
    policy.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["family"]\n'
                      'scale = 1.5\nmargin = 8\n')                  # as policies/faces.toml
    # inside the 128x96 photo the region is 64..128 x 48..96: grown by 16 and 12 px, then snapped
    rows = privcodec.plan(photo_path, policy, regions=["64,48,1000,1000:face"], detect=[]).rows()
    assert [(r["class"], r["box"], r["action"]) for r in rows] == [
        ("background", [0, 0, 128, 96], "public"), ("face", [48, 32, 128, 96], "encrypt")]


def test_api_arguments_take_the_cli_forms(photo_path, face_policy):
    # one detector name is one name (as --detect face), not a list of letters
    assert privcodec.plan(photo_path, face_policy, detect="plate").detectors == ["plate"]
    # (x0, y0, x1, y1, label) is --region x0,y0,x1,y1:label
    as_tuple = privcodec.plan(photo_path, face_policy, regions=[(16, 16, 48, 64, "face")], detect=[]).rows()
    assert as_tuple == privcodec.plan(photo_path, face_policy, regions=[FACE], detect=[]).rows()
    assert [r["action"] for r in as_tuple] == ["public", "encrypt"]


@pytest.mark.parametrize("policy, options, message", [
    (None, {}, "policy: expected a policy file path or a Policy, got NoneType"),
    (b"faces.toml", {}, "policy: expected a policy file path or a Policy, got bytes"),
    ("face_policy", {"detect": 5}, "detect: expected a detector name or a list of names, got int"),
    ("face_policy", {"detect": ["face", None]}, "detect: expected a detector name or a list of names, got NoneType"),
    ("face_policy", {"regions": [(16, 16, 48, 64, 7)]}, "label must be text"),
    ("face_policy", {"regions": 5}, "regions: expected a list of regions"),
])
def test_wrong_protect_argument_types_are_one_clean_error(photo_path, keys_dir, face_policy, policy, options, message):
    policy = face_policy if policy == "face_policy" else policy
    for call in (lambda: privcodec.protect(photo_path, policy, keys_dir=keys_dir, **options),
                 lambda: privcodec.plan(photo_path, policy, **options)):
        with pytest.raises(PrivcodecError, match=message):
            call()


def test_a_misspelt_keyword_is_an_error_not_a_region_silently_dropped(photo_path, keys_dir, face_policy):
    with pytest.raises(TypeError, match="'region'"):
        privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, region=[FACE], detect=[])
    with pytest.raises(TypeError, match="'qualty'"):
        privcodec.plan(photo_path, face_policy, regions=[FACE], detect=[], qualty=8)


def test_given_recipients_must_cover_the_policy_before_anything_is_coded(photo_path, keys_dir, face_policy):
    with pytest.raises(KeyFileError, match="recipient 'family': not in recipients"):
        privcodec.protect(photo_path, face_policy, regions=[FACE], recipients={})
    loaded = privcodec.api.load_recipients(load_policy(face_policy), keys_dir)
    res = privcodec.protect(photo_path, face_policy, regions=[FACE], recipients=loaded)
    assert privcodec.view(res.data, keys_dir / "family.key").missing == []


def test_one_metadata_recipient_may_be_given_as_a_string_as_one_key_may(tmp_path, keys_dir, face_policy):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0132] = "2026:11:28 10:00:00"
    path = tmp_path / "dated.jpg"
    Image.fromarray(make_photo()).save(path, exif=exif)
    res = privcodec.protect(path, face_policy, keys_dir=keys_dir, regions=[FACE], keep_metadata="family")
    assert privcodec.view(res.data, keys_dir / "family.key").metadata.exif
    assert privcodec.view(res.data, keys_dir / "alice.key").metadata is None


@pytest.mark.parametrize("call, message", [
    (lambda d, k: privcodec.view(d, keys=5), "keys: expected"),
    (lambda d, k: privcodec.view(d, keys=[None]), "keys: expected"),
    (lambda d, k: privcodec.view(d, keys=str(k).encode()), "keys: expected"),
    (lambda d, k: privcodec.view(d, passphrase=123), "passphrase must be text"),
    (lambda d, k: privcodec.view(d, max_pixels="100"), "max_pixels must be a whole number"),
    (lambda d, k: privcodec.to_carrier(d, quality="hi"), "quality must be a whole number"),
    (lambda d, k: privcodec.to_carrier(d, quality=500), "quality must be between 1 and 100"),
])
def test_wrong_argument_types_are_one_clean_error(photo_path, keys_dir, face_policy, call, message):
    data = privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE]).data
    with pytest.raises(PrivcodecError, match=message):
        call(data, keys_dir / "family.key")


def test_protect_takes_a_path_bytes_a_file_object_or_a_pil_image_and_codes_the_same_pixels(
        photo_path, keys_dir, face_policy):
    from PIL import Image

    def keyed(image):
        data = privcodec.protect(image, face_policy, keys_dir=keys_dir, regions=[FACE], detect=[]).data
        return privcodec.view(data, keys_dir / "family.key").pixels

    expected = keyed(photo_path)
    raw = photo_path.read_bytes()
    with open(photo_path, "rb") as f:
        assert np.array_equal(keyed(f), expected)
    with Image.open(photo_path) as im:
        assert np.array_equal(keyed(im), expected)
    assert np.array_equal(keyed(memoryview(raw)), expected)
    with pytest.raises(PrivcodecError, match="expected an image path"):
        privcodec.protect(12, face_policy, keys_dir=keys_dir, regions=[FACE])
    with pytest.raises(PrivcodecError, match="pad must be a whole number"):
        privcodec.protect(photo_path, face_policy, keys_dir=keys_dir, regions=[FACE], pad="5")


def test_the_lazily_imported_api_is_listed_for_completion():
    assert set(privcodec.__all__) <= set(dir(privcodec))
