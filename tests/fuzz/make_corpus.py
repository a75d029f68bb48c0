"""Seed corpus for the fuzzers: small real files (FORMAT v2) as privcodec writes them.

    python tests/fuzz/make_corpus.py       # from the repository root; the v1 fixtures are seeds too
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import privcodec  # noqa: E402
from conftest import make_photo  # noqa: E402

KEYS = ROOT / "tests/fixtures/keys"
POLICY = ROOT / "tests/fixtures/policy.toml"
OUT = Path(__file__).resolve().parent / "corpus"
photo = make_photo(48, 64, seed=3)
common = dict(keys_dir=KEYS, detect=[], quality=3.0)
files = {
    "protected-redacted.prvc": privcodec.protect(photo, POLICY, regions=["8,8,30,30:face", "40,30,64,48:license_plate"], **common),
    "signed.prvc": privcodec.protect(photo, POLICY, regions=["30,0,64,20:face"], sign=KEYS / "fixture-signer.key", **common),
    "public-only.prvc": privcodec.protect(photo[:32, :32], POLICY, regions=[], **common),
}
for name, res in files.items():
    (OUT / name).write_bytes(res.data)
    print(name, len(res.data))
