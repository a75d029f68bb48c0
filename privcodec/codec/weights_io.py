"""Save / load codec weights.

The shipped file holds the config, float tensors in fp16 (half the size; the
loaded values are exactly the same on every machine) and the entropy coders'
integer CDF tables as computed once at export, so encoder and decoder never
rebuild them with machine-dependent floating point.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from .model import GICodec

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "gicodec.pt"


def export_weights(model: GICodec, path: Path, meta: dict | None = None) -> None:
    model.update(force=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    blob = {"format": "privcodec-gicodec-1", "config": model.config.to_dict(), "state": state, "meta": meta or {}}
    atomic_torch_save(blob, path)


def atomic_torch_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_weights(path: Path | str = DEFAULT_WEIGHTS) -> GICodec:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = GICodec.from_state(blob["config"], blob["state"])
    model.meta = blob.get("meta", {})
    return model.eval()


def weights_sha256(path: Path | str = DEFAULT_WEIGHTS) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def export_checkpoint(checkpoint: Path | str, path: Path | str = DEFAULT_WEIGHTS, meta: dict | None = None) -> Path:
    """Training checkpoint (OUT/last.pt) -> shipped weights file."""
    ckpt = load_checkpoint(checkpoint)
    # a training checkpoint carries the EMA of the weights when the run kept one: that is what ships
    state = {**ckpt["model"], **ckpt["ema"]} if ckpt.get("ema") else ckpt["model"]
    model = GICodec.from_state(ckpt["config"], state)
    export_weights(model.eval(), Path(path), {"iterations": ckpt["iter"], "ema": bool(ckpt.get("ema")), **(meta or {})})
    return Path(path)


def load_checkpoint(path: Path | str) -> dict:
    """A training checkpoint (or shipped weights file), read with torch's safe loader: a .pt
    file is a pickle, and only tensors and plain containers may come out of it."""
    from ..errors import PrivcodecError

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PrivcodecError(f"{path}: no such file") from None
    except Exception:   # pickle, zip and torch all report a foreign file differently
        raise PrivcodecError(f"{path}: not a privcodec checkpoint") from None
    if not isinstance(blob, dict) or "config" not in blob or not ("model" in blob or "state" in blob):
        raise PrivcodecError(f"{path}: not a privcodec checkpoint")
    if "model" not in blob:
        blob = {**blob, "model": {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state"].items()},
                "iter": blob.get("meta", {}).get("iterations", 0)}
    return blob
