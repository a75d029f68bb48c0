"""Carriers: a protected photo shared as an ordinary JPEG or PNG, and the Pillow plugin."""
from __future__ import annotations

import gc
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import privcodec
import privcodec.pillow
from privcodec.container import carrier, open_container
from privcodec.errors import FormatError
from privcodec.keys import generate_identity

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT / "tests/fixtures/keys"
SYM = KEYS / "fixture-sym.key"
PRVC = (ROOT / "tests/fuzz/corpus/protected-redacted.prvc").read_bytes()


@pytest.fixture(scope="module")
def carriers():
    return {kind: privcodec.to_carrier(PRVC, kind) for kind in ("jpeg", "png")}


def test_plain_pillow_shows_the_keyless_view(carriers):
    public = privcodec.view(PRVC).pixels
    png = np.asarray(Image.open(io.BytesIO(carriers["png"])).convert("RGB"))
    assert np.array_equal(png, public)                                       # PNG: identical pixels
    jpg = np.asarray(Image.open(io.BytesIO(carriers["jpeg"])).convert("RGB")).astype(float)
    assert 10 * np.log10(255 ** 2 / np.mean((jpg - public) ** 2)) > 30       # JPEG: the same picture


def test_the_keyed_view_from_a_carrier_is_the_keyed_view_from_the_prvc(carriers):
    expected = privcodec.view(PRVC, keys=[SYM]).pixels
    for data in carriers.values():
        assert carrier.extract(data) == PRVC
        assert np.array_equal(privcodec.view(data, keys=[SYM]).pixels, expected)
        assert np.array_equal(np.asarray(privcodec.pillow.open(data, keys=[SYM])), expected)


def test_grant_and_strip_on_a_carrier_give_a_carrier_with_the_same_pixels(carriers):
    bob = generate_identity("symmetric")
    for kind, data in carriers.items():
        granted = privcodec.grant(data, SYM, bob.recipient)
        stripped = privcodec.strip(granted, keys=[bob])
        for out in (granted, stripped):
            assert carrier.kind_of(out) == kind
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(out)).convert("RGB")),
                                  np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        assert privcodec.view(granted, keys=[bob]).decoded
        assert privcodec.inspect(stripped)["carrier"] == kind


def test_a_carrier_re_saved_by_an_app_gives_one_clear_error(carriers):
    for data in carriers.values():
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buf, "JPEG", quality=90)
        with pytest.raises(FormatError, match="no privcodec data in this image: it was probably re-encoded"):
            privcodec.view(buf.getvalue())


def test_any_changed_byte_inside_the_embedded_container_is_detected(carriers):
    for data in carriers.values():
        start = data.index(PRVC[:16])
        for offset in range(0, len(PRVC), 7):
            bad = bytearray(data)
            bad[start + offset] ^= 0x04
            with pytest.raises(FormatError):
                privcodec.view(bytes(bad))


def test_jpeg_segments_stay_under_64_kib_and_are_sequenced():
    big = bytes(range(256)) * 1000                              # 256 kB stands in for a large container
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    data = carrier.embed(jpeg.getvalue(), big)
    assert carrier.extract(data) == big
    segments = [(m, a, b) for m, a, b in carrier._jpeg_segments(data) if m == carrier.APP11]
    assert len(segments) == 4 and all(b - a <= 65537 for _, a, b in segments)
    # a missing segment is damage, not a shorter file
    _, a, b = segments[1]
    with pytest.raises(FormatError, match="damaged"):
        carrier.extract(data[:a] + data[b:])


def test_the_pillow_plugin_opens_prvc_files(tmp_path):
    privcodec.pillow.register()
    path = tmp_path / "x.prvc"
    path.write_bytes(PRVC)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with Image.open(path) as im:
            assert im.format == "PRVC" and im.size == (64, 48)
            assert np.array_equal(np.asarray(im.convert("RGB")), privcodec.view(PRVC).pixels)
        del im
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]   # Pillow's file was closed


def test_the_pillow_plugin_follows_pillows_rules(tmp_path, monkeypatch):
    from privcodec.errors import ImageError
    from privcodec.imageio import load_image

    privcodec.pillow.register()
    path = tmp_path / "x.prvc"
    path.write_bytes(PRVC)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)      # 64 x 48 is over twice that
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError):           # a .prvc is never a photo to protect, plugin or not
        load_image(path)


def test_the_pillow_plugin_reads_the_header_on_open_and_decodes_on_load(tmp_path, monkeypatch):
    privcodec.pillow.register()
    path = tmp_path / "x.prvc"
    path.write_bytes(PRVC)
    decodes = []
    real_view = privcodec.api.view
    monkeypatch.setattr(privcodec.api, "view", lambda *a, **k: decodes.append(1) or real_view(*a, **k))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        im = Image.open(path)
        assert (im.format, im.size, im.mode) == ("PRVC", (64, 48), "RGB") and not decodes
        assert im.info["privcodec"]["missing"] and im.info["privcodec"]["redacted"]
        assert np.array_equal(np.asarray(im), real_view(PRVC).pixels) and len(decodes) == 1
        assert im.fp is None          # the file Pillow opened is closed once loaded, as for a PNG
        del im
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_the_pillow_plugin_reports_a_payload_that_fails_to_decode_as_pillow_does(tmp_path, monkeypatch):
    privcodec.pillow.register()
    path = tmp_path / "x.prvc"
    path.write_bytes(PRVC)

    def forged(*args, **kwargs):
        raise FormatError("not a valid .prvc file (corrupted or tampered)")

    im = Image.open(path)
    monkeypatch.setattr(privcodec.api, "view", forged)
    with pytest.raises(OSError, match="cannot decode .prvc: not a valid .prvc file"):
        im.load()
    im.close()


def test_privcodec_pillow_open_takes_what_image_open_takes(tmp_path):
    path = tmp_path / "x.prvc"
    path.write_bytes(PRVC)
    full = privcodec.view(PRVC, SYM).pixels
    with open(path, "rb") as f:
        for source in (path, str(path), f, PRVC):
            im = privcodec.pillow.open(source, keys=[SYM])
            assert np.array_equal(np.asarray(im), full)
            assert im.format == "PRVC" and im.info["privcodec"]["decoded"] and not im.info["privcodec"]["missing"]
    with pytest.raises(TypeError, match="keys are a keyword argument"):
        privcodec.pillow.open(path, [SYM])
    with pytest.raises(ValueError, match="bad mode"):
        privcodec.pillow.open(path, "w")


def test_saving_as_prvc_protects_the_image_with_a_policy(tmp_path, photo_path, keys_dir, face_policy):
    from privcodec.errors import PrivcodecError

    privcodec.pillow.register()
    out = tmp_path / "saved.prvc"
    with Image.open(photo_path) as im:
        im.save(out, policy=face_policy, keys_dir=keys_dir, regions=["16,16,48,64:face"], detect=[])
        with pytest.raises(PrivcodecError, match="needs a policy"):
            im.save(tmp_path / "nopolicy.prvc")
        with pytest.raises(TypeError, match="'qualty'"):
            im.save(tmp_path / "typo.prvc", policy=face_policy, keys_dir=keys_dir, qualty=5)
    assert not (tmp_path / "nopolicy.prvc").exists() and not (tmp_path / "typo.prvc").exists()
    keyless, keyed = privcodec.view(out), privcodec.view(out, keys_dir / "family.key")
    assert keyless.missing and not keyed.missing


def test_cli_protect_to_a_carrier_and_view_from_it(tmp_path, photo_path):
    from test_cli import run

    out = tmp_path / "shared.jpg"
    run("protect", photo_path, "-o", out, "--policy", ROOT / "tests/fixtures/policy.toml", "--keys-dir", KEYS,
        "--region", "10,10,40,40:face", "--no-detect")
    assert Image.open(out).format == "JPEG"
    r = run("view", out, "-o", tmp_path / "full.avif", "--key", SYM, "--quality", "80")
    assert "not authenticated" in r.stderr
    assert Image.open(tmp_path / "full.avif").format == "AVIF"


def test_phone_photos_heic_and_avif_are_read(tmp_path):
    import pillow_heif

    from privcodec.imageio import load_image

    photo = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    heif = pillow_heif.from_bytes(mode="RGB", size=(56, 40), data=photo.tobytes())
    heif.save(tmp_path / "p.heic", quality=-1)
    assert load_image(tmp_path / "p.heic").shape == (40, 56, 3)
    Image.fromarray(photo).save(tmp_path / "p.avif", quality=90)
    assert load_image(tmp_path / "p.avif").shape == (40, 56, 3)


def _jpeg_with_exif(path):
    """A JPEG whose EXIF has a camera name, GPS and a thumbnail (IFD1) that still shows the photo."""
    import struct

    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(thumb, "JPEG")
    thumb = thumb.getvalue()
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHI", 0x010F, 2, 4) + b"Cam\0"
    ifd1_off = 8 + len(ifd0) + 4
    thumb_off = ifd1_off + 2 + 24 + 4
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumb_off) + \
        struct.pack("<HHII", 0x0202, 4, 1, len(thumb)) + struct.pack("<I", 0)
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd0 + struct.pack("<I", ifd1_off) + ifd1 + thumb
    photo = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(path, "JPEG", exif=b"Exif\0\0" + tiff)
    return thumb


def test_kept_metadata_goes_to_key_holders_only_and_without_the_thumbnail(tmp_path):
    from test_cli import run

    thumb = _jpeg_with_exif(tmp_path / "p.jpg")
    run("protect", tmp_path / "p.jpg", "-o", tmp_path / "p.prvc", "--policy", ROOT / "tests/fixtures/policy.toml",
        "--keys-dir", KEYS, "--region", "0,0,30,30:face", "--no-detect", "--keep-metadata", "fixture-sym")
    data = (tmp_path / "p.prvc").read_bytes()
    assert b"Cam\0" not in data and thumb[:20] not in data and open_container(data).metadata_chunk is not None
    run("view", tmp_path / "p.prvc", "-o", tmp_path / "public.jpg")
    assert not Image.open(tmp_path / "public.jpg").getexif()
    run("view", tmp_path / "p.prvc", "-o", tmp_path / "full.jpg", "--key", SYM)
    restored = Image.open(tmp_path / "full.jpg")
    assert restored.getexif().get(0x010F) == "Cam"
    assert thumb[:20] not in restored.info["exif"]                 # the thumbnail never comes back
    other = privcodec.view(data, keys=[KEYS / "fixture-x25519.key"])   # opens the face, not the metadata
    assert other.decoded and other.metadata is None
    # granting the groups does not hand over where and when the photo was taken; --metadata does
    from privcodec.keys import generate_identity

    bob = generate_identity("symmetric")
    granted = privcodec.grant(data, SYM, bob.recipient)
    assert privcodec.view(granted, keys=[bob]).decoded and privcodec.view(granted, keys=[bob]).metadata is None
    with_meta = privcodec.grant(data, SYM, bob.recipient, metadata=True)
    assert privcodec.view(with_meta, keys=[bob]).metadata.exif


def test_damaged_carriers_end_in_clean_errors_and_fill_bytes_are_fine(carriers):
    import struct
    import zlib

    png = carriers["png"]
    chunk = png.index(b"prVC") - 4
    length = struct.unpack(">I", png[chunk:chunk + 4])[0]
    only_prvc = png[:8] + png[chunk:chunk + 12 + length] + struct.pack(">I", 0) + b"IEND" + \
        struct.pack(">I", zlib.crc32(b"IEND"))                               # no image data at all
    with pytest.raises(FormatError):
        privcodec.strip(only_prvc)
    jpeg = carriers["jpeg"]
    padded = jpeg[:2] + b"\xff\xff" + jpeg[2:]                              # fill bytes before a marker
    assert carrier.extract(padded) == PRVC


def test_saving_as_prvc_keeps_the_images_own_metadata_for_its_recipients_only(tmp_path):
    thumb = _jpeg_with_exif(tmp_path / "p.jpg")
    privcodec.pillow.register()
    with Image.open(tmp_path / "p.jpg") as im:
        im.save(tmp_path / "p.prvc", policy=ROOT / "tests/fixtures/policy.toml", keys_dir=KEYS,
                regions=["0,0,30,30:face"], detect=[], keep_metadata="fixture-sym")
    data = (tmp_path / "p.prvc").read_bytes()
    assert b"Cam\0" not in data and thumb[:20] not in data
    kept = privcodec.view(data, keys=[SYM]).metadata
    exif = Image.Exif()
    exif.load(kept.exif)
    assert exif.get(0x010F) == "Cam" and thumb[:20] not in kept.exif
    assert privcodec.view(data).metadata is None
    with pytest.raises(privcodec.errors.PrivcodecError, match="not a pixel array"):
        privcodec.protect(np.zeros((32, 32, 3), np.uint8), ROOT / "tests/fixtures/policy.toml", keys_dir=KEYS,
                          detect=[], keep_metadata="fixture-sym")


def test_kept_metadata_is_an_allow_list_without_previews_or_orientation(tmp_path):
    from privcodec.imageio import read_metadata

    exif = Image.Exif()
    exif[0x010F] = "Cam"                                   # make: kept
    exif[0x0112] = 6                                       # orientation: the pixels are already upright
    exif[0x8649] = b"8BIM photoshop thumbnail"             # Photoshop resources: may hold a preview
    exif.get_ifd(0x8769)[0x9003] = "2024:01:01 10:00:00"   # capture time: kept
    exif.get_ifd(0x8769)[0x927C] = b"maker note preview"   # maker note: dropped
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmp:Rating="3">'
           b'<xmp:Thumbnails><rdf:Alt><rdf:li xmpGImg:image="/9j/4AAQ"/></rdf:Alt></xmp:Thumbnails>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p.jpg", exif=exif.tobytes(), xmp=xmp)
    meta = read_metadata(tmp_path / "p.jpg")
    kept = Image.Exif()
    kept.load(meta.exif)
    assert kept.get(0x010F) == "Cam" and 0x0112 not in kept and 0x8649 not in kept
    assert kept.get_ifd(0x8769).get(0x9003) == "2024:01:01 10:00:00" and 0x927C not in kept.get_ifd(0x8769)
    assert b"Rating" in meta.xmp and b"Thumbnails" not in meta.xmp and b"/9j/" not in meta.xmp


def test_a_keyed_png_view_gets_the_kept_xmp_without_orientation(tmp_path):
    from privcodec.imageio import encode_image, read_metadata

    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmp:Rating="3" '
           b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p.jpg", xmp=xmp)
    meta = read_metadata(tmp_path / "p.jpg")
    assert b"Orientation" not in meta.xmp          # the pixels are upright: never rotate them again
    png = Image.open(io.BytesIO(encode_image(np.zeros((8, 8, 3), np.uint8), "PNG", metadata=meta)))
    kept = png.info["xmp"]                          # Pillow's PNG writer ignores xmp=: written as iTXt
    assert b"Rating" in (kept.encode() if isinstance(kept, str) else kept)


@pytest.mark.parametrize("xmp", [
    # the older Adobe prefix for the same namespace
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmp:Rating="3" '
    b'xmlns:xap="http://ns.adobe.com/xap/1.0/" xmlns:xapGImg="http://ns.adobe.com/xap/1.0/g/img/">'
    b'<xap:Thumbnails><rdf:Alt><rdf:li><xapGImg:image>/9j/THUMB</xapGImg:image></rdf:li></rdf:Alt>'
    b'</xap:Thumbnails></rdf:Description></rdf:RDF></x:xmpmeta>',
    # any prefix bound to it
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmp:Rating="3" '
    b'xmlns:q=\'http://ns.adobe.com/xap/1.0/g/img/\'><rdf:li q:image="/9j/THUMB"/></rdf:Description>'
    b'</rdf:RDF></x:xmpmeta>',
    # face regions: who is in the photo and where their faces are
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmp:Rating="3" '
    b'xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" '
    b'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
    b'<mwg-rs:Regions><rdf:Bag><rdf:li mwg-rs:Name="THUMB Alice"/></rdf:Bag></mwg-rs:Regions>'
    b'<Iptc4xmpExt:PersonInImage><rdf:Bag><rdf:li>THUMB Alice</rdf:li></rdf:Bag></Iptc4xmpExt:PersonInImage>'
    b'</rdf:Description></rdf:RDF></x:xmpmeta>',
])
def test_kept_xmp_loses_previews_and_face_regions_under_any_prefix(tmp_path, xmp):
    from privcodec.imageio import read_metadata

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p.jpg", xmp=xmp)
    kept = read_metadata(tmp_path / "p.jpg").xmp
    assert b"Rating" in kept and b"THUMB" not in kept and kept.count(b"<") == kept.count(b">")
