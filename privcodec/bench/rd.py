"""`privcodec bench rd`: rate-distortion and speed, side by side, in one run.

    dataset PNGs ─▶ privcodec (one group; typical multi-group masks) per quality
                 ─▶ JPEG / WebP / AVIF through Pillow (its defaults) per quality
                 ─▶ mean bpp / PSNR curves ─▶ BD-rate, grouping overhead, timings
                 ─▶ table on stdout + OUT/rd.json + OUT/rd.png

PSNR is RGB 8-bit, averaged per image as in CompressAI.  Every codec is charged
for its whole file, as a user stores it: JPEG/WebP/AVIF files as Pillow writes
them, privcodec the .prvc holding the groups (all public: the encrypted case adds
a chunk table and one stanza per recipient).  The streams alone are in rd.json
as ``bpp_streams``.
"""
from __future__ import annotations

import io
import json
import math
import random
import time
from pathlib import Path

import numpy as np

from ..errors import PrivcodecError

CLASSICAL = {
    "JPEG": ("JPEG", [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "WebP": ("WEBP", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "AVIF": ("AVIF", [10, 20, 30, 40, 50, 60, 70, 80, 90]),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def classical_point(image: np.ndarray, fmt: str, quality: int) -> tuple[float, float]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return 8 * len(buf.getvalue()) / (image.shape[0] * image.shape[1]), psnr(image, decoded)


def typical_groups(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like grouping: one person-sized region and two face-sized ones
    on the background (deterministic per image)."""
    rng = random.Random(seed)
    hb, wb = math.ceil(height / 16), math.ceil(width / 16)
    grid = np.zeros((hb, wb), dtype=np.int64)
    ph, pw = rng.randint(hb // 3, hb // 2), rng.randint(wb // 6, wb // 4)
    py, px = rng.randint(0, hb - ph), rng.randint(0, wb - pw)
    grid[py:py + ph, px:px + pw] = 1
    for g in (2, 3):
        fh, fw = rng.randint(2, 5), rng.randint(2, 4)
        fy, fx = rng.randint(0, hb - fh), rng.randint(0, wb - fw)
        grid[fy:fy + fh, fx:fx + fw] = g
    _, grid = np.unique(grid, return_inverse=True)
    return grid.reshape(hb, wb)


def public_file(streams: dict, grid: np.ndarray, image: np.ndarray, quality: float, backend) -> bytes:
    """The .prvc file holding these group streams, every group public (layout, labels and checksum
    included): what a user stores for the photo."""
    from ..container import PublicGroup, seal

    public = [PublicGroup(int(g), "background" if g == 0 else "region", 1.0, s) for g, s in sorted(streams.items())]
    return seal(width=image.shape[1], height=image.shape[0], block=16, codec_id=backend.codec_id,
                weights_sha256=backend.model_digest(), quality=float(quality),
                block_map=np.asarray(grid, dtype=np.int16), public=public, protected=[])


def privcodec_point(image: np.ndarray, grid: np.ndarray, quality: float, backend=None, effort: int = 0):
    """(file bpp, PSNR, encode s, decode s, streams-only bpp) for one image coded with ``grid``."""
    from .. import backends

    backend = backend or backends.get("gicodec")
    t0 = time.perf_counter()
    streams = backend.encode_groups(image, grid, quality, effort)
    t1 = time.perf_counter()
    decoded, _ = backend.decode_groups(streams, grid, image.shape[0], image.shape[1], quality, backend.model_digest())
    t2 = time.perf_counter()
    pixels = image.shape[0] * image.shape[1]
    stream_bits = 8 * sum(len(s) for s in streams.values())
    file_bits = 8 * len(public_file(streams, grid, image, quality, backend))
    return file_bits / pixels, psnr(image, decoded), t1 - t0, t2 - t1, stream_bits / pixels


def one_group(image: np.ndarray) -> np.ndarray:
    """The block grid of an image coded as a single group."""
    return np.zeros((math.ceil(image.shape[0] / 16), math.ceil(image.shape[1] / 16)), dtype=np.int64)


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float | None:
    """Bjøntegaard delta rate (%) of test against ref: cubic fit of log-rate
    over PSNR, integrated over the overlapping PSNR interval."""
    lr_ref, lr_test = np.log(rate_ref), np.log(rate_test)
    lo, hi = max(min(psnr_ref), min(psnr_test)), min(max(psnr_ref), max(psnr_test))
    if hi <= lo or len(rate_ref) < 4 or len(rate_test) < 4:
        return None
    p_ref, p_test = np.polyfit(psnr_ref, lr_ref, 3), np.polyfit(psnr_test, lr_test, 3)
    int_ref, int_test = np.polyint(p_ref), np.polyint(p_test)
    avg_ref = (np.polyval(int_ref, hi) - np.polyval(int_ref, lo)) / (hi - lo)
    avg_test = (np.polyval(int_test, hi) - np.polyval(int_test, lo)) / (hi - lo)
    return float((math.exp(avg_test - avg_ref) - 1) * 100)


def _bmshj2018(threads: int):
    """CompressAI's bmshj2018-hyperprior (N=128, M=192), the speed yardstick.  Its speed does not
    depend on its weights, so untrained weights are used (none can be downloaded here)."""
    import torch
    from compressai.zoo import bmshj2018_hyperprior

    torch.set_num_threads(threads)
    net = bmshj2018_hyperprior(quality=3, pretrained=False).eval()
    net.update(force=True)
    return net


def _bmshj2018_point(net, image: np.ndarray) -> tuple[float, float]:
    import torch

    with torch.no_grad():
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
        h, w = x.shape[2:]
        x = torch.nn.functional.pad(x, (0, (-w) % 64, 0, (-h) % 64))
        t0 = time.perf_counter()
        out = net.compress(x)
        t1 = time.perf_counter()
        net.decompress(out["strings"], out["shape"])
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def time_side_by_side(backend, images, threads: int, rounds: int = 2, quality: float = 4.0) -> dict:
    """Encode/decode seconds per image of the learned codec (one group) and of bmshj2018-hyperprior,
    taken in turn on the same images: a shared machine's speed drifts by 10-20 % over minutes, so
    timings taken in separate phases of a run can flip the comparison."""
    net = _bmshj2018(threads)
    privcodec_point(images[0], one_group(images[0]), quality, backend)   # warm-up, untimed
    _bmshj2018_point(net, images[0])
    ours, theirs = [], []
    for _ in range(rounds):
        for im in images:
            ours.append(privcodec_point(im, one_group(im), quality, backend)[2:4])
            theirs.append(_bmshj2018_point(net, im))
    mean = lambda ts, k: float(np.mean([t[k] for t in ts]))
    return {"privcodec_encode_s": mean(ours, 0), "privcodec_decode_s": mean(ours, 1),
            "bmshj2018_hyperprior_encode_s": mean(theirs, 0), "bmshj2018_hyperprior_decode_s": mean(theirs, 1),
            "images": len(images), "rounds": rounds, "quality": quality}


def _mean_curve(points):
    return [float(np.mean([p[0] for p in q])) for q in points], [float(np.mean([p[1] for p in q])) for q in points]


def _backend_curves(backend, images, qualities, echo, effort: int = 0):
    """One group and the 4-group layout, per quality: mean (bpp, PSNR) curves and mean timings."""
    single, multi, enc_t, dec_t = [], [], [], []
    for q in qualities:
        row_s, row_m = [], []
        for i, im in enumerate(images):
            b, p, te, td, sb = privcodec_point(im, one_group(im), q, backend, effort)
            row_s.append((b, p, sb))
            enc_t.append(te)
            dec_t.append(td)
            b, p, _, _, sb = privcodec_point(im, typical_groups(*im.shape[:2], seed=i), q, backend, effort)
            row_m.append((b, p, sb))
        single.append(row_s)
        multi.append(row_m)
        echo(f"  {backend.name} q{q:g}: {np.mean([x[0] for x in row_s]):.3f} bpp {np.mean([x[1] for x in row_s]):.2f} dB "
             f"(4 groups: {np.mean([x[0] for x in row_m]):.3f} bpp {np.mean([x[1] for x in row_m]):.2f} dB)")
    streams = lambda rows: [float(np.mean([x[2] for x in row])) for row in rows]
    return (_mean_curve(single), _mean_curve(multi), float(np.mean(enc_t)), float(np.mean(dec_t)),
            streams(single), streams(multi))


def run(dataset: Path, out: Path, *, limit=None, qualities=(1, 2, 3, 4, 5, 6, 7, 8), baseline_speed=True,
        codecs=("gicodec", "avif"), effort: int = 0, echo=print):
    from PIL import Image

    from .. import backends

    paths = sorted(p for p in Path(dataset).iterdir() if p.suffix.lower() in {".png", ".jpg", ".ppm", ".bmp"})[:limit]
    if not paths:
        raise PrivcodecError(f"no images (.png, .jpg, .ppm, .bmp) in {dataset}")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    threads = None
    if "gicodec" in codecs:
        from .. import codec

        threads = codec.configure_threads()
        codec.load_codec()
    echo(f"{len(images)} images from {dataset}; torch threads {threads}; effort {effort}")

    results = {"dataset": str(dataset), "images": [p.name for p in paths], "threads": threads, "effort": effort,
               "rate": "whole files (.prvc with its layout; Pillow's JPEG/WebP/AVIF files)", "curves": {},
               "timing": {}, "grouping_overhead_percent": {}, "bd_rate_percent": {}}
    for name, (fmt, qs) in CLASSICAL.items():
        pts = [[classical_point(im, fmt, q) for im in images] for q in qs]
        r, p = _mean_curve(pts)
        results["curves"][name] = {"quality": qs, "bpp": r, "psnr": p}

    for name in codecs:
        backend = backends.get(name)
        label = ("privcodec" if name == "gicodec" else f"privcodec-{name}") + (f" effort {effort}" if effort else "")
        (r1, p1), (rm, pm), enc, dec, s1, sm = _backend_curves(backend, images, qualities, echo, effort)
        results["curves"][label] = {"quality": list(qualities), "bpp": r1, "psnr": p1, "bpp_streams": s1}
        results["curves"][f"{label} (4 groups)"] = {"quality": list(qualities), "bpp": rm, "psnr": pm,
                                                    "bpp_streams": sm}
        results["grouping_overhead_percent"][label] = bd_rate(r1, p1, rm, pm)
        results["bd_rate_percent"][label] = {
            ref: bd_rate(results["curves"][ref]["bpp"], results["curves"][ref]["psnr"], r1, p1) for ref in CLASSICAL}
        results["bd_rate_percent"][f"{label} (4 groups)"] = {
            ref: bd_rate(results["curves"][ref]["bpp"], results["curves"][ref]["psnr"], rm, pm) for ref in CLASSICAL}
        results["timing"][f"{label}_encode_s"], results["timing"][f"{label}_decode_s"] = enc, dec
    results["bd_rate_vs_jpeg_percent"] = {
        name: bd_rate(results["curves"]["JPEG"]["bpp"], results["curves"]["JPEG"]["psnr"],
                      results["curves"][name]["bpp"], results["curves"][name]["psnr"])
        for name in results["curves"] if name != "JPEG"}
    timing = results["timing"]
    if baseline_speed and "gicodec" in codecs:
        side = time_side_by_side(backends.get("gicodec"), images[: min(8, len(images))], threads)
        timing["side_by_side"] = side
        timing.update({k: v for k, v in side.items() if k.startswith("bmshj2018")})

    out.mkdir(parents=True, exist_ok=True)
    (out / "rd.json").write_text(json.dumps(results, indent=2))
    _plot(results, out / "rd.png")
    _print_table(results, echo)
    echo(f"wrote {out / 'rd.json'} and {out / 'rd.png'}")
    return results


def _pct(v) -> str:
    return f"{v:+.1f} %" if v is not None else "-"


def _print_table(res, echo):
    echo("")
    refs = list(CLASSICAL)
    echo(f"{'codec':<30}{'bpp range':>18}{'PSNR range (dB)':>20}" + "".join(f"{'vs ' + r:>12}" for r in refs))
    for name, c in res["curves"].items():
        bds = res["bd_rate_percent"].get(name, {})
        echo(f"{name:<30}{min(c['bpp']):>8.3f} – {max(c['bpp']):<7.3f}{min(c['psnr']):>9.2f} – {max(c['psnr']):<8.2f}"
             + "".join(f"{_pct(bds.get(r)):>12}" for r in refs))
    echo("BD-rate vs JPEG: " + ", ".join(f"{k} {_pct(v)}" for k, v in res["bd_rate_vs_jpeg_percent"].items()))
    for name, go in res["grouping_overhead_percent"].items():
        echo(f"{name}: grouping overhead (4 groups vs 1, BD-rate) {_pct(go)}")
    t = res["timing"]
    for name in res["grouping_overhead_percent"]:
        echo(f"{name}: encode {t[name + '_encode_s']:.3f} s, decode {t[name + '_decode_s']:.3f} s per image")
    side = t.get("side_by_side")
    if side:
        echo(f"side by side, in turn on the same {side['images']} images ({side['rounds']} rounds, q{side['quality']:g}): "
             f"privcodec encode {side['privcodec_encode_s']:.3f} s, decode {side['privcodec_decode_s']:.3f} s; "
             f"bmshj2018-hyperprior encode {side['bmshj2018_hyperprior_encode_s']:.3f} s, "
             f"decode {side['bmshj2018_hyperprior_decode_s']:.3f} s per image")


def _plot(res, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for name, c in res["curves"].items():
        ax.plot(c["bpp"], c["psnr"], marker="o", ms=3, label=name, ls="--" if "groups" in name else "-")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title(f"Rate-distortion on {Path(res['dataset']).name} ({len(res['images'])} images)")
    ax.set_xlim(0, 2.0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
