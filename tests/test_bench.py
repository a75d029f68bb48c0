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
