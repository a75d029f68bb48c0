"""Reading input photos as plain RGB pixels, and writing outputs atomically.

Only pixels cross this boundary.  ``load_image`` returns a bare array of sRGB pixels, so EXIF
(GPS, camera, the embedded thumbnail, which still shows the unredacted face), XMP, IPTC and ICC
profiles are gone; the two pieces of metadata that matter for pixels are applied first: the EXIF
orientation, and an ICC profile (the pixels are converted from it to sRGB).
``save_image`` writes PNG, JPEG or WebP with no metadata at all.

Outputs are written to a temporary file in the target directory, fsynced and renamed over the
target, so a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .container.format import MAX_SIDE
from .errors import ImageError, OutputExistsError, PrivcodecError
from .limits import MAX_PIXELS

# MAX_SIDE (65536): the longest side, in pixels, that a .prvc container can store.
WHITE = (255, 255, 255)          # transparent pixels are composited over white
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".avif": "AVIF"}
# EPS is decoded by running Ghostscript on the file: never do that with untrusted input.  PRVC is
# privcodec's own Pillow plugin (pillow.register()): a .prvc is not a photo to protect, and
# decoding one inside the loader would skip this module's limits.
_UNSAFE_FORMATS = {"EPS", "PRVC"}


def load_image(src: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as a uint8 (H, W, 3) RGB array, orientation applied, metadata dropped.

    Raises ImageError naming the file for anything unreadable or unacceptable.  The limit is the
    lower of ``max_pixels`` and Pillow's own ``Image.MAX_IMAGE_PIXELS`` (when that is set); no side
    may be longer than ``MAX_SIDE`` pixels (what the container stores).  Both are checked on the
    header, before any pixel is decoded.
    """
    name = "<image data>" if isinstance(src, (bytes, bytearray)) else str(src)
    try:
        fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read: {e.strerror}") from None

    with fp, open_untrusted(fp, name, max_pixels=max_pixels) as img:
        _refuse_32bit_integers(img, name)
        return _to_rgb(ImageOps.exif_transpose(img), name)


def pil_to_rgb(img: Image.Image, *, max_pixels: int = MAX_PIXELS, name: str = "<PIL image>") -> np.ndarray:
    """A PIL image a caller already opened, as load_image would read its file: the same limits,
    orientation applied, the same conversion to uint8 RGB (profile, alpha over white, 16-bit grey)."""
    _check_size(*img.size, name, _pixel_limit(max_pixels))
    try:
        _refuse_32bit_integers(img, name)
        return _to_rgb(ImageOps.exif_transpose(img), name)
    except ImageError:
        raise
    except Exception as e:   # a lazily opened image decodes here: damaged data, as in open_untrusted
        raise ImageError(f"{name}: cannot decode image: {_reason(e)}") from None


def _pixel_limit(max_pixels: int) -> int:
    """The lower of ``max_pixels`` and Pillow's own MAX_IMAGE_PIXELS (when that is set)."""
    return max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)


def _check_size(width: int, height: int, name: str, limit: int, what: str = "image") -> None:
    if width == 0 or height == 0:
        raise ImageError(f"{name}: {what} has zero size ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageError(f"{name}: {what} too large ({width}x{height}; a side can be at most {MAX_SIDE} pixels)")
    if width * height > limit:
        raise ImageError(f"{name}: {what} too large ({width}x{height} pixels, limit {limit:,})")


def _reason(e: Exception) -> str:
    """One line for an exception from Pillow, which reports damaged data with many types."""
    return getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)


def _refuse_32bit_integers(img: Image.Image, name: str) -> None:
    """Pillow's mode "I" holds 16-bit grey from PGM and the like, but a TIFF can store true 32-bit
    integers, whose range (0..255? 0..65535? 0..2^32?) is as unknown as a float's."""
    bits = getattr(img, "tag_v2", {}).get(258) if img.mode == "I" else None
    if bits and max(bits) > 16:
        raise ImageError(f"{name}: 32-bit integer images are not supported; convert to 8- or 16-bit first")


def read_metadata(src: str | os.PathLike | bytes | Image.Image, *, max_pixels: int = MAX_PIXELS):
    """The photo's EXIF and XMP for key holders (``protect --keep-metadata``): EXIF re-serialised
    without the thumbnail IFD (the thumbnail still shows the unredacted face) and without maker
    notes (which may hold previews); XMP as stored.  ``src`` is the photo file (a path or its
    bytes) or a Pillow image, whose own EXIF/XMP is read.  Returns container.Metadata, empty if none."""
    if isinstance(src, Image.Image):
        return _kept_metadata(src)
    name = "<image data>" if isinstance(src, (bytes, bytearray)) else str(src)
    fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    with fp, open_untrusted(fp, name, max_pixels=max_pixels) as img:
        return _kept_metadata(img)


def _kept_metadata(img: Image.Image):
    """The allow-listed EXIF and the XMP (previews dropped) of an opened image: what Pillow read
    from its file (``img.getexif()``, ``img.info["xmp"]``), or what a caller put there."""
    from .container import Metadata

    exif = img.getexif()
    raw = b""
    if len(exif):
        kept = Image.Exif()
        for tag, value in exif.items():
            if tag in _EXIF_KEEP_IFD0:
                kept[tag] = value
        for ifd in (0x8769, 0x8825):                     # Exif and GPS sub-IFDs, allow-listed
            sub = {t: v for t, v in exif.get_ifd(ifd).items() if ifd == 0x8825 or t in _EXIF_KEEP_SUB}
            if sub:
                kept.get_ifd(ifd).update(sub)
        raw = kept.tobytes()                             # no IFD1 (thumbnail) is ever written
    xmp = img.info.get("xmp", b"")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return Metadata(raw, _without_previews(bytes(xmp)))


# What a key holder gets back: when, with what, where — never an embedded preview (thumbnails,
# Photoshop resources, XMP in EXIF, maker notes), which would show what the policy protects, and
# not Orientation (the pixels are already upright).
_EXIF_KEEP_IFD0 = {0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298}   # description, make, model,
#                                                                             software, date, artist, copyright
_EXIF_KEEP_SUB = {0x829A, 0x829D, 0x8822, 0x8827, 0x8830, 0x8832, 0x9000, 0x9003, 0x9004, 0x9010, 0x9011,
                  0x9201, 0x9202, 0x9204, 0x9207, 0x9209, 0x920A, 0xA402, 0xA403, 0xA405, 0xA406, 0xA431,
                  0xA432, 0xA433, 0xA434}                                 # exposure, lens, capture times


# XMP properties never kept, by namespace (the prefix is the file's choice: old Adobe files say
# xap: for xmp:): embedded previews, which show the faces, and face regions, which name the
# people and locate their faces (metadata recipients need not be the faces' recipients).
# namespace: (its usual prefixes, the properties dropped)
_XMP_DROP = {
    b"http://ns.adobe.com/xap/1.0/": ((b"xmp", b"xap"), (b"Thumbnails",)),
    b"http://ns.adobe.com/xap/1.0/g/img/": ((b"xmpGImg", b"xapGImg"), (b"image",)),
    b"http://www.metadataworkinggroup.com/schemas/regions/": ((b"mwg-rs",), (b"Regions",)),
    b"http://ns.microsoft.com/photo/1.2/": ((b"MP",), (b"RegionInfo",)),
    b"http://iptc.org/std/Iptc4xmpExt/2008-02-29/": ((b"Iptc4xmpExt",), (b"PersonInImage", b"PersonInImageWDetails")),
    # the pixels are already upright: a kept orientation would turn the keyed view a second time
    b"http://ns.adobe.com/tiff/1.0/": ((b"tiff",), (b"Orientation",)),
}


def _without_previews(xmp: bytes) -> bytes:
    """XMP without embedded thumbnails and face regions (_XMP_DROP), whatever prefixes it binds."""
    import re

    for uri, (usual, names) in _XMP_DROP.items():
        declared = re.findall(rb'xmlns:([\w.-]+)\s*=\s*["\']' + re.escape(uri) + rb'["\']', xmp)
        for prefix in set(declared) | set(usual):
            for name in names:
                tag = re.escape(prefix + b":" + name)
                xmp = re.sub(rb"<" + tag + rb"\b[^>]*/>", b"", xmp)                   # <p:x .../>
                xmp = re.sub(rb"<" + tag + rb"\b.*?</" + tag + rb"\s*>", b"", xmp, flags=re.S)
                xmp = re.sub(rb"\s" + tag + rb"\s*=\s*(\"[^\"]*\"|'[^']*')", b"", xmp)   # p:x="..."
    return xmp


@contextlib.contextmanager
def open_untrusted(source, name: str, *, max_pixels: int | None = None, what: str = "image"):
    """Open an untrusted file with Pillow, safely: no formats that run external programs,
    decompression-bomb warnings are errors, and the size is checked on the header before any
    pixel is decoded.  Every failure, also one raised in the ``with`` body, is an ImageError."""
    limit = _pixel_limit(MAX_PIXELS if max_pixels is None else max_pixels)
    _register_heif()
    Image.init()
    formats = [f for f in Image.ID if f not in _UNSAFE_FORMATS]
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it a hard stop.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as img:
                _check_size(*img.size, name, limit, what)
                yield img
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: {what} too large (over the decompression-bomb limit)") from None
    except FileNotFoundError:
        raise ImageError(f"{name}: cannot read {what}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a supported image file") from None
    except Exception as e:  # Pillow reports damaged data with many exception types
        raise ImageError(f"{name}: cannot decode {what}: {_reason(e)}") from None


def _register_heif() -> None:
    """HEIC/HEIF, as phones shoot them (pillow-heif); AVIF is read by Pillow itself."""
    global _HEIF_DONE
    if _HEIF_DONE:
        return
    _HEIF_DONE = True
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()


_HEIF_DONE = False


def _to_rgb(img: Image.Image, name: str = "image") -> np.ndarray:
    if img.mode.startswith("F"):
        # Float pixels have no agreed range (0..1? 0..255? HDR?): guessing would make a wrong
        # picture, and Pillow's own convert clips 0..1 data to black.
        raise ImageError(f"{name}: floating-point images are not supported; "
                         "convert to 8- or 16-bit first")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale 0..65535 to 0..255 (Pillow's own convert would clip at 255).
        # Mode "I" here is 16-bit data (PGM, ...): true 32-bit TIFFs were refused on opening.
        raw = np.asarray(img)
        grey = np.round(raw.astype(np.float64).clip(0, 65535) / 257.0).astype(np.uint8)
        transparent = img.info.get("transparency")
        if isinstance(transparent, int):      # a PNG tRNS grey value: over white, as with alpha
            grey[raw == transparent] = WHITE[0]
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "LAB":
        # Pillow's plain convert copies LAB channels as if they were RGB; do a real colour transform.
        from PIL import ImageCms
        lab_to_srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                              "LAB", "RGB")
        return np.array(ImageCms.applyTransform(img, lab_to_srgb), dtype=np.uint8)
    img = _embedded_profile_to_srgb(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or img.has_transparency_data:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)   # one copy: a 24 MP photo is 72 MB


# The pixel modes an embedded profile is applied to, by the profile's colour space (anything else,
# e.g. an RGB profile on a palette image, is first converted to the first mode listed).
_PROFILE_MODES = {"RGB": ("RGB", "RGBA"), "CMYK": ("CMYK",), "GRAY": ("L", "LA")}


def _embedded_profile_to_srgb(img: Image.Image) -> Image.Image:
    """The pixels in sRGB, if the file says they are in another colour space (an ICC profile:
    Display P3 from phones, Adobe RGB from cameras, a press CMYK): privcodec's outputs carry no
    profile, and every viewer shows untagged pixels as sRGB, so unconverted P3 would look washed out.
    A profile that littlecms cannot read, or that does not fit the pixels, is ignored (the pixels
    are taken as sRGB, as a viewer without colour management shows them)."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        modes = _PROFILE_MODES.get(profile.profile.xcolor_space.strip())
        if modes is None or img.mode not in modes and (modes[0] != "RGB" or img.mode not in ("P", "PA")):
            return img
        if img.mode not in modes:   # a palette image: its colours, with their transparency
            img = img.convert("RGBA" if img.has_transparency_data else "RGB")
        alpha = img.getchannel("A") if img.mode == "LA" else None   # littlecms takes grey without alpha
        source = img.getchannel("L") if alpha is not None else img
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(source, profile, srgb,
                                              outputMode="RGBA" if img.mode == "RGBA" else "RGB")
        if alpha is not None:
            converted.putalpha(alpha)
    except Exception:   # a hostile or broken profile: whatever littlecms or Pillow make of it, it is ignored
        return img
    converted.info.pop("icc_profile", None)
    return converted


def save_image(array: np.ndarray, path: str | os.PathLike, *, force: bool = False, mode: int | None = None,
               quality: int | None = None, metadata=None) -> None:
    """Write a uint8 (H, W, 3) RGB array atomically, format by extension (.png default), no metadata.
    ``mode``: exact permission bits (keyed views are written 0600: they hold what was protected);
    ``quality``: 1..100 for JPEG, WebP and AVIF (default: JPEG 95, WebP lossless, AVIF 90)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"save_image needs a uint8 (H, W, 3) array, got {array.dtype} {array.shape}")
    path = Path(path)
    # zlib level 1: a 12 MP PNG in 0.7 s instead of 2.8 s, for files about a fifth larger
    atomic_write(path, encode_image(array, image_format_for(path), quality=quality, metadata=metadata, png_level=1),
                 force=force, mode=mode)


def encode_image(array: np.ndarray, fmt: str = "PNG", *, quality: int | None = None, metadata=None,
                 png_level: int = 6) -> bytes:
    """uint8 (H, W, 3) RGB -> file bytes in ``fmt`` (PNG; JPEG at quality 95, lossless WebP and AVIF at
    quality 90 unless ``quality`` is given)."""
    if quality is not None and fmt in ("JPEG", "WEBP", "AVIF"):
        options = {"quality": int(quality)}
    else:
        options = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}, "AVIF": {"quality": 90}}.get(fmt, {})
    options = dict(options)
    if fmt == "PNG":
        options["compress_level"] = png_level
    if metadata is not None:   # a keyed view restores the kept EXIF/XMP; nothing else is ever written
        if metadata.exif:
            options["exif"] = metadata.exif        # as Exif.tobytes() wrote it ("Exif\0\0" + TIFF)
        if metadata.xmp and fmt == "PNG":
            # Pillow's PNG writer ignores xmp=: the standard iTXt chunk, as Adobe writes it
            from PIL import PngImagePlugin

            chunks = PngImagePlugin.PngInfo()
            chunks.add_itxt("XML:com.adobe.xmp", metadata.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = chunks
        elif metadata.xmp:
            options["xmp"] = metadata.xmp
    buf = io.BytesIO()
    # A fresh Image from the array has an empty info dict: nothing but pixels is written.
    try:
        Image.fromarray(np.ascontiguousarray(array), "RGB").save(buf, fmt, **options)
    except (KeyError, ValueError, OSError) as e:   # no encoder for the format; kept metadata too large
        raise ImageError(f"cannot write {fmt}: {e}") from None
    return buf.getvalue()


def image_format_for(path: str | os.PathLike) -> str:
    """Pillow format name for an output image path, by extension (no extension: PNG)."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in SAVE_FORMATS:
        raise ImageError(f"{path}: unsupported output format '{suffix}' (use .png, .jpg, .webp or .avif)")
    return SAVE_FORMATS.get(suffix, "PNG")


def check_writable(path: str | os.PathLike, force: bool = False, *, inputs=()) -> None:
    """Fail early, before any slow work, if ``path`` could not be written as an output.

    ``--force`` replaces regular files only: never a device, pipe, directory or symlink (the
    rename would replace the link or the device node itself), and never one of ``inputs``."""
    text = os.fspath(path)
    if not text:
        raise PrivcodecError("the output path is empty")
    path = Path(path)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise PrivcodecError(f"{text}: is a directory; give a file name")
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise PrivcodecError(f"{path}: the output would overwrite the input")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise PrivcodecError(f"{path} exists and is not a regular file; refusing to replace it")
    if path.exists() and _is_key_file(path):
        # even with --force: it may be the only key that opens the very file being written
        raise PrivcodecError(f"{path} is a privcodec key file; refusing to replace it")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists (use --force to overwrite)")
    if not path.parent.is_dir():
        raise PrivcodecError(f"cannot write {path}: no such directory {path.parent}")


def _is_key_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    markers = (b"-key-1:", b"-secret-1:", b"-public-1:")
    return any(line.strip().startswith(b"privcodec-") and any(m in line for m in markers)
               for line in head.splitlines())


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:      # either does not exist (yet)
        return False


def atomic_write(path: str | os.PathLike, data: bytes, *, force: bool = False, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` all-or-nothing: temp file in the same directory, fsync, rename.

    ``mode`` sets the file's permission bits exactly (e.g. 0o600 for keys); by default the file
    gets the usual 0o666 less the umask.  Without ``force`` an existing ``path`` is an error.
    (The existence check and the rename are two steps; a file created in between is replaced.)
    """
    path = Path(path)
    check_writable(path, force)
    # the name cut to 200 bytes: a valid 255-byte output name must not make the temp name too long
    short = os.fsencode(path.name)[:200].decode("utf-8", "ignore") or "out"
    tmp = path.with_name(f".{short}.{secrets.token_hex(6)}.tmp")
    try:
        # The same directory keeps os.replace a rename on one filesystem, hence atomic.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    except OSError as e:
        raise PrivcodecError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)       # exact bits, whatever the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise PrivcodecError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, and not worth failing for.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
