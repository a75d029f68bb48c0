"""bench rd's speed comparison with bmshj2018-hyperprior."""
from __future__ import annotations

import numpy as np

from privcodec import backends
from privcodec.bench import rd


def test_side_by_side_times_both_codecs_in_turn_on_the_same_images(monkeypatch):
    images = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(2)]
    calls = []
    point, bmshj_point = rd.privcodec_point, rd._bmshj2018_point

    def ours(image, *args):
        calls.append(("ours", id(image)))
        return point(image, *args)

    def theirs(net, image):
        calls.append(("bmshj", id(image)))
        return bmshj_point(net, image)

    monkeypatch.setattr(rd, "privcodec_point", ours)
    monkeypatch.setattr(rd, "_bmshj2018_point", theirs)
    side = rd.time_side_by_side(backends.get("avif"), images, threads=1, rounds=2)

    timed = calls[2:]   # after one untimed warm-up of each
    assert timed == [(who, id(im)) for _ in range(2) for im in images for who in ("ours", "bmshj")]
    assert (side["images"], side["rounds"]) == (2, 2)
    assert all(side[k] > 0 for k in ("privcodec_encode_s", "privcodec_decode_s",
                                     "bmshj2018_hyperprior_encode_s", "bmshj2018_hyperprior_decode_s"))


def test_privcodec_is_charged_for_its_whole_file():
    """The baselines pay for their file headers, so privcodec pays for its .prvc: the rate is the
    size of a real file holding the groups, layout and checksum included."""
    from privcodec import api

    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    grid = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [0, 0, 0, 0]])
    avif = backends.get("avif")
    file_bpp, quality_db, _, _, stream_bpp = rd.privcodec_point(image, grid, 4.0, avif)
    streams = avif.encode_groups(image, grid, 4.0)
    data = rd.public_file(streams, grid, image, 4.0, avif)
    assert stream_bpp * 48 * 64 / 8 == sum(len(s) for s in streams.values()) < len(data) == file_bpp * 48 * 64 / 8
    assert rd.psnr(image, api.view(data).pixels) == quality_db        # a real file: it opens as measured


def test_bd_rate_measures_the_rate_saved_at_equal_quality():
    rates, quality = [0.2, 0.4, 0.8, 1.6], [30.0, 33.0, 36.0, 39.0]
    assert abs(rd.bd_rate(rates, quality, rates, quality)) < 1e-9
    assert abs(rd.bd_rate(rates, quality, [r * 0.9 for r in rates], quality) + 10) < 1e-6
    assert rd.bd_rate(rates, quality, rates, [q + 50 for q in quality]) is None   # no overlap
