"""privcodec: semantic-aware image encryption.

    image ─▶ groups (masks / detect) ─▶ codec (one bitstream per group)
          ─▶ container (public | AES-256-GCM per recipient | dropped) ◀─ policy, keys

The top-level names are the API (they mirror the CLI) and are imported lazily,
so `import privcodec` does not load torch.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["protect", "plan", "view", "inspect", "strip", "grant", "to_carrier", "keygen", "load_policy",
           "Archive", "PrivcodecError"]

_LAZY = {
    "protect": ("api", "protect"),
    "plan": ("api", "plan"),
    "to_carrier": ("api", "to_carrier"),
    "view": ("api", "view"),
    "inspect": ("api", "inspect"),
    "strip": ("api", "strip"),
    "grant": ("api", "grant"),
    "keygen": ("keys", "keygen"),
    "load_policy": ("policy", "load_policy"),
    "Archive": ("archive", "Archive"),
    "PrivcodecError": ("errors", "PrivcodecError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'privcodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too, so completion in a REPL or notebook offers the API
    return sorted(set(globals()) | set(_LAZY))
