"""archive export: each file ─▶ view with the given keys ─▶ an ordinary PNG or JPEG (one task per file)."""
from __future__ import annotations

from dataclasses import dataclass

FORMATS = {"png": "PNG", "jpg": "JPEG"}


@dataclass(frozen=True)
class ExportTask:
    path: str                       # absolute .prvc
    identities: tuple = ()
    fmt: str = "png"
    quality: int = 92


def export_one(task: ExportTask) -> dict:
    """{"data", "decoded", "missing"} or {"error"}."""
    from .. import api
    from ..errors import PrivcodecError
    from ..imageio import encode_image

    try:
        result = api.view(task.path, list(task.identities))
        data = encode_image(result.pixels, FORMATS[task.fmt], quality=task.quality)
    except PrivcodecError as e:
        return {"error": str(e)}
    except MemoryError:
        return {"error": "out of memory"}
    return {"data": data, "decoded": len(result.decoded), "missing": len(result.missing)}
