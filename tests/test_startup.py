"""A fast start: commands that do not code never import torch (it costs seconds and hundreds of MB)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT / "tests/fixtures/keys"
SIGNED = ROOT / "tests/fuzz/corpus/signed.prvc"

PROBE = """
import sys
sys.argv = ["privcodec"] + sys.argv[1:]
from privcodec import cli
try:
    cli.main()
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["inspect", str(SIGNED)],
    ["inspect", str(SIGNED), "--key", str(KEYS / "fixture-sym.key"), "--json"],
    ["keygen", "someone", "--dir", "{tmp}"],
    ["strip", str(SIGNED), "-o", "{tmp}/s.prvc", "--key", str(KEYS / "fixture-sym.key")],
    ["grant", str(SIGNED), "-o", "{tmp}/g.prvc", "--key", str(KEYS / "fixture-sym.key"), "--to",
     str(KEYS / "fixture-x25519.pub")],
    ["protect", "missing.jpg", "-o", "{tmp}/x.prvc", "--policy", "missing.toml"],      # argument errors
    ["protect", "missing.jpg", "-o", "{tmp}/x.prvc", "--policy", str(ROOT / "policies/faces.toml"), "--quality", "9"],
    ["view", "missing.prvc", "-o", "{tmp}/x.png"],
    ["archive", "init", "{tmp}/arc"],
    ["archive", "ls", "{tmp}"],                                                       # not an archive
    ["--help"],
], ids=lambda a: " ".join(a[:2]))
def test_commands_that_do_not_code_never_import_torch(tmp_path, args):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert r.stderr.strip().splitlines()[-1] == "NO-TORCH", r.stderr


def test_the_codec_imports_compressai_without_its_package_initialiser():
    code = ("import sys; from privcodec import codec; codec.load_codec(); "
            "print('torch_geometric' in sys.modules, 'compressai.datasets' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert r.stdout.split() == ["False", "False"]
