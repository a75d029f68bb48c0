"""The .prvc container: layout, integrity and encryption (spec: FORMAT.md)."""
from .format import (
    MAX_GROUPS,
    MAX_PAD,
    METADATA_INDEX,
    Metadata,
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

__all__ = ["MAX_GROUPS", "MAX_PAD", "METADATA_INDEX", "Metadata", "PROTECTED", "REDACTED", "ChunkInfo", "Container", "OpenedGroup",
           "ProtectedGroup", "PublicGroup", "RecipientInfo", "open_container", "seal"]
