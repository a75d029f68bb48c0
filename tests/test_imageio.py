"""Image input/output: every common mode becomes RGB, orientation is applied, metadata never
survives, hostile or damaged files give one clean ImageError, and outputs are written atomically."""
import io
import os
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from privcodec.errors import ImageError, OutputExistsError, PrivcodecError
from privcodec.imageio import WHITE, atomic_write, check_writable, load_image, save_image


def encode(img, fmt="PNG", **options):
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def pixel(src, xy=(0, 0)):
    x, y = xy
    return tuple(int(v) for v in load_image(src)[y, x])


def small_jpeg(colour, size=(8, 8)):
    return encode(Image.new("RGB", size, colour), "JPEG", quality=90)


def exif_with_gps_and_thumbnail(thumbnail: bytes) -> bytes:
    """A little-endian TIFF/EXIF block: IFD0 -> GPS IFD (latitude 52 N), IFD1 -> JPEG thumbnail."""
    def ifd(entries, next_offset):
        out = struct.pack("<H", len(entries))
        for tag, typ, count, value in entries:
            out += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
        return out + struct.pack("<I", next_offset)

    ifd0_at = 8
    gps_at = ifd0_at + 2 + 2 * 12 + 4
    lat_at = gps_at + 2 + 2 * 12 + 4
    ifd1_at = lat_at + 24
    thumb_at = ifd1_at + 2 + 2 * 12 + 4
    return (b"II*\0" + struct.pack("<I", ifd0_at)
            + ifd([(0x0112, 3, 1, struct.pack("<H", 1)),            # Orientation = 1
                   (0x8825, 4, 1, struct.pack("<I", gps_at))], ifd1_at)
            + ifd([(0x0001, 2, 2, b"N\0"),                          # GPSLatitudeRef
                   (0x0002, 5, 3, struct.pack("<I", lat_at))], 0)   # GPSLatitude
            + struct.pack("<6I", 52, 1, 30, 1, 0, 1)
            + ifd([(0x0201, 4, 1, struct.pack("<I", thumb_at)),     # thumbnail offset
                   (0x0202, 4, 1, struct.pack("<I", len(thumbnail)))], 0)
            + thumbnail)


def assert_no_metadata(data: bytes):
    assert b"Exif" not in data and b"GPS" not in data
    with Image.open(io.BytesIO(data)) as img:
        assert not img.getexif()
        for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "photoshop", "comment"):
            assert key not in img.info, key


# --- orientation and metadata ---------------------------------------------------------

def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high: left half red, right half blue. Orientation 6 = rotate 90° clockwise
    # for display, so the viewer sees 20 wide x 40 high with red on top.
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encode(img, "JPEG", quality=95, exif=exif))

    rgb = load_image(path)
    assert rgb.shape == (40, 20, 3) and rgb.dtype == np.uint8
    top, bottom = rgb[5, 10].astype(int), rgb[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60, "red on top"
    assert bottom[2] > 200 and bottom[0] < 60, "blue at the bottom"


def test_gps_thumbnail_icc_and_xmp_never_reach_the_output(tmp_path):
    thumbnail = small_jpeg((0, 255, 0))
    exif = exif_with_gps_and_thumbnail(thumbnail)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret location</x:xmpmeta>'
    src = tmp_path / "photo.jpg"
    src.write_bytes(encode(Image.new("RGB", (64, 48), (90, 90, 90)), "JPEG", exif=b"Exif\0\0" + exif,
                           icc_profile=icc, xmp=xmp))
    with Image.open(src) as original:                      # the input really carries it all
        assert original.getexif().get_ifd(0x8825)
        assert thumbnail in src.read_bytes() and "icc_profile" in original.info

    rgb = load_image(src)
    for name in ("out.png", "out.jpg", "out.webp"):
        save_image(rgb, tmp_path / name)
        data = (tmp_path / name).read_bytes()
        assert_no_metadata(data)
        assert thumbnail not in data and b"secret location" not in data


# --- modes ----------------------------------------------------------------------------

def test_rgb_png_is_read_exactly():
    arr = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert np.array_equal(load_image(encode(Image.fromarray(arr))), arr)


def test_grey():
    assert pixel(encode(Image.new("L", (4, 4), 77))) == (77, 77, 77)


def test_one_bit():
    img = Image.new("1", (4, 4), 0)
    img.putpixel((1, 0), 1)
    assert pixel(encode(img)) == (0, 0, 0)
    assert pixel(encode(img), (1, 0)) == (255, 255, 255)


def test_alpha_is_composited_over_white():
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)])
    data = encode(img)
    assert pixel(data, (0, 0)) == (255, 255, 255), "fully transparent -> white"
    assert pixel(data, (1, 0)) == (0, 0, 255), "opaque colour unchanged"
    assert all(abs(v - 127) <= 1 for v in pixel(data, (2, 0))), "half-transparent black -> mid grey"


def test_grey_with_alpha():
    img = Image.new("LA", (2, 1))
    img.putdata([(100, 0), (100, 255)])
    assert pixel(encode(img), (0, 0)) == (255, 255, 255)
    assert pixel(encode(img), (1, 0)) == (100, 100, 100)


def test_palette_with_and_without_transparency():
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putdata([0, 1])
    assert pixel(encode(img), (0, 0)) == (255, 0, 0)
    assert pixel(encode(img), (1, 0)) == (0, 255, 0)
    transparent = encode(img, transparency=0)
    assert pixel(transparent, (0, 0)) == (255, 255, 255)
    assert pixel(transparent, (1, 0)) == (0, 255, 0)


def test_16_bit_grey_is_scaled_not_clipped():
    img = Image.fromarray(np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16))
    assert img.mode == "I;16"
    rgb = load_image(encode(img))
    assert rgb[0, :, 0].tolist() == [0, 1, 4, 128, 255]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_16_bit_grey_transparency_is_composited_over_white():
    img = Image.fromarray(np.array([[0, 1000]], dtype=np.uint16))
    rgb = load_image(encode(img, transparency=0))
    assert rgb[0, :, 0].tolist() == [255, 4]


def test_16_bit_pgm_opened_as_mode_I_is_scaled():
    img = Image.fromarray(np.full((2, 2), 32896, dtype=np.uint16))
    assert Image.open(io.BytesIO(encode(img, "PPM"))).mode == "I"
    assert pixel(encode(img, "PPM")) == (128, 128, 128)


def test_32_bit_integer_tiff_is_refused_not_guessed():
    # 0..255 values in 32 bits would be near-black read as 16-bit, and garbage read as 8-bit
    with pytest.raises(ImageError, match="32-bit integer"):
        load_image(encode(Image.new("I", (2, 2), 200), "TIFF"))


def test_float_images_are_refused_not_guessed():
    with pytest.raises(ImageError, match="floating-point"):
        load_image(encode(Image.new("F", (2, 2), 0.5), "TIFF"))


def test_cmyk():
    img = Image.new("CMYK", (2, 1))
    img.putdata([(0, 0, 0, 0), (0, 255, 255, 0)])
    assert pixel(encode(img, "TIFF"), (0, 0)) == (255, 255, 255)
    assert pixel(encode(img, "TIFF"), (1, 0)) == (255, 0, 0)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def profile_with_red_and_green_swapped() -> bytes:
    """sRGB with its red and green primaries exchanged: a pixel (255, 0, 0) in it is pure green light."""
    icc = bytearray(srgb_profile())
    tags = {bytes(icc[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(struct.unpack(">I", icc[128:132])[0])}
    r, g = tags[b"rXYZ"], tags[b"gXYZ"]
    icc[r + 4:r + 12], icc[g + 4:g + 12] = icc[g + 4:g + 12], icc[r + 4:r + 12]
    return bytes(icc)


@pytest.mark.parametrize("mode,colour", [("RGB", (255, 0, 0)), ("RGBA", (255, 0, 0, 255)), ("P", 0)])
def test_pixels_in_an_embedded_colour_profile_are_converted_to_srgb(mode, colour):
    img = Image.new(mode, (4, 4), colour)
    if mode == "P":
        img.putpalette([255, 0, 0] * 256)
    assert pixel(encode(img, "PNG", icc_profile=profile_with_red_and_green_swapped())) == (0, 255, 0)


def linear_grey_profile() -> bytes:
    """A minimal ICC v2 grey profile with gamma 1: its value 77 is 30 % of white's light, sRGB 149."""
    def s15(v):
        return struct.pack(">i", round(v * 65536))

    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"wtpt", b"XYZ " + bytes(4) + d50), (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, 256) + bytes(2))]
    offset, table, data = 128 + 4 + 12 * len(tags), struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + bytes.fromhex("02100000") + b"mntrGRAYXYZ "
              + bytes(12) + b"acsp" + bytes(28) + d50 + bytes(48))
    return header + table + data


@pytest.mark.parametrize("mode,value", [("L", 77), ("LA", (77, 255))])
def test_grey_pixels_in_a_grey_profile_are_converted_to_srgb(mode, value):
    assert pixel(encode(Image.new(mode, (4, 4), value), "PNG", icc_profile=linear_grey_profile())) == (149, 149, 149)
    if mode == "LA":   # and transparency still composites over white
        assert pixel(encode(Image.new(mode, (4, 4), (77, 0)), "PNG", icc_profile=linear_grey_profile())) == WHITE


def test_srgb_tagged_and_unreadable_profiles_leave_the_pixels_as_they_are():
    img = Image.new("RGB", (4, 4), (200, 100, 50))
    assert pixel(encode(img, "PNG", icc_profile=srgb_profile())) == (200, 100, 50)
    assert pixel(encode(img, "JPEG", quality=100, icc_profile=b"not a profile" * 20)) == pixel(encode(img, "JPEG", quality=100))
    # a profile that does not fit the pixels (an RGB profile on grey) is ignored, not forced
    assert pixel(encode(Image.new("L", (4, 4), 77), "PNG", icc_profile=srgb_profile())) == (77, 77, 77)


def test_a_transparent_pixel_in_a_tagged_image_is_still_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert pixel(encode(img, "PNG", icc_profile=profile_with_red_and_green_swapped())) == (255, 255, 255)


def test_lab_is_colour_converted():
    grey = pixel(encode(Image.new("LAB", (2, 2), (128, 128, 128)), "TIFF"))
    assert max(grey) - min(grey) <= 2 and 110 < grey[0] < 130, "L*=50 neutral is mid grey in sRGB"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF"])
def test_other_input_formats(fmt):
    rgb = load_image(encode(Image.new("RGB", (16, 8), (200, 100, 50)), fmt))
    assert rgb.shape == (8, 16, 3)
    assert np.abs(rgb.astype(int) - (200, 100, 50)).max() <= 3


# --- bad input ------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match=r"missing\.jpg: no such file"):
        load_image(tmp_path / "missing.jpg")


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("content", [b"hello, not an image\n", b""])
def test_not_an_image(tmp_path, content):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=r"notes\.png: not a supported image file"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    path = tmp_path / "cut.img"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.img: cannot decode image") as exc:
        load_image(path)
    assert "\n" not in str(exc.value)


def test_corrupt_png_data(tmp_path):
    data = bytearray(encode(Image.new("RGB", (32, 32), (1, 2, 3))))
    idat = data.index(b"IDAT")
    data[idat + 4: idat + 12] = b"\xff" * 8           # damage the compressed pixels (and the CRC check)
    with pytest.raises(ImageError, match="cannot decode image"):
        load_image(bytes(data))


def test_pixel_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGB", (100, 100))))
    assert load_image(path, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageError, match=r"big\.png: image too large \(100x100 pixels"):
        load_image(path, max_pixels=9_999)


def test_side_limit_is_the_containers_and_checked_before_decoding():
    from privcodec.container.format import MAX_SIDE
    from privcodec.imageio import MAX_SIDE as imageio_max_side

    assert imageio_max_side == MAX_SIDE
    assert load_image(encode(Image.new("L", (MAX_SIDE, 1)))).shape == (1, MAX_SIDE, 3)
    for size in [(MAX_SIDE + 1, 1), (1, MAX_SIDE + 1)]:
        data = encode(Image.new("L", size))
        cut = data[:data.index(b"IDAT") + 8]          # header only: decoding would fail as truncated
        for src in (data, cut):
            with pytest.raises(ImageError, match=rf"image too large \({size[0]}x{size[1]}; a side can be at most "
                                                 rf"{MAX_SIDE} pixels\)$"):
                load_image(src)


@pytest.mark.parametrize("pillow_limit", [6_000, 4_000])   # Pillow warns above 1x, refuses above 2x
def test_pillow_global_limit_is_respected(monkeypatch, pillow_limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    with pytest.raises(ImageError, match="image too large"):
        load_image(encode(Image.new("RGB", (100, 100))))


def test_bytes_input_is_named_in_errors():
    with pytest.raises(ImageError, match="<image data>"):
        load_image(b"junk")


# --- writing --------------------------------------------------------------------------

def test_save_png_is_lossless_and_png_is_the_default(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    for name in ("a.png", "noext"):
        save_image(arr, tmp_path / name)
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG"
        assert np.array_equal(load_image(tmp_path / name), arr)


@pytest.mark.parametrize("name, fmt", [("a.jpg", "JPEG"), ("a.JPEG", "JPEG"), ("a.webp", "WEBP")])
def test_save_by_extension(tmp_path, name, fmt):
    save_image(np.full((8, 8, 3), 120, np.uint8), tmp_path / name)
    with Image.open(tmp_path / name) as img:
        assert img.format == fmt


def test_save_rejects_unknown_extension(tmp_path):
    with pytest.raises(ImageError, match=r"unsupported output format '\.bmp'"):
        save_image(np.zeros((2, 2, 3), np.uint8), tmp_path / "a.bmp")
    assert not (tmp_path / "a.bmp").exists()


def test_save_rejects_wrong_arrays(tmp_path):
    for bad in (np.zeros((2, 2), np.uint8), np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 4), np.uint8)):
        with pytest.raises(ValueError):
            save_image(bad, tmp_path / "x.png")


def test_existing_output_needs_force(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match=r"out\.png exists \(use --force to overwrite\)"):
        save_image(np.zeros((2, 2, 3), np.uint8), path)
    assert path.read_bytes() == b"old"
    save_image(np.zeros((2, 2, 3), np.uint8), path, force=True)
    assert load_image(path).shape == (2, 2, 3)


def test_atomic_write_with_mode(tmp_path):
    path = tmp_path / "key"
    atomic_write(path, b"secret", mode=0o600)
    assert path.read_bytes() == b"secret"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["key"]


@pytest.mark.parametrize("existing", [None, b"old contents"])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, existing):
    path = tmp_path / "out.prvc"
    if existing is not None:
        path.write_bytes(existing)

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PrivcodecError, match=r"cannot write .*out\.prvc: Input/output error"):
        atomic_write(path, b"new contents" * 1000, force=True)
    assert os.listdir(tmp_path) == ([] if existing is None else ["out.prvc"])
    if existing is not None:
        assert path.read_bytes() == existing, "the old file is untouched"


def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.png", b"data")
    assert os.listdir(tmp_path) == []


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(PrivcodecError, match="cannot write"):
        atomic_write(tmp_path / "no" / "such" / "dir.png", b"x")


def test_check_writable_fails_before_any_work(tmp_path):
    check_writable(tmp_path / "new.png")
    (tmp_path / "old.png").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="use --force"):
        check_writable(tmp_path / "old.png")
    check_writable(tmp_path / "old.png", force=True)
    with pytest.raises(PrivcodecError, match="is a directory"):
        check_writable(tmp_path, force=True)
    with pytest.raises(PrivcodecError, match="no such directory"):
        check_writable(tmp_path / "missing" / "out.png")


def test_force_replaces_regular_files_only(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "target.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "target.png")
    for name in ("pipe", "link.png"):
        with pytest.raises(PrivcodecError, match="not a regular file"):
            check_writable(tmp_path / name, force=True)
    with pytest.raises(PrivcodecError, match="empty"):
        check_writable("")
    with pytest.raises(PrivcodecError, match="directory"):
        check_writable(str(tmp_path / "newdir") + "/")


def test_an_output_never_overwrites_an_input(tmp_path):
    (tmp_path / "in.png").write_bytes(b"x")
    with pytest.raises(PrivcodecError, match="overwrite the input"):
        check_writable(tmp_path / "." / "in.png", force=True, inputs=[tmp_path / "in.png"])
