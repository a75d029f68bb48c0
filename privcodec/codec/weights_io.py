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

from .model import CodecConfig, GICodec

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "gicodec.pt"
_CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


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


def _resize_cdf_buffers(model: torch.nn.Module, state: dict) -> None:
    for name, module in model.named_modules():
        for buf in _CDF_BUFFERS:
            key = f"{name}.{buf}"
            if key in state and hasattr(module, buf):
                getattr(module, buf).resize_(state[key].shape)


def load_weights(path: Path | str = DEFAULT_WEIGHTS) -> GICodec:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = GICodec(CodecConfig.from_dict(blob["config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state"].items()}
    _resize_cdf_buffers(model, state)
    model.load_state_dict(state)
    model.meta = blob.get("meta", {})
    return model.eval()


def weights_sha256(path: Path | str = DEFAULT_WEIGHTS) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def export_checkpoint(checkpoint: Path | str, path: Path | str = DEFAULT_WEIGHTS, meta: dict | None = None) -> Path:
    """Training checkpoint (OUT/last.pt) -> shipped weights file."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = GICodec(CodecConfig.from_dict(ckpt["config"]))
    _resize_cdf_buffers(model, ckpt["model"])
    model.load_state_dict(ckpt["model"], strict=False)
    export_weights(model.eval(), Path(path), {"iterations": ckpt["iter"], **(meta or {})})
    return Path(path)
