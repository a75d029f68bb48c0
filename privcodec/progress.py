"""Progress on a terminal for the slow steps (detection, coding, decoding), silent otherwise.

    with progress.step("Detecting faces"):
        ...

A transient rich spinner with the elapsed time, on standard error, only when that is a terminal
and the user did not ask for quiet (``--quiet`` or PRIVCODEC_QUIET=1); nothing in scripts, pipes
and tests.
"""
from __future__ import annotations

import contextlib
import os
import sys


def enabled() -> bool:
    return sys.stderr.isatty() and os.environ.get("PRIVCODEC_QUIET", "") in ("", "0")


@contextlib.contextmanager
def step(description: str):
    if not enabled():
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        bar.add_task(description, total=None)
        yield
