"""Save / load codec weights.

The shipped file holds the config, float tensors in fp16 (half the size; the
loaded values are exactly the same on every machine) and the entropy coders'
integer CDF tables as computed once at export, so encoder and decoder never
rebuild them with machine-dependent floating point.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch

from .model import CDF_BUFFERS, CodecConfig, GICodec

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "gicodec.pt"


def export_weights(model: GICodec, path: Path, meta: dict | None = None, update: bool = True) -> None:
    """``update``: (re)build every coding table from the weights first; False keeps the model's."""
    if update:
        model.update(force=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    blob = {"format": "privcodec-gicodec-1", "config": model.config.to_dict(), "state": state, "meta": meta or {}}
    atomic_torch_save(blob, path)


def atomic_torch_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # saved to memory first: torch names the zip's records after the file it writes, and a random
    # temporary name would make every export of the same weights a different file (another hash)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_weights(path: Path | str = DEFAULT_WEIGHTS) -> GICodec:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = GICodec.from_state(blob["config"], blob["state"])
    model.meta = blob.get("meta", {})
    return model.for_coding()


def export_checkpoint(checkpoint: Path | str, path: Path | str = DEFAULT_WEIGHTS, meta: dict | None = None,
                      scale_levels: int | None = None) -> Path:
    """Training checkpoint (OUT/last.pt) -> shipped weights file.  ``scale_levels``: size of the
    Gaussian scale table the coding tables are built for (default: the checkpoint's)."""
    ckpt = load_checkpoint(checkpoint)
    try:
        return _export(ckpt, path, meta, scale_levels)
    except RuntimeError as e:   # GICodec.load_state_dict: weights of another shape or network
        from ..errors import PrivcodecError

        raise PrivcodecError(f"{checkpoint}: {e}") from None


def _export(ckpt: dict, path, meta: dict | None, scale_levels: int | None) -> Path:
    # a training checkpoint carries the EMA of the weights when the run kept one: that is what ships
    state = {**ckpt["model"], **ckpt["ema"]} if ckpt.get("ema") else ckpt["model"]
    config = dict(ckpt["config"])
    meta = {**ckpt.get("meta", {}), "iterations": ckpt.get("iter", 0),
            "ema": bool(ckpt.get("ema")) or bool(ckpt.get("meta", {}).get("ema")), **(meta or {})}
    weights_file = "state" in ckpt   # a shipped file (load_checkpoint), not a training checkpoint
    if scale_levels is None or scale_levels == CodecConfig.from_dict(config).scale_levels:
        model = GICodec.from_state(config, state)
        # a weights file's tables were built at its export: rebuilding them from its fp16 weights
        # would silently make another model (new hash, other streams)
        export_weights(model.eval(), Path(path), meta, update=not weights_file)
        return Path(path)
    # The scale table is a coding choice, not a weight: swap it and build its CDFs.  A shipped
    # weights file keeps its z coder's tables (the same weights code z exactly as before); a
    # training checkpoint's may be stale, so they are built afresh.
    from .entropy import scale_table

    config["scale_levels"] = scale_levels
    if "lineage" in meta:
        meta["lineage"] += f" + coding tables for {scale_levels} Gaussian scales (export-weights --scale-levels)"
    prefix = "entropy.gaussian_conditional."
    state = {k: v for k, v in state.items() if not k.startswith(tuple(prefix + b for b in CDF_BUFFERS))}
    state[prefix + "scale_table"] = scale_table(levels=scale_levels)
    model = GICodec.from_state(config, state)
    if not weights_file or not model.entropy.entropy_bottleneck._quantized_cdf.numel():
        model.entropy.entropy_bottleneck.update(force=True)
    model.entropy.gaussian_conditional.update_scale_table(model.entropy.gaussian_conditional.scale_table, force=True)
    export_weights(model.eval(), Path(path), meta, update=False)
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
        meta = blob.get("meta") if isinstance(blob.get("meta"), dict) else {}
        blob = {**blob, "model": blob["state"], "iter": meta.get("iterations", 0)}
    fields = set(CodecConfig.__dataclass_fields__)
    weights, ema = blob["model"], blob.get("ema") or {}

    def tensors(d) -> bool:
        return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())

    if not (isinstance(blob["config"], dict) and set(blob["config"]) <= fields and tensors(weights) and tensors(ema)
            and isinstance(blob.get("iter", 0), int)):
        raise PrivcodecError(f"{path}: not a privcodec checkpoint (its config or weights are not a codec's)")
    try:
        CodecConfig.from_dict(blob["config"])
    except (TypeError, ValueError) as e:
        raise PrivcodecError(f"{path}: not a privcodec checkpoint ({e})") from None
    if "state" in blob:   # a shipped weights file: fp16 as stored, float32 to train on
        blob["model"] = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    return blob
