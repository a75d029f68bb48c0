"""How many CPU threads the coders use: PRIVCODEC_THREADS, else the cores that are idle now.

On a busy machine extra threads only contend (measured: 2 threads ran 3-6x slower than 1 with
the other core loaded), so the default counts what is running *now*, not the 1-minute load
average: that average stays high for a minute after a command ends, so the second photo of a
shell loop (or a benchmark run right after another) used to get one thread on an idle machine.
"""
from __future__ import annotations

import os
import time

MAX_THREADS = 8          # more buys little for photo-sized work
SAMPLES, SAMPLE_GAP_S = 3, 0.005


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _own_runnable() -> int:
    """This process's threads that are runnable now (a detector's worker pool may still be
    spinning after its last job: that is our own work, not a busy neighbour)."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == b"R"
    return max(1, count)


def _runnable_others() -> int | None:
    """Threads of other processes runnable right now (the kernel's count in /proc/loadavg less
    our own); the largest of a few samples, so a neighbour caught between two time slices still
    counts.  None where there is no /proc."""
    seen = []
    for i in range(SAMPLES):
        try:
            with open("/proc/loadavg", "rb") as f:
                running = int(f.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return None
        seen.append(running - _own_runnable())
        if i + 1 < SAMPLES:
            time.sleep(SAMPLE_GAP_S)
    return max(0, max(seen))


def default_threads() -> int:
    """Cores that are idle now, at least 1, at most MAX_THREADS."""
    busy = _runnable_others()
    if busy is None:
        try:
            busy = round(os.getloadavg()[0])
        except OSError:
            busy = 0
    return max(1, min(MAX_THREADS, _cores() - busy))


def threads() -> int:
    """PRIVCODEC_THREADS if it is a positive number, else default_threads()."""
    try:
        n = int(os.environ.get("PRIVCODEC_THREADS", "0"))
    except ValueError:
        n = 0
    return n if n > 0 else default_threads()
