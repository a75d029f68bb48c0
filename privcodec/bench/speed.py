"""`privcodec bench speed`: wall time, CPU time and peak memory of whole commands, as a user runs them.

    photo (resized to 0.4 / 12 / 24 MP) ─▶ fresh process per command ─▶ wall, CPU, peak RSS
    commands: privcodec detect / protect / view (keyless and keyed), and deface on the same photo

Each command runs in its own process (start-up included, as a user pays it), measured with
wait4(): the child's own CPU time and peak resident set size.  deface runs only if it is
installed with what it needs (imageio-ffmpeg); otherwise its row says so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES_MP = (0.4, 12.0, 24.0)


def measure(argv: list[str], env: dict | None = None) -> dict:
    with tempfile.TemporaryFile() as err_file:    # a file, not a pipe: a chatty child cannot block
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err_file, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        lines = err_file.read().decode(errors="replace").strip().splitlines()
    error = (lines[-1] if lines else f"exit status {proc.returncode}") if proc.returncode else ""
    return {"ok": proc.returncode == 0, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "error": error}


def make_photo(source: Path, megapixels: float, out: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(source) as im:
        im = im.convert("RGB")
        scale = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        size = (round(im.width * scale), round(im.height * scale))
        im.resize(size, Image.BICUBIC).save(out, quality=92)
    return size


def run(photo: Path, *, sizes=SIZES_MP, codec: str = "avif", echo=print) -> list[dict]:
    from .. import keys

    exe = [sys.executable, "-c", "from privcodec.cli import main; main()"]
    policy = Path(__file__).resolve().parents[1] / "data" / "faces.toml"
    deface = shutil.which("deface", path=str(Path(sys.executable).parent)) or shutil.which("deface")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        keys.keygen("family", tmp / "keys")
        env = {**os.environ, "PRIVCODEC_QUIET": "1"}
        for mp in sizes:
            img = tmp / f"photo_{mp:g}mp.jpg"
            w, h = make_photo(photo, mp, img)
            label = f"{mp:g} MP ({w}x{h})"
            cmds = {
                "detect": exe + ["detect", str(img), "--detect", "face"],
                "protect": exe + ["protect", str(img), "-o", str(tmp / "p.prvc"), "--policy", str(policy),
                                  "--keys-dir", str(tmp / "keys"), "--codec", codec, "--force"],
                "view (keyless)": exe + ["view", str(tmp / "p.prvc"), "-o", str(tmp / "v.png"), "--force"],
                "view (keyed)": exe + ["view", str(tmp / "p.prvc"), "-o", str(tmp / "k.png"), "--force",
                                       "--key", str(tmp / "keys/family.key")],
            }
            if deface:
                cmds["deface"] = [deface, str(img), "-o", str(tmp / "deface.jpg")]
            for name, argv in cmds.items():
                r = {"size": label, "command": name, **measure(argv, env)}
                rows.append(r)
                echo(_row(r))
            if not deface:
                echo(f"{label:<24} {'deface':<16} not installed")
    return rows


def _row(r: dict) -> str:
    if not r["ok"]:
        return f"{r['size']:<24} {r['command']:<16} failed: {r['error']}"
    return (f"{r['size']:<24} {r['command']:<16} {r['wall_s']:>8.2f} s wall {r['cpu_s']:>8.2f} s CPU "
            f"{r['peak_rss_mb']:>8.0f} MB peak")
