"""One lock per archive: commands that change it are exclusive, readers share.

An advisory ``flock`` on ARCHIVE/.privcodec/lock, so a second ``archive add`` waits for the first
instead of interleaving writes to the catalogue or a file; the kernel drops the lock when a
process dies, so a crash never leaves the archive locked.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable


@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool, on_wait: Callable[[], None] | None = None):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)   # closing releases the lock
