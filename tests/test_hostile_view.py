"""The whole read path against hostile files: fuzzing, bombs, silent downgrades, what is authenticated."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import privcodec
from privcodec.container import format as fmt
from privcodec.errors import DecryptionError, FormatError
from privcodec.keys import load_identity

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT / "tests/fixtures/keys"
SYM, X = KEYS / "fixture-sym.key", KEYS / "fixture-x25519.key"
CORPUS = (sorted((ROOT / "tests/fuzz/corpus").glob("*.prvc")) + sorted((ROOT / "tests/fixtures/v1").glob("*.prvc"))
          + sorted((ROOT / "tests/fixtures").glob("v[2-9]/*.prvc")))     # every later format version
IDENTITIES = [load_identity(SYM), load_identity(X)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(CORPUS), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10_000)), fix_checksum=st.booleans())
def test_the_parser_and_unlock_accept_only_clean_errors(seed, edits, cut, fix_checksum):
    data = bytearray(seed.read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    n = fmt.checksum_len(data[4]) if len(data) > 4 else 32
    if fix_checksum and len(data) > n:
        data = data[:-n] + hashlib.sha256(bytes(data[:-n])).digest()[:n]
    try:
        fmt.open_container(bytes(data)).unlock(IDENTITIES)
    except (FormatError, DecryptionError):
        pass


def test_fuzzing_the_view_path_ends_in_clean_errors_or_images():
    """A short run of tests/fuzz/fuzz_view.py (`make fuzz` runs a long one): re-hashed payload and
    header edits reach the codec; each must end cleanly, and the process must not hang."""
    proc = subprocess.run([sys.executable, str(ROOT / "tests/fuzz/fuzz_view.py"), "--iterations", "150", "--seed", "7",
                           "--crashes", "/tmp/privcodec-fuzz-crashes"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    assert "failures 0" in proc.stdout


# ---------------------------------------------------------------- bombs

BOMB = textwrap.dedent("""
    import resource, sys, time
    import numpy as np
    from privcodec import api, codec
    from privcodec.container import PROTECTED, ProtectedGroup, PublicGroup, open_container, seal
    from privcodec.keys import generate_identity

    def stripped_file(side):
        # one public 16-px block; every other block belongs to a protected group that was stripped
        hb = -(-side // 16)
        block_map = np.full((hb, hb), PROTECTED, np.int32)
        block_map[0, 0] = 0
        stream = codec.encode_groups(np.full((16, 16, 3), 90, np.uint8), np.zeros((1, 1), np.int64), 4.0)[0]
        data = seal(width=side, height=side, block=16, codec_id=codec.new_codec_id(), weights_sha256=codec.weights_digest(),
                    quality=4.0, block_map=block_map, public=[PublicGroup(0, "background", 1.0, stream)],
                    protected=[ProtectedGroup(1, "face", 1.0, block_map == PROTECTED, b"x", [generate_identity().recipient])])
        return open_container(data).strip([])

    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    small, big = stripped_file(64), stripped_file(int(sys.argv[1]))
    api.view(small)
    base = rss()
    t = time.time()
    api.view(big)
    print(len(big), time.time() - t, rss() - base)
""")


def test_a_tiny_file_declaring_a_huge_image_costs_what_its_canvas_costs():
    """On the unfixed decoder a 225-byte 16 MP file cost 2.5 GB and 26 s: the decoder ran on the
    whole declared image.  Now it runs on the decoded groups' region; what remains is the uint8
    canvas and the fill, a few bytes per pixel."""
    proc = subprocess.run([sys.executable, "-c", BOMB, "4000"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    size, seconds, extra_mb = map(float, proc.stdout.split())
    assert size < 400
    assert extra_mb < 16 * 25          # 16 MP at < 25 bytes per pixel
    assert seconds < 120               # generous: the machine may be busy; the old path took minutes under load


def test_max_pixels_refuses_large_images_before_decoding(tmp_path):
    res = privcodec.protect(np.zeros((64, 80, 3), np.uint8), ROOT / "tests/fixtures/policy.toml", keys_dir=KEYS,
                            detect=[])
    with pytest.raises(FormatError, match="over the limit of 5,000 pixels"):
        privcodec.view(res.data, max_pixels=5000)
    assert privcodec.view(res.data, max_pixels=64 * 80).pixels.shape == (64, 80, 3)


# ---------------------------------------------------------------- silent downgrade and authenticity


@pytest.fixture(scope="module")
def protected_file():
    from conftest import make_photo
    return privcodec.protect(make_photo(64, 96, seed=2), ROOT / "tests/fixtures/policy.toml", keys_dir=KEYS, detect=[],
                             regions=["10,10,40,40:face"]).data


def test_a_key_holder_is_told_when_the_file_holds_nothing_for_their_key(protected_file):
    """A keyless attacker can strip every chunk; a keyed view must not quietly show the rest."""
    stripped = privcodec.strip(protected_file, keys=[])
    with pytest.raises(DecryptionError):
        privcodec.view(stripped, keys=[SYM])


def test_view_says_what_vouches_for_the_file(protected_file, tmp_path):
    assert privcodec.view(protected_file).authenticated == "none"
    keyed = privcodec.view(protected_file, keys=[SYM])
    assert keyed.authenticated == "key" and keyed.signer is None and keyed.version == 4
    # anyone with the X25519 public key could have made the file: intact is all it proves
    assert privcodec.view(protected_file, keys=[X]).authenticated == "x25519"
    v1 = (ROOT / "tests/fixtures/v1/gicodec-39k.prvc").read_bytes()
    assert privcodec.view(v1, keys=[SYM]).authenticated == "key-v1"
    signed = (ROOT / "tests/fuzz/corpus/signed.prvc").read_bytes()
    result = privcodec.view(signed, require_signer=KEYS / "fixture-signer.pub")
    assert result.signer == privcodec.inspect(signed)["signer"] and result.authenticated == "none"


def test_the_cli_reports_signer_and_authentication(protected_file, tmp_path):
    from test_cli import fails_cleanly, run

    signed = ROOT / "tests/fuzz/corpus/signed.prvc"
    r = run("view", signed, "-o", tmp_path / "a.png", "--require-signer", KEYS / "fixture-signer.pub")
    assert "signed by " in r.stderr
    path = tmp_path / "f.prvc"
    path.write_bytes(protected_file)
    assert "authenticated by your key" in run("view", path, "-o", tmp_path / "b.png", "--key", SYM).stderr
    fails_cleanly(run("view", path, "-o", tmp_path / "c.png", "--require-signer", KEYS / "fixture-signer.pub", ok=False),
                  "not signed")
    out = run("inspect", signed).stdout
    assert "signed by" in out and "format v2" in out


def test_a_huge_payload_is_rejected_before_decoding(tmp_path):
    """A 32 MB public payload for a 16-px group: refused by length before any decoder buffer."""
    from privcodec import codec
    from privcodec.container import PublicGroup, seal

    data = seal(width=16, height=16, block=16, codec_id=codec.new_codec_id(), weights_sha256=codec.weights_digest(),
                quality=4.0, block_map=np.zeros((1, 1), np.int32),
                public=[PublicGroup(0, "background", 1.0, b"\x00" + bytes(32_000_000))], protected=[])
    with pytest.raises(FormatError):
        privcodec.view(data)
