"""Progress on a terminal for the slow steps (detection, coding, decoding), silent otherwise.

    with progress.step("Detecting faces"):
        ...
        progress.advance(total)     # optional: a bar when the step has countable parts (tiles)

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


_current: list = []     # the (bar, task) of the step in progress, for advance()


@contextlib.contextmanager
def step(description: str):
    if not enabled():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        _current.append((bar, bar.add_task(description, total=None)))
        try:
            yield
        finally:
            _current.pop()


def advance(total: int) -> None:
    """One more of ``total`` parts of the current step done (tiles of a large photo): the spinner
    becomes a bar.  Does nothing outside a step or when progress is off."""
    if _current:
        bar, task = _current[-1]
        bar.update(task, total=total, advance=1)
