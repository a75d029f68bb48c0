"""Files an earlier privcodec wrote stay readable: every released codec model, every format version.

The fixtures in tests/fixtures/v1 were written by earlier releases (tests/fixtures/make_v1_fixtures.py
says how) and are never regenerated; their recorded views must come back pixel for pixel.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import privcodec
from privcodec import codec
from privcodec.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures"
KEYS = FIXTURES / "keys"
MODELS = ["gicodec-18k5", "gicodec-39k"]
V2_FIXTURES = sorted(p.stem for p in (FIXTURES / "v2").glob("*.prvc"))


FIXTURE_FILES = [("v1", name) for name in MODELS] + [("v2", name) for name in V2_FIXTURES]


@pytest.mark.parametrize("version,name", FIXTURE_FILES)
def test_a_file_from_each_release_codec_and_model_decodes_to_its_recorded_pixels(version, name):
    data = (FIXTURES / version / f"{name}.prvc").read_bytes()
    public = np.asarray(Image.open(FIXTURES / version / f"{name}.public.png"))
    keyed = np.asarray(Image.open(FIXTURES / version / f"{name}.keyed.png"))
    assert np.array_equal(privcodec.view(data, fill="solid").pixels, public)
    for key in ("fixture-sym.key", "fixture-x25519.key"):
        result = privcodec.view(data, keys=[KEYS / key], fill="solid")
        assert np.array_equal(result.pixels, keyed) and result.version == int(version[1])


def test_every_released_model_is_shipped_and_registered():
    shipped = {p.relative_to(codec.WEIGHTS_DIR).as_posix() for p in codec.WEIGHTS_DIR.rglob("*.pt")}
    assert shipped == {path for _, path, _ in codec.RELEASED_MODELS.values()}
    for digest, (codec_id, path, _) in codec.RELEASED_MODELS.items():
        assert hashlib.sha256((codec.WEIGHTS_DIR / path).read_bytes()).hexdigest() == digest
        assert codec_id in codec.NEW_FILES
    assert codec.CURRENT_MODEL in codec.RELEASED_MODELS
    assert codec.weights_digest().hex() == codec.CURRENT_MODEL or codec.os.environ.get("PRIVCODEC_WEIGHTS")


def test_a_model_this_privcodec_never_had_is_a_clear_error():
    with pytest.raises(FormatError, match="codec model this privcodec does not have .* needs a newer privcodec"):
        codec.weights_for("gicodec-2", hashlib.sha256(b"a future model").digest())
    with pytest.raises(FormatError, match="does not have"):
        codec.weights_for("gicodec-9", bytes.fromhex(codec.CURRENT_MODEL))


def test_a_codec_id_never_reads_with_the_other_networks_weights():
    for digest, (network, _, _) in codec.RELEASED_MODELS.items():
        for codec_id, needs in codec.MODEL_OF.items():
            if needs == network:
                assert codec.weights_for(codec_id, bytes.fromhex(digest))
            else:
                with pytest.raises(FormatError, match="does not have"):
                    codec.weights_for(codec_id, bytes.fromhex(digest))
