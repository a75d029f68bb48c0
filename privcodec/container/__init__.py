"""The .prvc container: layout, integrity and encryption (spec: FORMAT.md)."""
from .format import (
    PROTECTED,
    REDACTED,
    ChunkInfo,
    Container,
    OpenedGroup,
    ProtectedGroup,
    PublicGroup,
    RecipientInfo,
    open_container,
    seal,
)

__all__ = ["PROTECTED", "REDACTED", "ChunkInfo", "Container", "OpenedGroup", "ProtectedGroup", "PublicGroup",
           "RecipientInfo", "open_container", "seal"]
