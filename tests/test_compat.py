"""Files an earlier privcodec wrote stay readable: every released codec model, every format version.

The fixtures in tests/fixtures/vN were written by earlier releases, in format version N
(tests/fixtures/make_v1_fixtures.py and make_fixtures.py say how) and are never regenerated; their recorded views must come back pixel for pixel.
"""
from __future__ import annotations

import hashlib
import shutil
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
FIXTURE_FILES = [("v1", name) for name in MODELS] + [
    (version, p.stem) for version in ("v2", "v3", "v4")
    for p in sorted((FIXTURES / version).glob("*.prvc")) if p.stem != "format-md-vector"]


def same_pixels(decoded: np.ndarray, recorded: np.ndarray) -> bool:
    """The recorded view, up to what another CPU may change: the float32 synthesis runs the
    convolution kernels this CPU gets (oneDNN picks them by instruction set and cache sizes), so a
    value within a hair of .5 can round the other way: at most 1 level, in at most 1 value per
    1,000 (README, "What is guaranteed across machines").  The streams themselves are exact."""
    diff = np.abs(decoded.astype(np.int16) - recorded.astype(np.int16))
    return decoded.shape == recorded.shape and int(diff.max()) <= 1 and int((diff > 0).sum()) <= max(1, diff.size // 1000)


@pytest.mark.parametrize("version,name", FIXTURE_FILES)
def test_a_file_from_each_release_codec_and_model_decodes_to_its_recorded_pixels(version, name):
    data = (FIXTURES / version / f"{name}.prvc").read_bytes()
    public = np.asarray(Image.open(FIXTURES / version / f"{name}.public.png"))
    keyed = np.asarray(Image.open(FIXTURES / version / f"{name}.keyed.png"))
    assert same_pixels(privcodec.view(data, fill="solid").pixels, public)
    for key in ("fixture-sym.key", "fixture-x25519.key"):
        result = privcodec.view(data, keys=[KEYS / key], fill="solid")
        assert same_pixels(result.pixels, keyed) and result.version == int(version[1])


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


def test_a_released_models_file_replaced_under_its_name_is_refused_not_decoded_with(tmp_path, monkeypatch):
    """export-weights over the packaged file, or a damaged install: files made with the model it
    replaced must fail with a clear error, never decode with other weights."""
    current = codec.RELEASED_MODELS[codec.CURRENT_MODEL]
    replaced = tmp_path / current[1]
    shutil.copy(codec.WEIGHTS_DIR / current[1], replaced)
    monkeypatch.setattr(codec, "WEIGHTS_DIR", tmp_path)
    assert codec.weights_for(codec.NEW_FILES[current[0]], bytes.fromhex(codec.CURRENT_MODEL)) == str(replaced)
    replaced.write_bytes(replaced.read_bytes() + b"\0")
    codec._sha256_of.cache_clear()
    with pytest.raises(FormatError, match="not the released model .* reinstall privcodec"):
        codec.weights_for(codec.NEW_FILES[current[0]], bytes.fromhex(codec.CURRENT_MODEL))
    replaced.unlink()
    with pytest.raises(FormatError, match="missing or not the released model"):
        codec.weights_for("gicodec-5", bytes.fromhex(codec.CURRENT_MODEL)[:16])


def test_a_version_4_header_names_its_model_by_the_first_16_bytes_of_the_hash():
    current = bytes.fromhex(codec.CURRENT_MODEL)
    assert codec.weights_for("gicodec-5", current[:16]) == codec.weights_for("gicodec-5", current)
    with pytest.raises(FormatError, match="does not have"):
        codec.weights_for("gicodec-5", current[:15])       # shorter than any header holds
    with pytest.raises(FormatError, match="does not have"):
        codec.weights_for("gicodec-5", current[:15] + bytes([current[15] ^ 1]))


def test_a_codec_id_never_reads_with_the_other_networks_weights():
    for digest, (network, _, _) in codec.RELEASED_MODELS.items():
        for codec_id, needs in codec.MODEL_OF.items():
            if needs == network:
                assert codec.weights_for(codec_id, bytes.fromhex(digest))
            else:
                with pytest.raises(FormatError, match="does not have"):
                    codec.weights_for(codec_id, bytes.fromhex(digest))
