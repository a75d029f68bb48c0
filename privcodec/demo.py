"""`privcodec demo`: the main job on a bundled photo, end to end.

    astronaut.jpg (NASA, public domain; Eileen Collins) ─▶ detect faces ─▶ protect with
    data/faces.toml (faces encrypted for "family") ─▶ keyless view, keyed view
    ─▶ side-by-side preview PNG

Both files ship as package data (privcodec/data/), so the demo runs from an install too;
data/faces.toml is a copy of policies/faces.toml.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data")      # package data: present in a source checkout and an install
PHOTO = DATA / "astronaut.jpg"
POLICY = DATA / "faces.toml"                 # a copy of policies/faces.toml


def side_by_side(images: list[np.ndarray], titles: list[str]):
    from PIL import Image, ImageDraw

    h, w = images[0].shape[:2]
    bar, gap = 28, 8
    canvas = Image.new("RGB", (len(images) * w + (len(images) - 1) * gap, h + bar), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (im, title) in enumerate(zip(images, titles)):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(im), (x, bar))
        draw.text((x + 6, 8), title, fill="black")
    return canvas


def run_demo(out: Path, echo=print) -> None:
    from . import api
    from .imageio import atomic_write, load_image, save_image
    from .keys import keygen

    out = Path(out)
    keys_dir = out / "keys"
    if not (keys_dir / "family.key").exists():
        keygen("family", keys_dir, "symmetric")
    original = load_image(PHOTO)
    result = api.protect(PHOTO, POLICY, keys_dir=keys_dir, detect=["face"], quality=5)
    atomic_write(out / "astronaut.prvc", result.data, force=True)
    faces = sum(1 for g in result.group_map.groups if g.label == "face")
    echo(f"protected {PHOTO.name}: {faces} face group(s) encrypted for 'family' -> {out / 'astronaut.prvc'} "
         f"({len(result.data)} bytes)")
    public = api.view(result.data)
    full = api.view(result.data, [keys_dir / "family.key"])
    save_image(public.pixels, out / "keyless.png", force=True)
    save_image(full.pixels, out / "keyed.png", force=True)
    preview = side_by_side([original, public.pixels, full.pixels],
                           ["original", "keyless view (anyone)", "keyed view (family.key)"])
    save_image(np.asarray(preview), out / "side_by_side.png", force=True)
    echo(f"wrote {out / 'keyless.png'}, {out / 'keyed.png'} and {out / 'side_by_side.png'}")
